/**
 * Wait until a Unix socket accepts a connection (a server we spawned is ready),
 * failing early if the server process exits first. Polls with backoff; no fixed sleeps.
 */
import { connect } from "node:net";

export async function waitForSocket(path: string, exited: Promise<unknown>, timeoutMs = 15_000): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + timeoutMs;
  let pause = 5;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ path });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (gone) throw new Error(`server exited before ${path} accepted connections`);
    if (Date.now() > deadline) throw new Error(`${path} did not accept connections within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 100);
  }
}
