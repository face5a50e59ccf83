import { parseArgs } from "node:util";
import { UsageError } from "./errors.ts";
import { writeSelfSignedCertificate } from "./first_start.ts";

/** `minimta tls selfsigned`: a certificate for the listeners until a real one is installed (used by install.sh). */
export async function tlsCommand(args: string[], out: (text: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { cert: { type: "string" }, key: { type: "string" }, hostname: { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals[0] !== "selfsigned" || positionals.length !== 1 || !values.cert || !values.key) {
    throw new UsageError("Usage: minimta tls selfsigned --cert FILE --key FILE [--hostname NAME]");
  }
  const hostname = values.hostname ?? Deno.hostname();
  await writeSelfSignedCertificate(values.cert, values.key, hostname);
  out(
    `Wrote a self-signed certificate for ${hostname} to ${values.cert} (key ${values.key}, mode 0600)`,
  );
  return 0;
}
