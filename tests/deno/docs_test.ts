// Keeps the docs honest: the behaviour catalogue (docs/behaviours.md) has an entry for every behaviour code the code
// uses and names only tests that exist, the repository stands alone (no reference to files outside it), the README
// stays an introduction, and the relative links of the README and docs/ resolve. Each check is a function returning
// its problems, so the last test can show that every one of them reports a problem when there is one.
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CATALOGUE = "docs/behaviours.md";
const README_LIMIT = 10_000;
/** Where behaviour codes are used (and must then have a catalogue entry). */
const CODE_DIRS = ["src/", "js/", "tests/", "bench/"];
/** The repository must not lean on files outside it. Spelt in pieces so this file does not match itself. */
const FORBIDDEN = ["../" + "shared", ...["CONTRACT", "TODAY", "BEHAVIOURS"].map((name) => `${name}.md`)];
/** A behaviour code: the letter and the number as one word, e.g. the first B-list entry. */
const CODE = /\b[BW][0-9]+\b/g;

// ---- The files of the repository ----

/** `.gitignore` patterns as regular expressions over repo-relative paths (the subset this repository uses). */
function ignorePatterns(): RegExp[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(join(root, ".gitignore"));
  } catch { /* no .gitignore: nothing ignored */ }
  const patterns = text.split("\n").map((line) => line.trim());
  return patterns.filter((line) => line && !line.startsWith("#") && !line.startsWith("!")).map((line) => {
    const anchored = line.startsWith("/") || line.slice(0, -1).includes("/");
    const glob = line.replace(/^\//, "").replace(/\/$/, "");
    const body = glob.split("**").map((part) =>
      part.split("*").map((piece) => piece.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[^/]*")
    ).join(".*");
    return new RegExp(`${anchored ? "^" : "(^|/)"}${body}(/|$)`);
  });
}

/**
 * Every text file a commit would hold: the working tree without `.git` and without what `.gitignore` excludes (build
 * output, tools, benchmark data), so files not yet added are checked too. Binary files are left out.
 */
function repositoryFiles(): Map<string, string> {
  const ignored = ignorePatterns();
  const files = new Map<string, string>();
  const decoder = new TextDecoder();
  const visit = (dir: string) => {
    for (const entry of Deno.readDirSync(join(root, dir))) {
      const rel = dir ? `${dir}/${entry.name}` : entry.name;
      if (rel === ".git" || entry.isSymlink || ignored.some((pattern) => pattern.test(rel))) continue;
      if (entry.isDirectory) {
        visit(rel);
      } else if (entry.isFile) {
        const bytes = Deno.readFileSync(join(root, rel));
        if (!bytes.subarray(0, 8000).includes(0)) files.set(rel, decoder.decode(bytes));
      }
    }
  };
  visit("");
  return files;
}

// ---- The checks ----

/** Code → where it is first used, over the files under `CODE_DIRS`. */
function codesUsed(files: Map<string, string>): Map<string, string> {
  const used = new Map<string, string>();
  for (const [rel, text] of files) {
    if (!CODE_DIRS.some((dir) => rel.startsWith(dir))) continue;
    text.split("\n").forEach((line, at) => {
      for (const [code] of line.matchAll(CODE)) if (!used.has(code)) used.set(code, `${rel}:${at + 1}`);
    });
  }
  return used;
}

/** The catalogue's entries (`### <code> <title>`), each with its text up to the next heading, whitespace collapsed. */
function catalogueEntries(markdown: string): Map<string, string> {
  const entries = new Map<string, string>();
  let code: string | undefined;
  let lines: string[] = [];
  const close = () => {
    if (code) entries.set(code, lines.join(" ").replace(/\s+/g, " ").trim());
  };
  for (const line of markdown.split("\n")) {
    if (/^#{1,3} /.test(line)) {
      close();
      code = /^### ([BW][0-9]+)\b/.exec(line)?.[1];
      lines = [];
    } else {
      lines.push(line);
    }
  }
  close();
  return entries;
}

/** (a) Codes used in the code without a catalogue entry. */
function missingEntries(used: Map<string, string>, entries: Map<string, string>): string[] {
  return [...used].filter(([code]) => !entries.has(code)).map(([code, where]) => `${code} (used at ${where})`);
}

interface TestRef {
  file: string;
  name: string;
}

/** The `file::test` references of one entry. */
function testRefs(entry: string): TestRef[] {
  return [...entry.matchAll(/`((?:src|tests)\/[^`\s]+?\.(?:rs|ts))::([^`]+)`/g)]
    .map(([, file, name]) => ({ file, name: name.trim() }));
}

/**
 * The literal titles of the tests a Deno test file declares (template placeholders left as written): `Deno.test` calls,
 * and calls of a helper whose name ends in `Test` (`e2eTest`, `bucketTest`, …) with the title as the first argument.
 */
function denoTitles(source: string): string[] {
  const calls = /(?:\bDeno\.test|\b[a-z][A-Za-z0-9]*Test)\(\s*(?:\{\s*name:\s*)?(["'`])((?:\\.|(?!\1)[^\\])*)\1/g;
  return [...source.matchAll(calls)].map((match) => match[2].replace(/\\(.)/g, "$1"));
}

/** (b) Entries that name a test that does not exist, or state no status, or are met/partly without any test. */
function brokenTestRefs(entries: Map<string, string>, files: Map<string, string>): string[] {
  const problems: string[] = [];
  for (const [code, entry] of entries) {
    const status = /Status: \*\*(met|partly|planned)\*\*/.exec(entry)?.[1];
    const refs = testRefs(entry);
    if (!status) problems.push(`${code}: no "Status: **met|partly|planned**"`);
    if (status !== "planned" && refs.length === 0) problems.push(`${code}: ${status} but names no test`);
    for (const { file, name } of refs) {
      const source = files.get(file);
      const found = source !== undefined &&
        (file.endsWith(".rs")
          ? new RegExp(`\\bfn\\s+${name.replace(/\W/g, "\\$&")}\\s*[<(]`).test(source)
          : denoTitles(source).some((title) => title.includes(name)));
      if (!found) problems.push(`${code}: ${file}::${name} does not exist`);
    }
  }
  return problems;
}

/** (c) `path:line` of every mention of a file outside the repository. */
function outsideReferences(files: Map<string, string>): string[] {
  const problems: string[] = [];
  for (const [rel, text] of files) {
    text.split("\n").forEach((line, at) => {
      for (const forbidden of FORBIDDEN) if (line.includes(forbidden)) problems.push(`${rel}:${at + 1}: ${forbidden}`);
    });
  }
  return problems;
}

/** (e) Relative links of one markdown file (outside code blocks) that point at nothing. */
function brokenLinks(rel: string, markdown: string, exists: (rel: string) => boolean): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`]*`/g, "");
  const problems: string[] = [];
  for (const [, target] of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("#")) continue;
    const path = decodeURIComponent(target.replace(/[#?].*$/, ""));
    const resolved = relative(root, resolve(root, path.startsWith("/") ? "." : dirname(rel), path.replace(/^\//, "")));
    if (resolved.startsWith("..") || !exists(resolved)) problems.push(`${rel}: ${target}`);
  }
  return problems;
}

function existsInRepo(rel: string): boolean {
  try {
    Deno.statSync(join(root, rel));
    return true;
  } catch {
    return false;
  }
}

// ---- The repository as it is ----

const files = repositoryFiles();
const catalogue = files.get(CATALOGUE) ?? "";

Deno.test("docs: every behaviour code used in src/, js/, tests/ and bench/ has an entry in the catalogue", () => {
  const used = codesUsed(files);
  assert.ok(used.size > 0, "no behaviour code found: the scan is broken");
  assert.deepEqual(missingEntries(used, catalogueEntries(catalogue)), []);
});

Deno.test("docs: every test the catalogue names exists, and every met or partly entry names one", () => {
  const entries = catalogueEntries(catalogue);
  assert.ok(entries.size > 0, `${CATALOGUE} has no entries`);
  assert.deepEqual(brokenTestRefs(entries, files), []);
});

Deno.test("docs: no file of the repository refers to files outside it", () => {
  assert.ok(files.has("README.md") && files.has(CATALOGUE), "the repository walk is broken");
  assert.deepEqual(outsideReferences(files), []);
});

Deno.test(`docs: README.md is an introduction of at most ${README_LIMIT} bytes`, () => {
  const size = Deno.statSync(join(root, "README.md")).size;
  assert.ok(size <= README_LIMIT, `README.md is ${size} bytes; move detail into docs/`);
});

Deno.test("docs: every relative link in README.md and docs/*.md points at an existing file", () => {
  const pages = [...files.keys()].filter((rel) => rel === "README.md" || /^docs\/[^/]+\.md$/.test(rel));
  assert.ok(pages.length > 1, "no docs pages found");
  assert.deepEqual(pages.flatMap((rel) => brokenLinks(rel, files.get(rel)!, existsInRepo)), []);
});

// ---- Each check reports a problem when there is one ----

Deno.test("docs checks: each one fails on a broken input", () => {
  // Codes are assembled here, so that this file uses none itself.
  const [code, other] = [["W", 999].join(""), ["B", 998].join("")];
  const used = new Map([[code, "tests/x.rs:1"]]);
  assert.equal(missingEntries(used, catalogueEntries(`### ${other} x\n`)).length, 1, "(a) a code without an entry");
  assert.equal(codesUsed(new Map([["src/x.rs", `// ${code}`], ["docs/x.md", other]])).size, 1, "(a) scan scope");

  const fake = new Map([
    ["tests/a.rs", "#[test]\nfn real_test() {}\n"],
    [
      "tests/deno/a_test.ts",
      'Deno.test("real title", () => {});\ne2eTest(\n  "other title",\n  async () => {});\nbucketTest("third", () => {});\n',
    ],
  ]);
  const entry = (text: string) => catalogueEntries(`### ${code} t\n\n- Status: **met**.\n${text}\n`);
  assert.deepEqual(brokenTestRefs(entry("`tests/a.rs::real_test` `tests/deno/a_test.ts::other\n  title`"), fake), []);
  assert.deepEqual(brokenTestRefs(entry("`tests/deno/a_test.ts::third`"), fake), [], "(b) a helper's title");
  assert.equal(brokenTestRefs(entry("`tests/a.rs::real_tes`"), fake).length, 1, "(b) a missing Rust test");
  assert.equal(brokenTestRefs(entry("`tests/deno/a_test.ts::no title`"), fake).length, 1, "(b) a missing Deno test");
  assert.equal(brokenTestRefs(entry("`tests/b.rs::real_test`"), fake).length, 1, "(b) a missing file");
  assert.equal(brokenTestRefs(entry(""), fake).length, 1, "(b) met without a test");

  const outside = FORBIDDEN.map((forbidden, at) => [`f${at}.ts`, `see ${forbidden}`] as [string, string]);
  assert.equal(outsideReferences(new Map(outside)).length, FORBIDDEN.length, "(c) a reference outside");

  const links = "[a](docs/cli.md) [b](docs/missing.md#x) [c](https://x.org) [d](#top)\n```\n[e](nowhere)\n```\n";
  assert.deepEqual(brokenLinks("README.md", links, existsInRepo), ["README.md: docs/missing.md#x"], "(e)");
});
