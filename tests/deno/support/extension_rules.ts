/**
 * swamp's shipping rules for an extension folder (docs/host-contract.md, "Shipping rules"), as a checker that lists every
 * violation instead of stopping at the first. Used on `dist/*` by `extension_rules_test.ts`, which also feeds it one
 * bad fixture per rule so that each rule is shown to fire.
 *
 * Where swamp's exact matching is not known the check is the stricter reading: `eval(` is a plain substring (so
 * `retrieval(` would count), and `import(` is caught in comments too.
 *
 * @module
 */

import { join, relative } from "node:path";
import { parse as parseYaml } from "npm:yaml@2.8.1";

export type Rule =
  | "file-type"
  | "file-size"
  | "total-size"
  | "file-count"
  | "eval"
  | "new-function"
  | "dynamic-import"
  | "npm-unpinned"
  | "jsr"
  | "zod"
  | "manifest"
  | "datastore-entry";

export interface Violation {
  rule: Rule;
  /** Path relative to the extension folder, when the violation belongs to one file. */
  file?: string;
  detail: string;
}

export const LIMITS = {
  extensions: [".ts", ".json", ".md", ".yaml", ".yml", ".txt"],
  /** Each file must be strictly smaller. */
  fileBytes: 1_000_000,
  /** 10 MB, read as decimal megabytes (the stricter reading). */
  totalBytes: 10_000_000,
  files: 150,
} as const;

const CALVER = /^(\d{4})\.(\d{2})\.(\d{2})\.(\d+)$/;
const TYPE_PATTERN = /^@?[a-z0-9_-]+\/[a-z0-9_-]+$/;
/** `npm:name@x.y.z` or `npm:@scope/name@x.y.z`, optionally a prerelease and a subpath. */
const PINNED_NPM = /^(?:@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*@\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\/[\w./-]*)?$/;

function listFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) files.push(...listFiles(path));
    else files.push(path);
  }
  return files.sort();
}

function lineOf(text: string, index: number): number {
  return text.slice(0, index).split("\n").length;
}

