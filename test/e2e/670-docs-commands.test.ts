/**
 * Every command printed in README.md and docs/*.md runs as printed.
 *
 * The shell blocks (```sh, ```bash, ```shell, ```console) are extracted by
 * test/support/doc-blocks.ts, and each must carry a marker on the line before
 * its fence, else this test fails (so a new doc cannot escape it):
 *
 *   <!-- docs-test: run -->           the commands run, in order
 *   <!-- docs-test: serve -->         each command is a server: it must print its
 *                                     first line (its endpoint), then exit 0 on SIGTERM
 *   <!-- docs-test: skip REASON -->   not run, for the reason given
 *
 * An unlabelled fence fails too: output and diagrams are ```text.
 *
 * How a doc runs. All its run and serve blocks, in the doc's order, are one
 * bash session in a fresh directory, as a reader types them into one shell:
 *  - `sanbox` is the built CLI on PATH (a shim for `node dist/cli/main.js`, what
 *    `npm link` gives), /usr/bin comes next (the nbd tools, nbdsh's python);
 *  - HOME is the directory's home/, with SANBOX_HOME and SANBOX_ENDPOINT unset,
 *    so `~/.local/share/sanbox/array`, the daemons' default, is fresh too;
 *  - each command must exit 0, or the N of a trailing `# exits N` comment;
 *  - a trailing `# prints X` comment is checked against the first line the
 *    command prints: `…` and `<name>` stand for any text;
 *  - a command ending in `&` is a background job, and the runner waits for its
 *    first line of output before going on, as a reader waits for a daemon's
 *    endpoint (15 s for `sanbox …`, 2 s for other tools, which may print
 *    nothing: nbdfuse); it must still be running then;
 *  - when the session ends, every process it left gets SIGTERM.
 *
 * What the docs take as given is filled in here, in three tables below:
 * GIVEN_FILES (files a reader has, e.g. disk.img), PLACEHOLDERS (text that
 * would clash between runs or needs a value, replaced before running) and
 * PRELUDES (what a doc's blocks assume is running, e.g. the `$URI` of a
 * `sanbox nbd serve` the reader started from an earlier block).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageRoot, sanboxBin } from "../../src/package-root.js";
import { blockCommands, classificationProblems, expectedExit, parseDocBlocks, printsPattern, splitComment, type DocBlock, type DocCommand } from "../support/doc-blocks.js";
import { requireTool, tempDir } from "../support/tools.js";

const ROOT = packageRoot();
const DOCS = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];

/** Files a reader is taken to have, made in each doc's directory before it runs. */
const GIVEN_FILES: Record<string, () => Buffer | string> = {
  "disk.img": () => randomBytes(1 << 20), // any raw image: nbdcopy and nbd serve FILE read it
  "disk.raw": () => randomBytes(1 << 20),
  "keys.psk": () => `alice:${randomBytes(32).toString("hex")}\n`, // nbdkit's psk format, identity:hexkey
};

interface Ctx {
  port: number;
}

/** Text in a doc's blocks replaced before running: a value that is fixed in the doc but must differ per run. */
const PLACEHOLDERS: { doc: string; text: string; by: (c: Ctx) => string; why: string }[] = [
  { doc: "README.md", text: "/tmp/d.sock", by: () => "$PWD/d.sock", why: "a socket path of its own per run" },
  { doc: "README.md", text: "10809", by: (c) => String(c.port), why: "the NBD port may be taken on a shared machine: a free port" },
  { doc: "docs/conformance.md", text: "/tmp/broken", by: () => "$PWD/broken", why: "a fresh data directory per run" },
];

/** What a doc's blocks take as running, from a section the reader went through before. */
const PRELUDES: Record<string, string> = {
  // README "A test LUN anyone can mount": the stock-tools block uses the $URI that `sanbox nbd serve --memory 1G` printed.
  "README.md": `sanbox nbd serve --memory 1G --unix "$PWD/nbd.sock" &\nURI="nbd+unix:///?socket=$PWD/nbd.sock"`,
  // docs/conformance.md fault-proxy: its upstream is LUN db on the local array.
  "docs/conformance.md": "sanbox array serve &\nsanbox lun create db 64M",
};

const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function placeheld(doc: string, block: DocBlock, ctx: Ctx): DocBlock {
  const subs = PLACEHOLDERS.filter((p) => p.doc === doc);
  return { ...block, body: block.body.map((l) => subs.reduce((s, p) => s.split(p.text).join(p.by(ctx)), l)) };
}

