/**
 * `sanbox conformance`: runs the array conformance suite (plugin/conformance)
 * against an ArrayService endpoint, its NBD data-path checks against any NBD
 * URI (--nbd-only), or the CSI suite (plugin/conformance/csi) against a CSI
 * driver's endpoint (--csi, with its secrets map from --secret and
 * --secrets-file). Results go to stdout (human lines, or --json), JUnit XML to
 * --junit FILE, progress to stderr. Exit 0 when nothing failed, 1 when any
 * check failed, 2 on a usage error. docs/conformance.md is the guide.
 */
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { Command, InvalidArgumentError as CommanderArgError } from "commander";
import { InvalidArgumentError, quote } from "../src/errors.js";
import { formatHuman, formatJson, formatJunit, runConformance, type ConformanceConfig, type ConformanceReport } from "../plugin/conformance/index.js";
import { runCsiConformance } from "../plugin/conformance/csi/index.js";
import { createLogger } from "../src/log.js";
import { defaultEndpoint } from "./array-paths.js";
import { EXIT } from "./run.js";

interface ConformanceOptions {
  endpoint?: string;
  token?: string;
  ca?: string;
  tlsCa?: string;
  junit?: string;
  json?: boolean;
  only?: string;
  nbdOnly?: string;
  csi?: string;
  secret: string[];
  secretsFile?: string;
  idempotentCount: number;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CommanderArgError("expected a positive integer");
  return n;
}

function collectSecret(v: string, prev: string[]): string[] {
  if (!/^[^=]+=/.test(v)) throw new CommanderArgError("expected KEY=VALUE");
  return [...prev, v];
}

/** The CSI secrets map: --secrets-file (a JSON object of strings) first, then each --secret KEY=VALUE over it. */
function secretsMap(options: ConformanceOptions): Record<string, string> {
  const out: Record<string, string> = {};
  if (options.secretsFile !== undefined) {
    let v: unknown;
    try {
      v = JSON.parse(readFileSync(options.secretsFile, "utf8"));
    } catch (e: unknown) {
      throw new InvalidArgumentError(`cannot read the secrets file ${quote(options.secretsFile)}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new InvalidArgumentError(`the secrets file ${quote(options.secretsFile)} must hold a JSON object of strings`);
    for (const [k, x] of Object.entries(v)) {
      if (typeof x !== "string") throw new InvalidArgumentError(`the secrets file ${quote(options.secretsFile)}: the value of ${quote(k)} is not a string`);
      out[k] = x;
    }
  }
  for (const kv of options.secret) {
    const i = kv.indexOf("=");
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

function envOr(v: string | undefined, name: string): string | undefined {
  const e = process.env[name];
  return v ?? (e !== undefined && e !== "" ? e : undefined);
}

export function registerConformance(program: Command): Command {
  return program
    .command("conformance")
    .description("check that an ArrayService endpoint (a storage array), or with --csi a CSI driver, meets its contract; exits non-zero on any failure")
    .option("--endpoint <endpoint>", "ArrayService endpoint: unix:PATH, HOST:PORT or tls:HOST:PORT (default: $SANBOX_ENDPOINT or the local daemon)")
    .option("--token <token>", "bearer token (default: $SANBOX_TOKEN); also enables the wrong-token check")
    .option("--ca <file>", "PEM CA certificate for tls: endpoints (default: $SANBOX_CA)")
    .option("--tls-ca <file>", "the same as --ca")
    .option("--junit <file>", "also write the results as JUnit XML to FILE")
    .option("--json", "print the results as JSON instead of human lines")
    .option("--only <pattern>", "run only checks whose id matches PATTERN (a regular expression, e.g. '^cbt\\.' or 'group')")
    .option("--nbd-only <uri>", "run only the NBD data-path checks against this NBD URI (any server, e.g. nbdkit memory); its content is overwritten")
    .option("--csi <endpoint>", "run the CSI suite against this CSI driver endpoint (unix:PATH, HOST:PORT or tls:HOST:PORT) instead")
    .option("--secret <key=value>", "with --csi: one entry of the CSI secrets map sent on every call (repeatable)", collectSecret, [])
    .option("--secrets-file <file>", "with --csi: the CSI secrets map as a JSON object of strings (--secret entries override it)")
    .option("--idempotent-count <n>", "how many times idempotent calls are repeated", positiveInt, 3)
    .addHelpText(
      "after",
      `
Examples:
  sanbox conformance --endpoint unix:/var/lib/sanbox/rpc.sock --junit results.xml
  sanbox conformance --endpoint tls:array.example:8443 --token "$TOKEN" --only '^cbt\\.'
  nbdkit -U /tmp/m.sock memory 64M &  sanbox conformance --nbd-only 'nbd+unix:///?socket=/tmp/m.sock'
  sanbox conformance --csi unix:/run/csi/csi.sock --secrets-file secrets.json --junit csi.xml`,
    )
    .action(async (options: ConformanceOptions) => {
      const log = createLogger("conformance");
      const token = envOr(options.token, "SANBOX_TOKEN");
      const caFile = envOr(options.tlsCa ?? options.ca, "SANBOX_CA");
      let ca: Buffer | undefined;
      if (caFile !== undefined) {
        try {
          ca = readFileSync(caFile);
        } catch (e: unknown) {
          throw new InvalidArgumentError(`cannot read CA file ${caFile}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      if ([options.nbdOnly, options.endpoint, options.csi].filter((x) => x !== undefined).length > 1) throw new InvalidArgumentError("give one of --endpoint, --nbd-only and --csi");
      if (options.csi === undefined && (options.secret.length > 0 || options.secretsFile !== undefined)) throw new InvalidArgumentError("--secret and --secrets-file go with --csi");
      const common = {
        idempotentCount: options.idempotentCount,
        log: (line: string) => log.info(line),
        ...(token !== undefined ? { token } : {}),
        ...(ca !== undefined ? { ca } : {}),
        ...(options.only !== undefined ? { only: options.only } : {}),
      };
      let report: ConformanceReport;
      if (options.csi !== undefined) {
        report = await runCsiConformance({ ...common, endpoint: options.csi, secrets: secretsMap(options) });
      } else {
        const config: ConformanceConfig = { ...common, ...(options.nbdOnly !== undefined ? { nbdOnlyUri: options.nbdOnly } : { endpoint: options.endpoint ?? defaultEndpoint() }) };
        report = await runConformance(config);
      }
      if (options.junit !== undefined) await writeFile(options.junit, formatJunit(report));
      process.stdout.write(options.json === true ? formatJson(report) : formatHuman(report));
      if (report.results.length === 0) log.warn(`no check matched --only ${options.only ?? ""}`);
      process.exitCode = report.failed > 0 ? EXIT.FAILED : EXIT.OK;
    });
}
