/**
 * `.ci/tools.txt` is the one list of outside tools the tests use. CI installs
 * the packages it names and nothing else, so a program a test runs that the
 * list leaves out passes on a developer's machine and fails on a fresh one.
 * These tests read the test sources and keep the list, `.ci/run` and the
 * README's apt-get line in step.
 */
import assert from "node:assert/strict";
import { readToolList, ROOT, TOOLS_FILE } from "./_harness.ts";

const SELF = new URL(import.meta.url).pathname;

/** Every `.ts` file under tests/ and src/ (unit tests live beside the code) but this one. */
function sources(): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory && entry.name !== "artifacts") walk(path);
      else if (entry.isFile && path.endsWith(".ts") && path !== SELF) {
        out.push({ path, text: Deno.readTextFileSync(path) });
      }
    }
  };
  walk(`${ROOT}/tests`);
  walk(`${ROOT}/src`);
  return out;
}

/** The string literals in a comma-separated argument list or array body. */
function literals(list: string): string[] {
  return [...list.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
}

/**
 * The outside programs a source file names: `requireTool("a", "b")`,
 * `tools: ["a", …]` (install_test), `…_TOOLS = ["a", …]`, the program of
 * `run("prog", …)`, `new Deno.Command("prog", …)` and `haveTool("prog", …)`,
 * and `python3:MODULE` for every `"-c", "import MODULE"` probe.
 */
function toolsNamed(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/requireTool\(([^)]*)\)/g)) found.push(...literals(m[1]));
  for (const m of text.matchAll(/\btools: \[([^\]]*)\]/g)) found.push(...literals(m[1]));
  for (const m of text.matchAll(/_TOOLS = \[([^\]]*)\]/g)) found.push(...literals(m[1]));
  for (const m of text.matchAll(/\b(?:run|Command|haveTool)\(\s*"([^"]+)"/g)) found.push(m[1]);
  // `python3 -c "import MODULE"` probes (src/ unit tests, tests/fakes helpers).
  for (const m of text.matchAll(/"-c",\s*"import ([\w]+)/g)) found.push(`python3:${m[1]}`);
  return found;
}

Deno.test("every outside tool a test names is listed in .ci/tools.txt", () => {
  const listed = new Set(readToolList().map((row) => row.tool));
  const unlisted: string[] = [];
  for (const { path, text } of sources()) {
    for (const tool of toolsNamed(text)) {
      if (!listed.has(tool)) unlisted.push(`${path.slice(ROOT.length + 1)}: "${tool}"`);
    }
  }
  assert.deepEqual(unlisted, [], `add these to ${TOOLS_FILE} with their Debian package`);
});

Deno.test("the scan of test sources finds the tools of each form it knows", () => {
  const text = [
    'ignore: requireTool("swaks", "perl:Net::SSLeay"),',
    '{ root: true, tools: ["bash", "unshare"] },',
    'export const POSTFIX_TOOLS = ["root:", "postfix"];',
    'await run("promtool", ["check"]);',
    'new Deno.Command("nmap", { args });',
    'await haveTool("openssl", ["version"]);',
    'await haveTool(PY, ["-c", "import aiosmtpd"], true);',
  ].join("\n");
  assert.deepEqual(
    toolsNamed(text).sort(),
    [
      "bash",
      "nmap",
      "openssl",
      "perl:Net::SSLeay",
      "postfix",
      "promtool",
      "python3:aiosmtpd",
      "root:",
      "swaks",
      "unshare",
    ],
  );
});

Deno.test(".ci/tools.txt gives every tool a package, and .ci/run installs from it", () => {
  const rows = readToolList();
  for (const row of rows) {
    assert.ok(row.package, `${TOOLS_FILE}: "${row.tool}" names no Debian package`);
    if (row.package === "-") assert.equal(row.tool, "root:", `only root: may have no package`);
  }
  const run = Deno.readTextFileSync(`${ROOT}/.ci/run`);
  assert.match(run, /\.ci\/tools\.txt/, ".ci/run must read its package list from .ci/tools.txt");
});

Deno.test("the README's apt-get line names exactly the packages of .ci/tools.txt", () => {
  const wanted = [...new Set(readToolList().map((r) => r.package).filter((p) => p !== "-"))].sort();
  const readme = Deno.readTextFileSync(`${ROOT}/README.md`);
  const line = readme.split("\n").find((l) => l.includes("apt-get install"));
  assert.ok(line, "README.md has no apt-get install line");
  const named = line.replace(/.*apt-get install/, "").replace(/`.*/, "").trim().split(/\s+/)
    .filter((w) => !w.startsWith("-")).sort();
  assert.deepEqual(named, wanted);
});
