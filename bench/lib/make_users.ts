// deno-lint-ignore-file no-console
/**
 * Writes a minimta users.json with one user for the benchmark.
 *   deno run -A bench/lib/make_users.ts OUT.json USER PASSWORD EMAIL [scrypt|plain]
 * "scrypt" (the default) stores the hash `minimta` itself writes, as in
 * production; "plain" stores the plaintext (accepted with a warning).
 */
import { hashPassword } from "../../src/auth/mod.ts";

const [out, username, password, email, kind = "scrypt"] = Deno.args;
if (!out || !username || !password || !email) {
  console.error("usage: make_users.ts OUT.json USER PASSWORD EMAIL [scrypt|plain]");
  Deno.exit(2);
}
const stored = kind === "plain" ? password : await hashPassword(password);
await Deno.writeTextFile(
  out,
  JSON.stringify([{ username, password: stored, email, active: true }], null, 2) + "\n",
);
