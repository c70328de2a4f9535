/**
 * What every check context has, whichever suite runs it (the array suite's
 * CheckContext, the CSI suite's CsiContext): fresh names under the run's
 * prefix, fixtures built once per scope, skip and progress lines.
 */
import { SkipCheck } from "./assert.js";

export interface ScopeState {
  readonly fixtures: Map<symbol, Promise<unknown>>;
  readonly prefix: string;
  readonly config: { readonly idempotentCount: number; readonly log?: (line: string) => void };
  counter: number;
}

export class CheckScope {
  constructor(protected readonly scope: ScopeState) {}

  get idempotentCount(): number {
    return Math.max(1, this.scope.config.idempotentCount);
  }

  /** A fresh name for an object of this run: `<run-prefix>-<hint>-<n>`. */
  name(hint: string): string {
    this.scope.counter += 1;
    return `${this.scope.prefix}-${hint}-${this.scope.counter}`;
  }

  skip(reason: string): never {
    throw new SkipCheck(reason);
  }

  log(line: string): void {
    this.scope.config.log?.(line);
  }

  fixture<T>(key: symbol, build: () => Promise<T>): Promise<T> {
    let p = this.scope.fixtures.get(key) as Promise<T> | undefined;
    if (p === undefined) {
      p = build();
      this.scope.fixtures.set(key, p);
    }
    return p;
  }
}
