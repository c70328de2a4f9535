/**
 * The line grammar shared by VMX files, VMDK descriptors and RDM mapping files:
 * `key = value` or `key="value"` lines, `#` comment lines, blank lines. Every
 * error names the source and the 1-based line number.
 */
import { CorruptError, quote } from "../errors.js";

export interface Line {
  /** 1-based line number. */
  no: number;
  text: string;
}

export function splitLines(text: string): Line[] {
  const raw = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  if (raw.length > 0 && raw[raw.length - 1] === "") raw.pop();
  return raw.map((t, i) => ({ no: i + 1, text: t.trimEnd() }));
}

export function lineError(source: string, line: Line | number, message: string): CorruptError {
  const no = typeof line === "number" ? line : line.no;
  return new CorruptError(`${source} line ${no}: ${message}`);
}

export interface KeyValue {
  key: string;
  value: string;
  quoted: boolean;
}

const KEY = /^[A-Za-z0-9_.:-]+$/;

/** `key = "value"` or `key=value` (unquoted values may not contain spaces, quotes or `#`). */
export function parseKeyValue(source: string, line: Line): KeyValue {
  const eq = line.text.indexOf("=");
  if (eq < 0) throw lineError(source, line, `expected key = "value", got ${quote(line.text.trim())}`);
  const key = line.text.slice(0, eq).trim();
  if (!KEY.test(key)) throw lineError(source, line, `invalid key ${quote(key)}`);
  const rest = line.text.slice(eq + 1).trim();
  if (rest.startsWith('"')) {
    const close = rest.indexOf('"', 1);
    if (close < 0) throw lineError(source, line, `unterminated quoted value for ${key}`);
    const after = rest.slice(close + 1).trim();
    if (after !== "" && !after.startsWith("#")) throw lineError(source, line, `unexpected text after the value of ${key}: ${quote(after)}`);
    return { key, value: rest.slice(1, close), quoted: true };
  }
  if (rest === "" || /[\s"#]/.test(rest)) throw lineError(source, line, `value of ${key} must be quoted`);
  return { key, value: rest, quoted: false };
}

export function isSkippable(line: Line): boolean {
  const t = line.text.trim();
  return t === "" || t.startsWith("#");
}
