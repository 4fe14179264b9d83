/**
 * Progress for the CLI: a redrawn line with files, bytes, rate and ETA on a terminal; nothing per file otherwise (the
 * command prints one summary line at the end).
 *
 * @module
 */

import type { ProgressEvent } from "./host.ts";

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  return `${Math.floor(seconds / 60)}m${String(Math.ceil(seconds % 60)).padStart(2, "0")}s`;
}

/** One progress line: `push  12/40 files  1.2 MB/3.4 MB  800.0 KB/s  ETA 3s`. */
export function progressLine(
  operation: string,
  done: { files: number; bytes: number },
  total: { files: number; bytes: number },
  elapsedSeconds: number,
): string {
  const rate = elapsedSeconds > 0 ? done.bytes / elapsedSeconds : 0;
  const eta = rate > 0 ? (total.bytes - done.bytes) / rate : Infinity;
  return `${operation}  ${done.files}/${total.files} files  ${formatBytes(done.bytes)}/${formatBytes(total.bytes)}  ` +
    `${formatBytes(rate)}/s  ETA ${formatDuration(eta)}`;
}

/** A `MarshEnv.progress` callback drawing on stderr when it is a terminal; `undefined` otherwise. */
export function terminalProgress(
  now: () => number = () => performance.now(),
): ((e: ProgressEvent) => void) | undefined {
  if (!Deno.stderr.isTerminal()) return undefined;
  const encoder = new TextEncoder();
  let total = { files: 0, bytes: 0 };
  let done = { files: 0, bytes: 0 };
  let started = now();
  return (event) => {
    if (event.kind === "planned") {
      total = { files: event.files, bytes: event.bytes };
      done = { files: 0, bytes: 0 };
      started = now();
    } else {
      done = { files: done.files + 1, bytes: done.bytes + event.bytes };
    }
    const line = progressLine(event.operation, done, total, (now() - started) / 1000);
    Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${line}${done.files === total.files ? "\n" : ""}`));
  };
}
