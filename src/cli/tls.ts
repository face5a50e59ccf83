import { createPrivateKey, X509Certificate } from "node:crypto";
import { parseArgs } from "node:util";
import { ConfigError, type LoadedConfig, reason } from "../config/mod.ts";
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

/** The listeners' certificate chain and key as PEM text, checked to be a pair. */
export interface TlsPair {
  cert: string;
  key: string;
}

/**
 * Reads `tls.cert_file` and `tls.key_file` and checks that they parse and
 * belong together. A bad pair would otherwise be found only by each client's
 * STARTTLS failing; here it is one {@linkcode ConfigError} naming the key.
 */
export async function loadTlsPair(loaded: LoadedConfig): Promise<TlsPair> {
  const { config, source } = loaded;
  const { cert_file: certFile, key_file: keyFile } = config.tls;
  const read = async (key: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      throw new ConfigError(source, key, `cannot read "${path}": ${reason(error)}`, {
        cause: error,
      });
    }
  };
  const cert = await read("tls.cert_file", certFile);
  const key = await read("tls.key_file", keyFile);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (error) {
    throw new ConfigError(source, "tls.cert_file", `"${certFile}" is not a PEM certificate`, {
      cause: error,
    });
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new ConfigError(
      source,
      "tls.key_file",
      `"${keyFile}" is not a PEM private key (without a passphrase)`,
      { cause: error },
    );
  }
  // The first certificate in the file is the one presented: it must be the key's.
  if (!x509.checkPrivateKey(privateKey)) {
    throw new ConfigError(
      source,
      "tls.key_file",
      `"${keyFile}" does not match tls.cert_file "${certFile}"`,
    );
  }
  return { cert, key };
}