function checkSources(rel: string, text: string, violations: Violation[]): void {
  const report = (rule: Rule, index: number, what: string) =>
    violations.push({ rule, file: rel, detail: `line ${lineOf(text, index)}: ${what}` });
  for (let at = text.indexOf("eval("); at !== -1; at = text.indexOf("eval(", at + 1)) report("eval", at, "eval(");
  for (const match of text.matchAll(/\bnew\s+Function\s*\(/g)) report("new-function", match.index, match[0]);
  if (!rel.endsWith(".ts")) return;
  for (const match of text.matchAll(/\bimport\s*\(/g)) report("dynamic-import", match.index, "dynamic import(");
  for (const match of text.matchAll(/\bjsr:[^\s"'`]*/g)) report("jsr", match.index, match[0]);
  for (const match of text.matchAll(/\bnpm:([^\s"'`]*)/g)) {
    if (!PINNED_NPM.test(match[1])) report("npm-unpinned", match.index, `${match[0]} is not npm:pkg@x.y.z`);
  }
}

/** swamp scans the .ts files directly in extensions/datastores/ (not `_` folders) and bundles each one it accepts. */
function isScannedEntry(rel: string): boolean {
  return /^extensions\/datastores\/[^/_][^/]*\.ts$/.test(rel) && !rel.endsWith("_test.ts");
}

/**
 * swamp externalises zod only for the exact `npm:zod@4.…` specifier it finds in the entry file and provides its own
 * zod 4 there; zod imported anywhere else would be bundled as a second copy, whose schemas fail swamp's checks.
 */
function checkZod(rel: string, text: string, isEntry: boolean, violations: Violation[]): void {
  for (const match of text.matchAll(/\bfrom\s*["']((?:npm:)?zod(?:@[^"']*)?)["']/g)) {
    if (!isEntry) {
      violations.push({ rule: "zod", file: rel, detail: `${match[1]} outside a datastore entry` });
    } else if (!/^npm:zod@4\.\d+\.\d+$/.test(match[1])) {
      violations.push({ rule: "zod", file: rel, detail: `${match[1]} is not npm:zod@4.x.y` });
    }
  }
}

function isValidCalVer(version: string): boolean {
  const match = CALVER.exec(version);
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return month >= 1 && month <= 12 && day >= 1 && day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

interface DeclaredEntries {
  /** The manifest's `name`, when it is a string. */
  name?: string;
  /** The declared datastore entry files that exist, relative to the folder. */
  entries: string[];
}

function checkManifest(dir: string, violations: Violation[]): DeclaredEntries {
  const bad = (detail: string) => violations.push({ rule: "manifest", file: "manifest.yaml", detail });
  let manifest: Record<string, unknown>;
  try {
    const parsed = parseYaml(Deno.readTextFileSync(join(dir, "manifest.yaml")));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a mapping");
    manifest = parsed as Record<string, unknown>;
  } catch (error) {
    bad(`unreadable: ${error instanceof Error ? error.message : String(error)}`);
    return { entries: [] };
  }
  if (manifest.manifestVersion !== 1) bad("manifestVersion must be 1");
  if (typeof manifest.name !== "string" || !TYPE_PATTERN.test(manifest.name)) bad("name must be @collective/name");
  if (typeof manifest.version !== "string" || !isValidCalVer(manifest.version)) bad("version must be YYYY.MM.DD.N");
  if (typeof manifest.description !== "string" || manifest.description.trim() === "") bad("description is missing");
  if (typeof manifest.repository !== "string" || !/^https:\/\/\S+$/.test(manifest.repository)) {
    bad("repository must be an https URL");
  }
  if (!Array.isArray(manifest.platforms)) bad("platforms must be a list");
  if (!isStringList(manifest.labels) || manifest.labels.length === 0) bad("labels must be a non-empty list");
  const additional = manifest.additionalFiles;
  if (!isStringList(additional)) bad("additionalFiles must be a list");
  else {
    for (const file of additional) {
      if (!exists(join(dir, file))) bad(`additional file ${file} does not exist`);
    }
  }
  const name = typeof manifest.name === "string" ? manifest.name : undefined;
  const datastores = manifest.datastores;
  if (!isStringList(datastores) || datastores.length === 0) {
    bad("datastores must be a non-empty list");
    return { name, entries: [] };
  }
  const entries: string[] = [];
  for (const name of datastores) {
    const rel = join("extensions", "datastores", name);
    if (!exists(join(dir, rel))) bad(`datastore ${name} does not exist at ${rel}`);
    else entries.push(rel);
  }
  return { name, entries };
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Each declared entry is found by swamp's text search and names a type of the manifest's collective. */
function checkEntries(dir: string, declared: DeclaredEntries, violations: Violation[]): void {
  const collective = declared.name?.split("/")[0];
  for (const rel of declared.entries) {
    const text = Deno.readTextFileSync(join(dir, rel));
    if (!text.includes("export const datastore =")) {
      violations.push({ rule: "datastore-entry", file: rel, detail: "no `export const datastore =`" });
    }
    const type = /\btype:\s*["']([^"']+)["']/.exec(text)?.[1];
    if (!type || !TYPE_PATTERN.test(type)) {
      violations.push({ rule: "datastore-entry", file: rel, detail: "no valid `type` string" });
    } else if (collective && type.split("/")[0] !== collective) {
      violations.push({ rule: "datastore-entry", file: rel, detail: `type ${type} is not in ${collective}` });
    }
  }
}

/** Every violation of swamp's shipping rules in the extension folder `dir`. */
export function checkExtension(dir: string): Violation[] {
  const violations: Violation[] = [];
  const files = listFiles(dir);
  let total = 0;
  if (files.length > LIMITS.files) {
    violations.push({ rule: "file-count", detail: `${files.length} files (limit ${LIMITS.files})` });
  }
  let declared: DeclaredEntries = { entries: [] };
  if (exists(join(dir, "manifest.yaml"))) declared = checkManifest(dir, violations);
  else violations.push({ rule: "manifest", detail: "manifest.yaml is missing" });
  for (const path of files) {
    const rel = relative(dir, path);
    const size = Deno.statSync(path).size;
    total += size;
    if (!LIMITS.extensions.some((extension) => rel.endsWith(extension))) {
      violations.push({ rule: "file-type", file: rel, detail: `only ${LIMITS.extensions.join(" ")} may ship` });
      continue;
    }
    if (size >= LIMITS.fileBytes) {
      violations.push({ rule: "file-size", file: rel, detail: `${size} bytes (limit < ${LIMITS.fileBytes})` });
    }
    const text = Deno.readTextFileSync(path);
    checkSources(rel, text, violations);
    if (rel.endsWith(".ts")) checkZod(rel, text, isScannedEntry(rel), violations);
  }
  if (total > LIMITS.totalBytes) {
    violations.push({ rule: "total-size", detail: `${total} bytes in all (limit ${LIMITS.totalBytes})` });
  }
  checkEntries(dir, declared, violations);
  return violations;
}
