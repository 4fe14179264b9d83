/**
 * The per-operation host environment handed to the wasm core (`MarshEnv`): an abortable sleep, the operation's
 * signal, and optional trace output.
 *
 * @module
 */

import type { MarshEnv } from "./host.ts";

/** An `Error` named `AbortError`, as `AbortSignal`-aware APIs throw. */
export function abortError(message = "the operation was aborted"): Error {
  return Object.assign(new Error(message), { name: "AbortError" });
}

/** Sleep `ms`, rejecting with an `AbortError` as soon as `signal` aborts (B14: the backoff wakes on abort). */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError());
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export function makeEnv(signal?: AbortSignal, trace?: (line: string) => void, namespace?: string): MarshEnv {
  return { sleep: (ms: number) => abortableSleep(ms, signal), signal, trace, namespace };
}

/** A trace sink when any of `variables` is set to a non-empty value other than "0" (B21), else undefined. */
export function traceFromEnvironment(variables: string[]): ((line: string) => void) | undefined {
  const enabled = variables.some((name) => {
    try {
      const value = Deno.env.get(name);
      return value !== undefined && value !== "" && value !== "0";
    } catch {
      return false; // no --allow-env: tracing stays off
    }
  });
  return enabled ? (line: string) => console.error(line) : undefined;
}