/** One command as bash: run it, check its exit status and `# prints` line; background jobs await their first line. */
function commandScript(cmd: DocCommand, doc: string, serve: boolean, n: number): string {
  const where = shq(`${doc}:${cmd.line}`);
  const what = shq(cmd.code);
  const pattern = printsPattern(cmd.comment);
  const out = `.docs-test/${n}.out`;
  const err = `.docs-test/${n}.err`;
  const checkPrints = pattern ? `head -n1 ${out} | grep -Eq -- ${shq(pattern.source)} || docs_fail ${where} 0 ${shq(`${cmd.code}: its first line is not "${cmd.comment.replace(/^prints:?\s*/, "")}"`)}\n` : "";
  const lines: string[] = [];
  if (serve || cmd.background) {
    const sanbox = /^(\w+=\S+\s+)*sanbox\s/.test(cmd.code);
    lines.push(`echo ${shq(`+ ${cmd.code} &`)} >&2`);
    lines.push(serve ? `${cmd.code} > ${out} 2> ${err} &` : `{ ${cmd.code}\n} > ${out} 2> ${err} &`);
    lines.push(`docs_pid=$!`);
    lines.push(`docs_wait_line ${out} $docs_pid ${serve || sanbox ? 15 : 2}; docs_r=$?`);
    lines.push(`if [ $docs_r = 2 ]; then cat ${err} >&2; wait $docs_pid; docs_fail ${where} $? ${what}; fi`);
    if (serve || sanbox) lines.push(`if [ $docs_r = 1 ]; then cat ${err} >&2; docs_fail ${where} - ${shq(`${cmd.code}: printed no line in 15 s`)}; fi`);
    lines.push(`cat ${out}`);
    if (checkPrints !== "") lines.push(checkPrints.trimEnd());
    if (serve) {
      lines.push(`kill -TERM $docs_pid; wait $docs_pid; docs_r=$?`);
      lines.push(`if [ $docs_r != 0 ]; then cat ${err} >&2; docs_fail ${where} $docs_r ${shq(`${cmd.code}: did not exit 0 on SIGTERM`)}; fi`);
    }
  } else {
    const expected = expectedExit(cmd.comment);
    lines.push(`echo ${shq(`+ ${cmd.code}`)} >&2`);
    lines.push(`{ ${cmd.code}\n} > ${out}; docs_r=$?`);
    lines.push(`cat ${out}`);
    lines.push(`if [ $docs_r != ${expected} ]; then docs_fail ${where} $docs_r ${what}; fi`);
    if (checkPrints !== "") lines.push(checkPrints.trimEnd());
  }
  return lines.join("\n");
}

const SESSION_HEAD = `
docs_fail() { printf 'docs-test: FAILED at %s (exit %s): %s\\n' "$1" "$2" "$3" >&2; exit 1; }
# docs_wait_line FILE PID SECONDS: 0 once FILE holds a line, 2 if PID exited first, 1 at the timeout.
docs_wait_line() {
  local i=0
  while [ $i -lt $(( $3 * 20 )) ]; do
    if [ -f "$1" ] && [ "$(wc -l < "$1")" -ge 1 ]; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 2
    sleep 0.05
    i=$((i + 1))
  done
  kill -0 "$2" 2>/dev/null || return 2
  return 1
}
mkdir -p .docs-test
`;

function sessionScript(doc: string, blocks: readonly DocBlock[], ctx: Ctx): string {
  const parts = [SESSION_HEAD];
  let n = 0;
  const prelude = PRELUDES[doc];
  if (prelude !== undefined) {
    const pre: DocBlock = { doc: `${doc} (prelude)`, line: 0, lang: "sh", marker: { kind: "run" }, body: prelude.split("\n") };
    for (const c of blockCommands(pre)) parts.push(commandScript(c, `${doc} prelude`, false, n++));
  }
  for (const b of blocks) {
    if (b.marker.kind !== "run" && b.marker.kind !== "serve") continue;
    parts.push(`echo ${shq(`=== ${doc}:${b.line} (${b.marker.kind})`)} >&2`);
    for (const c of blockCommands(placeheld(doc, b, ctx))) parts.push(commandScript(c, doc, b.marker.kind === "serve", n++));
  }
  parts.push(`echo 'docs-test: session done' >&2`);
  return parts.join("\n");
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a !== null ? res(a.port) : rej(new Error("no port"))));
    });
  });
}

const groupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Runs a doc's session in `dir`; returns its exit code and everything it printed. */
async function runSession(doc: string, dir: string, script: string, binDir: string): Promise<{ exitCode: number; log: string }> {
  mkdirSync(join(dir, "home"), { recursive: true });
  for (const [name, make] of Object.entries(GIVEN_FILES)) writeFileSync(join(dir, name), make());
  writeFileSync(join(dir, "session.sh"), script);
  const env: Record<string, string> = { PATH: `${binDir}:/usr/bin:${process.env.PATH ?? ""}`, HOME: join(dir, "home"), SANBOX_LOG: "warn", LIBNBD_DEBUG: "0", LC_ALL: "C.UTF-8" };
  const proc = execa("bash", ["session.sh"], { cwd: dir, env, extendEnv: false, detached: true, reject: false, all: true, timeout: 80_000 });
  const pgid = proc.pid;
  const r = await proc;
  // Every process the session left (its daemons, nbdfuse) shares its process group.
  if (pgid !== undefined) {
    if (groupAlive(pgid)) process.kill(-pgid, "SIGTERM");
    for (let i = 0; i < 200 && groupAlive(pgid); i++) await new Promise((res) => setTimeout(res, 50));
    if (groupAlive(pgid)) process.kill(-pgid, "SIGKILL");
  }
  for (const m of readFileSync("/proc/mounts", "utf8").split("\n")) {
    const at = m.split(" ")[1];
    if (at?.startsWith(dir)) await execa("fusermount3", ["-uz", at], { reject: false });
  }
  return { exitCode: r.exitCode ?? -1, log: `${doc}:\n${String(r.all)}` };
}

describe("docs-test markers (test/support/doc-blocks.ts)", () => {
  it("finds an unclassified shell block and an unlabelled fence, and reads markers, comments and # prints", () => {
    const md = ["<!-- docs-test: run -->", "```sh", "sanbox lun create db 10G   # prints db …", "sanbox array serve &  # x", "```", "", "```bash", "ls", "```", "```", "diagram", "```", "<!-- docs-test: skip -->", "```sh", "x", "```"].join("\n");
    const blocks = parseDocBlocks("t.md", md);
    expect(blocks.map((b) => [b.line, b.lang, b.marker.kind])).toEqual([
      [2, "sh", "run"],
      [7, "bash", "none"],
      [10, "", "none"],
      [14, "sh", "bad"],
    ]);
    expect(classificationProblems(blocks).map((p) => p.split(":").slice(0, 2).join(":"))).toEqual(["t.md:7", "t.md:10", "t.md:14"]);
    const cmds = blockCommands(blocks[0] as DocBlock);
    expect(cmds).toEqual([
      { line: 3, code: "sanbox lun create db 10G", comment: "prints db …", background: false },
      { line: 4, code: "sanbox array serve", comment: "x", background: true },
    ]);
    expect(printsPattern("prints nbd+unix:///snap/<id>/db?socket=…")?.test("nbd+unix:///snap/snap-1/db?socket=/x/nbd.sock")).toBe(true);
    expect(printsPattern("prints: rpc unix:/…/hypervisor.sock")?.test("rpc tcp:1")).toBe(false);
    expect(splitComment(`grep '#x' f # real`)).toEqual({ code: "grep '#x' f", comment: "real" });
    expect(expectedExit("--only '^group\\.'   # exits 1")).toBe(1);
  });

  it("every shell block of README.md and docs/*.md is classified, and every fence is labelled", () => {
    const problems = DOCS.flatMap((d) => classificationProblems(parseDocBlocks(d, readFileSync(join(ROOT, d), "utf8"))));
    expect(problems).toEqual([]);
  });
});

describe("the commands of README.md and docs/*.md run as printed", () => {
  let tmp: { dir: string; cleanup: () => void };
  let binDir: string;
  let ctx: Ctx;
  beforeAll(async () => {
    for (const t of ["nbdinfo", "nbdcopy", "nbdfuse", "qemu-img", "nbdkit", "fusermount3", "jq"]) requireTool(t);
    tmp = tempDir("sanbox-e2e-670-");
    binDir = join(tmp.dir, "bin");
    mkdirSync(binDir);
    // What `npm link` puts on PATH: the built CLI (package.json bin.sanbox).
    writeFileSync(join(binDir, "sanbox"), `#!/bin/sh\nexec node ${shq(sanboxBin())} "$@"\n`, { mode: 0o755 });
    ctx = { port: await freePort() };
  });
  afterAll(() => tmp?.cleanup());

  const runnable = DOCS.filter((d) => parseDocBlocks(d, readFileSync(join(ROOT, d), "utf8")).some((b) => b.marker.kind === "run" || b.marker.kind === "serve"));

  it("some docs have blocks to run (the markers are read)", () => {
    expect(runnable).toEqual(expect.arrayContaining(["README.md", "docs/array-serve.md", "docs/hypervisor.md", "docs/conformance.md"]));
  });

  it.each(runnable.map((d) => [d]))("%s", async (doc) => {
    const blocks = parseDocBlocks(doc, readFileSync(join(ROOT, doc), "utf8"));
    const dir = join(tmp.dir, doc.replace(/[/.]/g, "_"));
    mkdirSync(dir);
    const r = await runSession(doc, dir, sessionScript(doc, blocks, ctx), binDir);
    expect(r.exitCode, r.log).toBe(0);
    expect(r.log).not.toContain("docs-test: FAILED");
    expect(r.log).toContain("docs-test: session done");
  }, 90_000);
});
