/**
 * CLI exit codes: scripts can tell a conflict from an auth problem, a missing bucket, a transient failure.
 *
 * @module
 */

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  /**
   * Paths changed both here and in the bucket (a push refused them, a pull left them alone), another writer kept winning
   * (index compare-and-swap exhausted), or a lock is held / was lost.
   */
  conflict: 3,
  /** Credentials missing or access denied. */
  auth: 4,
  /** The bucket (or the lock) does not exist, or `resolve` was given a path with no open conflict. */
  notFound: 5,
  /** Network, timeout, throttling, 5xx: retrying later may work. */
  transient: 6,
  /** Some files failed; the others were transferred. */
  partial: 7,
  aborted: 130,
} as const;

interface ErrorLike {
  name?: string;
  kind?: string;
  causeKind?: string;
  status?: number;
  failures?: { kind: string }[];
}

/** The exit code for an error thrown by a store, the engine or the lock. */
export function exitCodeFor(error: unknown): number {
  const e = (error ?? {}) as ErrorLike;
  if (e.name === "UsageError") return EXIT.usage;
  if (e.name === "AbortError" || e.kind === "Aborted") return EXIT.aborted;
  if (e.name === "LockTimeoutError" || e.name === "LockLostError") return EXIT.conflict;
  if (e.kind === "IndexContended" || e.kind === "Conflicts") return EXIT.conflict;
  if (e.kind === "NoConflict") return EXIT.notFound;
  if (e.kind === "InvalidArgument") return EXIT.usage;
  const kind = e.kind === "Files" ? undefined : (e.causeKind ?? e.kind);
  if (e.kind === "Files") {
    const kinds = new Set((e.failures ?? []).map((f) => f.kind));
    if (kinds.size === 1 && kinds.has("Auth")) return EXIT.auth;
    return EXIT.partial;
  }
  switch (kind) {
    case "Auth":
      return EXIT.auth;
    case "NotFound":
      return EXIT.notFound;
    case "Transient":
      return EXIT.transient;
    case "PreconditionFailed":
      return EXIT.conflict;
  }
  if (e.status === 404) return EXIT.notFound;
  return EXIT.failure;
}
