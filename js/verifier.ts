/**
 * swamp's `DatastoreVerifier`: one cheap probe of the bucket (a one-page listing under the prefix), with a hint for
 * the usual failures (B20).
 *
 * @module
 */

import type { MarshStore } from "./host.ts";
import type { DatastoreHealthResult, DatastoreVerifier } from "./swamp.ts";

export interface VerifierHints {
  /** What to check when access is denied or credentials are missing. */
  credentials: string;
  /** What to check when the bucket does not exist. */
  missingBucket: string;
}

export function makeVerifier(
  store: MarshStore,
  datastoreType: string,
  details: Record<string, string>,
  hints: VerifierHints,
): DatastoreVerifier {
  return {
    async verify(): Promise<DatastoreHealthResult> {
      const started = performance.now();
      const latency = () => Math.max(0, Math.round(performance.now() - started));
      try {
        await store.list("", undefined);
        return { healthy: true, message: "bucket reachable", latencyMs: latency(), datastoreType, details };
      } catch (error) {
        const { kind, status, message } = error as { kind?: string; status?: number; message?: string };
        // Adapters already end Auth messages with their credentials hint; the others get one here.
        const hint = kind === "Auth"
          ? ""
          : kind === "NotFound" || status === 404
          ? ` — ${hints.missingBucket}`
          : " — check the endpoint and network";
        return {
          healthy: false,
          message: `${message ?? String(error)}${hint}`,
          latencyMs: latency(),
          datastoreType,
          details: {
            ...details,
            ...(kind ? { errorKind: kind } : {}),
            ...(status ? { status: String(status) } : {}),
            ...(kind === "Auth" ? { hint: hints.credentials } : {}),
          },
        };
      }
    },
  };
}
