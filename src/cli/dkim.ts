import { parseArgs } from "node:util";
import type { Config, LoadedConfig } from "../config/mod.ts";
import {
  generateDkimKey,
  loadDkimKeys,
  parseKeyRecord,
  publicKeyRecordData,
  zoneStrings,
} from "../dkim/mod.ts";
import { normaliseDomain, Resolver } from "../dns/mod.ts";
import { dkimList, dkimRotate } from "./dkim_rotate.ts";
import { CliError, UsageError } from "./errors.ts";

type Out = (text: string) => void;

/** `minimta dkim keygen|check|rotate|list`. */
export async function dkimCommand(
  args: string[],
  loaded: LoadedConfig,
  out: Out,
): Promise<number> {
  const config = loaded.config;
  const { values, positionals } = parseArgs({
    args,
    options: {
      domain: { type: "string" },
      selector: { type: "string" },
      algorithm: { type: "string" },
      out: { type: "string" },
      bits: { type: "string" },
      activate: { type: "boolean" },
      json: { type: "boolean" },
    },
    allowPositionals: true,
    strict: true,
  });
  const domain = values.domain === undefined ? null : domainArg(values.domain);
  if (positionals[0] === "list" && positionals.length === 1) {
    return await dkimList(config, { domain, json: values.json }, out);
  }
  if (!domain) throw new UsageError("--domain is required");
  if (positionals[0] === "rotate" && positionals.length === 1) {
    const flags = { domain, selector: values.selector, activate: values.activate };
    return await dkimRotate(loaded, flags, out);
  }
  if (positionals[0] === "keygen" && positionals.length === 1) {
    const { selector, algorithm, bits } = values;
    return await keygen(domain, { selector, algorithm, bits, out: values.out }, config, out);
  }
  if (positionals[0] === "check" && positionals.length === 1) {
    return await check(domain, config, out);
  }
  throw new UsageError(
    "Usage: minimta dkim keygen --domain D --selector S [--algorithm rsa|ed25519] [--out FILE] | dkim check --domain D | dkim rotate --domain D [--activate] | dkim list [--domain D] [--json]",
  );
}

function domainArg(value: string): string {
  try {
    return normaliseDomain(value);
  } catch {
    throw new UsageError(`"${value}" is not a domain name`);
  }
}

async function keygen(
  domain: string,
  values: Record<string, string | undefined>,
  config: Config,
  out: Out,
): Promise<number> {
  const selector = values.selector;
  if (!selector || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(selector)) {
    throw new UsageError("--selector must be a DNS label like s2026");
  }
  const algorithm = values.algorithm ?? "rsa";
  if (algorithm !== "rsa" && algorithm !== "ed25519") {
    throw new UsageError(`--algorithm must be rsa or ed25519, not "${algorithm}"`);
  }
  const bits = values.bits ? Number(values.bits) : 2048;
  if (!Number.isInteger(bits)) {
    throw new UsageError(`--bits must be a number, not "${values.bits}"`);
  }
  const dir = config.auth.users_file.slice(0, config.auth.users_file.lastIndexOf("/") + 1) || "./";
  const file = values.out ?? `${dir}dkim/${domain}.${selector}.key`;
  const key = await generateDkimKey(algorithm, { bits });
  await Deno.mkdir(file.slice(0, file.lastIndexOf("/") + 1) || ".", {
    recursive: true,
    mode: 0o700,
  });
  try {
    await Deno.writeTextFile(file, key.privateKeyPem, { createNew: true, mode: 0o600 });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new CliError(`"${file}" already exists; not overwriting a key`);
    }
    throw error;
  }
  const name = `${selector}._domainkey.${domain}.`;
  out(`Wrote the private key to ${file} (mode 0600).`);
  out("");
  out("Publish this TXT record:");
  out(`${name} IN TXT ( ${zoneStrings(key.dnsTxt).map((s) => `"${s}"`).join("\n    ")} )`);
  out("");
  out("Add to the config file, then reload (systemctl reload minimta):");
  out(`dkim:\n  - domain: ${domain}\n    selector: ${selector}\n    private_key_file: ${file}`);
  return 0;
}

async function check(domain: string, config: Config, out: Out): Promise<number> {
  const entries = config.dkim.filter((d) => normaliseDomain(d.domain) === domain);
  if (!entries.length) {
    throw new CliError(`No DKIM key configured for ${domain} (dkim in the config)`);
  }
  const keys = await loadDkimKeys(
    entries.map((d) => ({
      domain: d.domain,
      selector: d.selector,
      privateKeyFile: d.private_key_file,
    })),
  );
  const resolver = new Resolver({ servers: config.delivery.dns_servers });
  let bad = 0;
  for (const key of keys) {
    const name = `${key.selector}._domainkey.${domain}`;
    const expected = publicKeyRecordData(key.privateKey);
    const records = (await resolver.resolveTxt(name)).map(parseKeyRecord).filter((t) => "p" in t);
    const verdict = records.length === 0
      ? "no DKIM record published"
      : records.some((t) => t.p === expected.p && (t.k ?? "rsa") === expected.algorithm)
      ? "OK: the published key matches"
      : "MISMATCH: the published key is not this private key's";
    if (!verdict.startsWith("OK")) bad++;
    out(`${name} (${key.algorithm}): ${verdict}`);
  }
  if (bad) {
    // Exit 1 with the one-line error every failing command gives.
    throw new CliError(`${bad} of ${keys.length} DKIM key(s) of ${domain} not published correctly`);
  }
  return 0;
}
