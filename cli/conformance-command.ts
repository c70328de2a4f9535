/**
 * `sanbox conformance`: runs the array conformance suite (plugin/conformance)
 * against an ArrayService endpoint, or its NBD data-path checks against any
 * NBD URI (--nbd-only). Results go to stdout (human lines, or --json), JUnit
 * XML to --junit FILE, progress to stderr. Exit 0 when nothing failed, 1 when
 * any check failed, 2 on a usage error. docs/conformance.md is the guide.
 */
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { Command, InvalidArgumentError as CommanderArgError } from "commander";
import { InvalidArgumentError } from "../src/errors.js";
import { formatHuman, formatJson, formatJunit, runConformance, type ConformanceConfig } from "../plugin/conformance/index.js";
import { createLogger } from "../src/log.js";
import { defaultEndpoint } from "./array-paths.js";
import { EXIT } from "./run.js";

interface ConformanceOptions {
  endpoint?: string;
  token?: string;
  ca?: string;
  junit?: string;
  json?: boolean;
  only?: string;
  nbdOnly?: string;
  idempotentCount: number;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CommanderArgError("expected a positive integer");
  return n;
}

export function registerConformance(program: Command): Command {
  return program
    .command("conformance")
    .description("check that an ArrayService endpoint (a storage array) meets the sanbox contract; exits non-zero on any failure")
    .option("--endpoint <endpoint>", "ArrayService endpoint: unix:PATH, HOST:PORT or tls:HOST:PORT (default: $SANBOX_ENDPOINT or the local daemon)")
    .option("--token <token>", "bearer token (default: $SANBOX_TOKEN); also enables the wrong-token check")
    .option("--ca <file>", "PEM CA certificate for tls: endpoints (default: $SANBOX_CA)")
    .option("--junit <file>", "also write the results as JUnit XML to FILE")
    .option("--json", "print the results as JSON instead of human lines")
    .option("--only <pattern>", "run only checks whose id matches PATTERN (a regular expression, e.g. '^cbt\\.' or 'group')")
    .option("--nbd-only <uri>", "run only the NBD data-path checks against this NBD URI (any server, e.g. nbdkit memory); its content is overwritten")
    .option("--idempotent-count <n>", "how many times idempotent calls are repeated", positiveInt, 3)
    .addHelpText(
      "after",
      `
Examples:
  sanbox conformance --endpoint unix:/var/lib/sanbox/rpc.sock --junit results.xml
  sanbox conformance --endpoint tls:array.example:8443 --token "$TOKEN" --only '^cbt\\.'
  nbdkit -U /tmp/m.sock memory 64M &  sanbox conformance --nbd-only 'nbd+unix:///?socket=/tmp/m.sock'`,
    )
    .action(async (options: ConformanceOptions) => {
      const log = createLogger("conformance");
      const token = options.token ?? (process.env.SANBOX_TOKEN !== undefined && process.env.SANBOX_TOKEN !== "" ? process.env.SANBOX_TOKEN : undefined);
      const caFile = options.ca ?? (process.env.SANBOX_CA !== undefined && process.env.SANBOX_CA !== "" ? process.env.SANBOX_CA : undefined);
      let ca: Buffer | undefined;
      if (caFile !== undefined) {
        try {
          ca = readFileSync(caFile);
        } catch (e: unknown) {
          throw new InvalidArgumentError(`cannot read CA file ${caFile}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      if (options.nbdOnly !== undefined && options.endpoint !== undefined) throw new InvalidArgumentError("give either --endpoint or --nbd-only, not both");
      const config: ConformanceConfig = {
        idempotentCount: options.idempotentCount,
        log: (line) => log.info(line),
        ...(options.nbdOnly !== undefined ? { nbdOnlyUri: options.nbdOnly } : { endpoint: options.endpoint ?? defaultEndpoint() }),
        ...(token !== undefined ? { token } : {}),
        ...(ca !== undefined ? { ca } : {}),
        ...(options.only !== undefined ? { only: options.only } : {}),
      };
      const report = await runConformance(config);
      if (options.junit !== undefined) await writeFile(options.junit, formatJunit(report));
      process.stdout.write(options.json === true ? formatJson(report) : formatHuman(report));
      if (report.results.length === 0) log.warn(`no check matched --only ${options.only ?? ""}`);
      process.exitCode = report.failed > 0 ? EXIT.FAILED : EXIT.OK;
    });
}
