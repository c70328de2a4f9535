/**
 * `node dist/bench/tls-reader.js URI SIZE CONNS DEPTH`: read [0, SIZE) of an NBD
 * export with our client (NbdClientPool: CONNS connections when the server
 * advertises multi-conn), DEPTH 1 MiB READs in flight per connection, and print
 * one JSON line {bytes, seconds, cpuSeconds, connections} on stdout.
 *
 * The nbd bench runs it as its own process so that client work (TLS decryption,
 * reply reassembly) never shares an event loop or a core with the server under
 * test. It checks nothing about the data, but it counts every byte it was given;
 * a short count is an error. `seconds` (wall) and `cpuSeconds` (this process,
 * user + system) span connect, with the TLS handshake, to close; not Node's start-up.
 */
import { NbdClientPool } from "../src/nbd/client-pool.js";
import { parseSize } from "../src/size.js";

const REQUEST = 1024 * 1024;

function positive(text: string | undefined, what: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got "${text ?? ""}"`);
  return n;
}

async function main(): Promise<void> {
  const [uri, sizeText, connsText, depthText] = process.argv.slice(2);
  if (uri === undefined || sizeText === undefined) throw new Error("usage: tls-reader URI SIZE CONNS DEPTH");
  const size = parseSize(sizeText);
  const conns = positive(connsText, "CONNS");
  const depth = positive(depthText, "DEPTH");

  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const pool = await NbdClientPool.connect(uri, conns, { maxInFlight: depth });
  if (size > pool.size) throw new Error(`SIZE ${size} exceeds the export size ${pool.size}`);
  let next = 0;
  let bytes = 0;
  // conns × depth workers, each taking the next 1 MiB; the pool sends each READ to
  // its least loaded connection, so every connection keeps about `depth` in flight.
  const worker = async (): Promise<void> => {
    while (next < size) {
      const offset = next;
      const length = Math.min(REQUEST, size - offset);
      next += length;
      const data = await pool.read(offset, length);
      bytes += data.length;
    }
  };
  await Promise.all(Array.from({ length: pool.connections * depth }, worker));
  await pool.close();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  if (bytes !== size) throw new Error(`read ${bytes} bytes, expected ${size}`);
  process.stdout.write(`${JSON.stringify({ bytes, seconds, cpuSeconds, connections: pool.connections })}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`tls-reader: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
