/**
 * The workload's pseudo-random generator: SFC32 seeded through SplitMix32.
 * Part of the stamp format's contract: the oracle regenerates a workload's
 * operation chain from the seed written in its stamps, so this sequence must
 * never change for a given seed (bump the descriptor version if it ever must).
 */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const split = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1) with 32 bits of randomness. */
  float(): number {
    return this.u32() / 2 ** 32;
  }

  /** Uniform integer in [0, n), n ≤ 2^32. */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  /** Fills `buf` with the generator's bytes (little-endian u32 words). */
  fill(buf: Buffer): void {
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) buf.writeUInt32LE(this.u32(), i);
    if (i < buf.length) {
      const w = this.u32();
      for (let k = 0; i < buf.length; i++, k++) buf[i] = (w >>> (8 * k)) & 0xff;
    }
  }
}
