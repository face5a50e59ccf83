/**
 * The release workflow (`.github/workflows/release.yml`) cannot run here
 * (it needs Deno's servers to compile), so these tests read it as GitHub
 * would: it compiles both targets, smoke-tests each binary on its own
 * architecture with `.ci/smoke_binary.sh`, and publishes the binaries with
 * their SHA-256 sums; the README's download commands fetch exactly the files
 * it publishes. The smoke script itself runs here, against the source with
 * the start task's permissions, so a broken script fails before a release.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { freePorts, requireTool, ROOT, run, startTask } from "./_harness.ts";

const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];
const BINARIES = TARGETS.map((t) => `minimta-${t}`);
const SMOKE = ".ci/smoke_binary.sh";

interface Step {
  name?: string;
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
}
interface Job {
  "runs-on": string;
  needs?: string | string[];
  permissions?: Record<string, string>;
  strategy?: { matrix: { include: Record<string, string>[] } };
  steps: Step[];
}
interface Workflow {
  on: { push: { tags: string[] } };
  jobs: Record<string, Job>;
}

function workflow(): Workflow {
  return parse(Deno.readTextFileSync(`${ROOT}/.github/workflows/release.yml`)) as Workflow;
}

/** The jobs' `run` scripts, one entry per job (matrix rows expanded) with its runner. */
function runs(wf: Workflow): { job: string; runner: string; script: string; needs: string[] }[] {
  const out = [];
  for (const [name, job] of Object.entries(wf.jobs)) {
    const rows = job.strategy?.matrix.include ?? [{}];
    for (const row of rows) {
      const expand = (text: string) =>
        text.replace(/\$\{\{\s*matrix\.(\w+)\s*\}\}/g, (_, key) => row[key] ?? `<no ${key}>`);
      const script = job.steps.map((s) => s.run ?? "").join("\n");
      out.push({
        job: name,
        runner: expand(job["runs-on"]),
        script: expand(script),
        needs: [job.needs ?? []].flat(),
      });
    }
  }
  return out;
}

Deno.test("release.yml: on a version tag, Deno 2.9.6 compiles both targets", () => {
  const wf = workflow();
  assert.deepEqual(wf.on.push.tags, ["v*"]);
  const setup = Object.values(wf.jobs).flatMap((j) => j.steps)
    .filter((s) => s.uses?.startsWith("denoland/setup-deno@"));
  assert.ok(setup.length > 0 && setup.every((s) => s.with?.["deno-version"] === "2.9.6"));
  const compile = runs(wf).filter((r) => /^\s*deno task compile\s*$/m.test(r.script));
  assert.equal(compile.length, 1, "one job runs `deno task compile`");
  // The task is .ci/compile.sh, which builds every target into dist/minimta-<target>.
  const task = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)).tasks.compile;
  assert.equal(task, "bash .ci/compile.sh");
  const script = Deno.readTextFileSync(`${ROOT}/.ci/compile.sh`);
  assert.match(script, new RegExp(`for target in ${TARGETS.join(" ")}; do`));
  assert.match(script, /out="dist\/minimta-\$\{target\}"/);
});

Deno.test("release.yml: each binary is smoke-tested on its own architecture before publishing", () => {
  const wf = workflow();
  const smoked = new Map<string, string>();
  for (const r of runs(wf)) {
    for (const m of r.script.matchAll(/bash \.ci\/smoke_binary\.sh dist\/(\S+)/g)) {
      smoked.set(m[1], r.runner);
    }
  }
  assert.deepEqual([...smoked.keys()].sort(), [...BINARIES].sort());
  assert.equal(smoked.get("minimta-x86_64-unknown-linux-gnu"), "ubuntu-24.04");
  assert.equal(smoked.get("minimta-aarch64-unknown-linux-gnu"), "ubuntu-24.04-arm");
  const smokeJob = runs(wf).find((r) => r.script.includes(SMOKE))!.job;
  const publish = runs(wf).find((r) => r.script.includes("gh release"))!;
  assert.ok(publish.needs.includes(smokeJob), "publishing waits for the smoke tests");
  // What the smoke script checks: version, config check on the embedded default, a message.
  const smoke = Deno.readTextFileSync(`${ROOT}/${SMOKE}`);
  assert.match(smoke, /"\$bin" version/);
  assert.match(smoke, /env -u MINIMTA_CONFIG "\$bin" config check/);
  assert.match(smoke, /"\$bin" serve --config/);
  assert.match(smoke, /^swaks /m);
  assert.match(smoke, /^smtp-sink /m);
});

