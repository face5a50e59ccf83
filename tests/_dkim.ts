/** The independent DKIM verifier (tests/fakes/dkim_verify.py, python3-dkim). */
import { FAKES, type Mta, PYTHON, run } from "./_harness.ts";

/** Runs tests/fakes/dkim_verify.py on `bytes` with the TXT records of `mta`'s keys. */
export async function dkimVerify(
  mta: Mta,
  bytes: Uint8Array,
): Promise<{ code: number; results: Record<string, unknown>[]; stderr: string }> {
  const txt = mta.dkim.flatMap((
    d,
  ) => ["--txt", `${d.selector}._domainkey.${d.domain}=${d.dnsTxt}`]);
  const r = await run(PYTHON, [`${FAKES}/dkim_verify.py`, "-", ...txt], { stdin: bytes });
  const results = r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  return { code: r.code, results, stderr: r.stderr };
}
