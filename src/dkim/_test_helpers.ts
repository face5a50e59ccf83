// Shared by the tests of this folder: the independent verifier (python3-dkim through
// tests/fakes/dkim_verify.py) and key fixtures made once per test file.
import { fileURLToPath } from "node:url";
import { type DkimKey, loadDkimKeys } from "./dkim_key.ts";
import { generateDkimKey } from "./generate_dkim_key.ts";

const PYTHON = "/usr/bin/python3";
const VERIFY_SCRIPT = fileURLToPath(new URL("../../tests/fakes/dkim_verify.py", import.meta.url));
const REQUIRE_INTEROP = Deno.env.get("MINIMTA_REQUIRE_INTEROP") === "1";

/** One line of dkim_verify.py's output. */
export interface VerifyResult {
  d: string;
  s: string;
  a: string;
  h: string[];
  ok: boolean;
  error: string | null;
}

function pythonDkimMissing(): string | null {
  try {
    const out = new Deno.Command(PYTHON, { args: [VERIFY_SCRIPT, "--check"], stderr: "piped" })
      .outputSync();
    return out.success ? null : new TextDecoder().decode(out.stderr).trim();
  } catch (err) {
    return `${PYTHON} cannot run: ${err instanceof Error ? err.message : err}`;
  }
}

const missing = pythonDkimMissing();
if (missing !== null && !REQUIRE_INTEROP) {
  const note = `\nSKIPPING DKIM interop tests: ${missing}\n\n`;
  Deno.stderr.writeSync(new TextEncoder().encode(note));
}

/**
 * A test that needs python3-dkim: ignored with a loud reason when it is missing,
 * failed instead when MINIMTA_REQUIRE_INTEROP=1.
 */
export function interopTest(name: string, fn: () => Promise<void>): void {
  if (missing !== null && REQUIRE_INTEROP) {
    Deno.test(name, () => {
      throw new Error(`python3-dkim is required (MINIMTA_REQUIRE_INTEROP=1): ${missing}`);
    });
    return;
  }
  const suffix = missing === null ? "" : " [SKIPPED: python3-dkim missing]";
  Deno.test({ name: name + suffix, ignore: missing !== null, fn });
}

/** Verifies every DKIM-Signature of `message` with python3-dkim against `txt` records. */
export async function verifyDkim(
  message: Uint8Array,
  txt: Record<string, string>,
): Promise<{ ok: boolean; results: VerifyResult[] }> {
  const args = [VERIFY_SCRIPT, "-"];
  for (const [name, value] of Object.entries(txt)) args.push("--txt", `${name}=${value}`);
  const child = new Deno.Command(PYTHON, { args, stdin: "piped", stdout: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(message);
  await writer.close();
  const out = await child.output();
  const lines = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim());
  return { ok: out.code === 0, results: lines.map((line) => JSON.parse(line) as VerifyResult) };
}

/** A key of a fixture, with the TXT record that publishes it. */
export interface FixtureKey {
  key: DkimKey;
  file: string;
  txt: Record<string, string>;
}

/** Generates a key pair, stores it in `dir` and loads it as the config would. */
export async function fixtureKey(
  dir: string,
  algorithm: "rsa" | "ed25519",
  domain: string,
  selector: string,
): Promise<FixtureKey> {
  const generated = await generateDkimKey(algorithm);
  const file = `${dir}/${domain}.${selector}.key`;
  await Deno.writeTextFile(file, generated.privateKeyPem);
  const [key] = await loadDkimKeys([{ domain, selector, privateKeyFile: file }]);
  return { key, file, txt: { [`${selector}._domainkey.${domain}`]: generated.dnsTxt } };
}

/** The message as CRLF bytes. */
export function crlf(text: string): Uint8Array {
  return new TextEncoder().encode(text.replace(/\r?\n/g, "\r\n"));
}

/** `headers` put in front of `message`, as the intake stores it. */
export function prepend(headers: Uint8Array, message: Uint8Array): Uint8Array {
  const out = new Uint8Array(headers.length + message.length);
  out.set(headers);
  out.set(message, headers.length);
  return out;
}