Deno.test("release.yml: publishes both binaries and a SHA256SUMS of them", () => {
  const wf = workflow();
  const publish = runs(wf).find((r) => r.script.includes("gh release"))!;
  assert.equal(wf.jobs[publish.job].permissions?.contents, "write");
  const sums = /sha256sum ([^>\n]+)> SHA256SUMS/.exec(publish.script);
  assert.ok(sums, "SHA256SUMS is written by sha256sum");
  assert.deepEqual(sums[1].trim().split(/\s+/).sort(), [...BINARIES].sort());
  assert.deepEqual(publishedFiles().sort(), [...BINARIES, "SHA256SUMS"].sort());
});

/** The files `gh release create` uploads (its `dist/…` arguments). */
function publishedFiles(): string[] {
  const publish = runs(workflow()).find((r) => r.script.includes("gh release"))!;
  const command = publish.script.slice(publish.script.indexOf("gh release create"))
    .replace(/\\\n/g, " ");
  return [...command.split("\n")[0].matchAll(/\bdist\/(\S+)/g)].map((m) => m[1]);
}

Deno.test("README: the release download commands fetch the published files and verify them", () => {
  const readme = Deno.readTextFileSync(`${ROOT}/README.md`);
  const section = readme.slice(readme.indexOf("### From a release"));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1];
  // target=<one> … # or <other>: every target the README offers.
  const offered = /target=(\S+)\s+# or (\S+)/.exec(block)!.slice(1);
  assert.deepEqual([...offered].sort(), [...TARGETS].sort());
  const downloads = new Set<string>();
  for (const target of offered) {
    for (const m of block.matchAll(/"\$base\/([^"]+)"/g)) {
      downloads.add(m[1].replace("$target", target));
    }
  }
  assert.deepEqual([...downloads].sort(), publishedFiles().sort());
  assert.match(block, /base=https:\/\/github\.com\/[^/]+\/minimta\/releases\/download\/\$version/);
  assert.match(
    block,
    /sha256sum -c --ignore-missing SHA256SUMS &&\s+# [^\n]*\n\s*sudo \S*install\.sh --binary "\.\/minimta-\$target"/,
  );
});

Deno.test({
  name:
    "smoke_binary.sh passes for a working minimta: version, config check, a message to smtp-sink",
  ignore: requireTool("bash", "swaks", "perl:IO::Socket::SSL", "smtp-sink"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "minimta-smoke-" });
    try {
      // The source with the start task's permissions stands in for the compiled binary.
      const launcher = `${dir}/minimta`;
      const flags = startTask().runFlags.join(" ");
      await Deno.writeTextFile(
        launcher,
        `#!/bin/sh\nexec "${Deno.execPath()}" ${flags} "${ROOT}/main.ts" "$@"\n`,
        { mode: 0o755 },
      );
      const [submit, sink] = freePorts(2);
      const r = await run("bash", [`${ROOT}/${SMOKE}`, launcher], {
        env: { SMOKE_SUBMIT_PORT: String(submit), SMOKE_SINK_PORT: String(sink) },
      });
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /^minimta \d+\.\d+\.\d+/m);
      assert.match(r.stdout, /^# \(embedded default\): OK$/m);
      assert.match(r.stdout, /delivered: smtp-sink has the message/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
