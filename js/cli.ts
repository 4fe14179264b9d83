/**
 * The marsh command line. For now it only proves that the wasm core loads: `marsh version`.
 *
 * Usage: deno run --config pkg.json js/cli.ts version
 *
 * @module
 */

import { version } from "./wasm.ts";

const usage = "usage: marsh version";

function main(args: string[]): number {
  const [command, ...rest] = args;
  if (command === "version" && rest.length === 0) {
    console.log(`marsh ${version()}`);
    return 0;
  }
  console.error(usage);
  return 2;
}

if (import.meta.main) Deno.exit(main(Deno.args));
