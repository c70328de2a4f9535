/**
 * NBD URIs (doc/uri.md): the spec's examples, our printing of the forms libnbd
 * and qemu accept, diagnostics, and round trips as properties.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../../src/errors.js";
import { formatNbdUri, parseNbdUri, type NbdUri } from "../../../src/nbd/uri.js";

describe("parseNbdUri", () => {
  it.each([
    ["nbd://example.com/disk", "disk"],
    ["nbd+unix:///disk?socket=sock", "disk"],
    ["nbd://example.com/", ""],
    ["nbd://example.com", ""],
    ["nbd://example.com//disk", "/disk"],
    ["nbd://example.com/hello%20world", "hello world"],
    ["nbd://example.com/snap/S1/lun0", "snap/S1/lun0"],
  ])("export name of %s is %j (spec table)", (uri, name) => {
    expect(parseNbdUri(uri).exportName).toBe(name);
  });

  it("parses TCP with default and explicit ports, and IPv6 literals", () => {
    expect(parseNbdUri("nbd://example.com/x")).toEqual({ tls: false, transport: { kind: "tcp", host: "example.com", port: 10809 }, exportName: "x" });
    expect(parseNbdUri("nbds://h:1234/").transport).toEqual({ kind: "tcp", host: "h", port: 1234 });
    expect(parseNbdUri("nbds://h:1234/").tls).toBe(true);
    expect(parseNbdUri("nbd://[::1]:10810/e").transport).toEqual({ kind: "tcp", host: "::1", port: 10810 });
    expect(parseNbdUri("nbd://[fe80::1%25eth0]/").transport).toEqual({ kind: "tcp", host: "fe80::1%eth0", port: 10809 });
  });

  it("parses Unix sockets, TLS parameters and the username", () => {
    expect(parseNbdUri("nbd+unix:///?socket=/tmp/x.sock")).toEqual({ tls: false, transport: { kind: "unix", path: "/tmp/x.sock" }, exportName: "" });
    expect(parseNbdUri("nbds+unix://alice@/lun/a?socket=/run/s%20p.sock&tls-psk-file=/etc/k.psk")).toEqual({
      tls: true,
      transport: { kind: "unix", path: "/run/s p.sock" },
      exportName: "lun/a",
      tlsPskFile: "/etc/k.psk",
      tlsUsername: "alice",
    });
    expect(parseNbdUri("nbds://h/?tls-username=bob").tlsUsername).toBe("bob");
    // '+' in a query is a literal plus (RFC 3986), not a space
    expect(parseNbdUri("nbd+unix:///?socket=/tmp/a+b").transport).toEqual({ kind: "unix", path: "/tmp/a+b" });
  });

  it.each([
    ["http://example.com/", /unknown scheme "http"/],
    ["nbd+unix:///x", /needs a socket=PATH/],
    ["nbd://h/x?socket=/s", /only valid with nbd\+unix/],
    ["nbd://h:99999/", /port "99999"/],
    ["nbd://h/?frobnicate=1", /unknown query parameter "frobnicate"/],
    ["nbd://h/%zz", /malformed percent-escape/],
    ["nbd+unix://host/?socket=/s", /takes no host/],
    ["nbd:/x", /expected SCHEME/],
    ["nbds://a@h/?tls-username=b", /username given twice/],
  ])("rejects %s", (uri, why) => {
    expect(() => parseNbdUri(uri)).toThrow(InvalidArgumentError);
    expect(() => parseNbdUri(uri)).toThrow(why);
  });

  it("ignores the spec's certificate TLS knobs and x- parameters", () => {
    expect(parseNbdUri("nbds://h/?tls-verify-peer=0&x-foo=1").transport).toEqual({ kind: "tcp", host: "h", port: 10809 });
  });
});

describe("formatNbdUri", () => {
  it("prints the forms nbdinfo, nbdcopy and qemu-img accept", () => {
    expect(formatNbdUri({ tls: false, transport: { kind: "unix", path: "/tmp/x.sock" }, exportName: "" })).toBe("nbd+unix:///?socket=/tmp/x.sock");
    expect(formatNbdUri({ tls: false, transport: { kind: "tcp", host: "localhost", port: 10809 }, exportName: "lun/a" })).toBe("nbd://localhost/lun/a");
    expect(formatNbdUri({ tls: true, transport: { kind: "tcp", host: "::1", port: 10900 }, exportName: "a b" })).toBe("nbds://[::1]:10900/a%20b");
    expect(
      formatNbdUri({ tls: true, transport: { kind: "unix", path: "/s.sock" }, exportName: "x", tlsPskFile: "/k&1.psk", tlsUsername: "alice" }),
    ).toBe("nbds+unix://alice@/x?socket=/s.sock&tls-psk-file=/k%261.psk");
  });
});

const safeText = fc.string({ unit: fc.oneof(fc.constantFrom("/", "%", "?", "#", "&", "=", "+", " ", ";", "@", ":", "[", "]"), fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), fc.constantFrom("é", "日", "🙂", "\t")) });
const noNul = safeText.filter((s) => !s.includes("\0"));
const host = fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6(), fc.constant("localhost"));

const uriArb: fc.Arbitrary<NbdUri> = fc
  .record({
    tls: fc.boolean(),
    transport: fc.oneof(
      fc.record({ kind: fc.constant("tcp" as const), host, port: fc.integer({ min: 1, max: 65535 }) }),
      fc.record({ kind: fc.constant("unix" as const), path: noNul.filter((s) => s !== "") }),
    ),
    exportName: noNul,
    tlsPskFile: fc.option(noNul.filter((s) => s !== ""), { nil: undefined }),
    tlsUsername: fc.option(noNul.filter((s) => s !== ""), { nil: undefined }),
  })
  .map((r) => {
    const u: NbdUri = { tls: r.tls, transport: r.transport, exportName: r.exportName };
    if (r.tlsPskFile !== undefined) u.tlsPskFile = r.tlsPskFile;
    if (r.tlsUsername !== undefined) u.tlsUsername = r.tlsUsername;
    return u;
  });

describe("round trips", () => {
  it("parse(format(u)) = u", () => {
    fc.assert(
      fc.property(uriArb, (u) => {
        const printed = formatNbdUri(u);
        const back = parseNbdUri(printed);
        // IPv6 literals come back in the form they were printed
        expect(back).toEqual(u);
        // and printing is stable
        expect(formatNbdUri(back)).toBe(printed);
      }),
      { numRuns: 500 },
    );
  });

  it("printed URIs are plain ASCII without spaces", () => {
    fc.assert(
      fc.property(uriArb, (u) => {
        expect(formatNbdUri(u)).toMatch(/^[\x21-\x7e]+$/);
      }),
    );
  });
});
