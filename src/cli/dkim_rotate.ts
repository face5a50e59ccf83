import { createPrivateKey } from "node:crypto";
import { type Document, isMap, isSeq, parseDocument, type YAMLMap } from "yaml";
import { replaceFile } from "../auth/mod.ts";
import { type Config, formatDuration, type LoadedConfig } from "../config/mod.ts";
import {
  generateDkimKey,
  readRotationState,
  RETIRED_KEEP_MS,
  rotatingKeyConfig,
  ROTATION_STATE_FILE,
  type RotationState,
  type RotationView,
  rotationView,
  zoneStrings,
} from "../dkim/mod.ts";
import { normaliseDomain } from "../dns/mod.ts";
import { controlRequest } from "./control.ts";
import { CliError, UsageError } from "./errors.ts";

type Out = (text: string) => void;

/** What `dkim rotate` and `dkim list` are asked. */
export interface RotateFlags {
  /** The domain, normalised; null for every domain (`list` only). */
  domain: string | null;
  /** The current selector, to choose among several entries of the domain. */
  selector?: string;
  /** Switch now instead of waiting for the record in DNS. */
  activate?: boolean;
  json?: boolean;
}

/** One entry as `dkim list` shows it. */
interface Listed {
  index: number;
  domain: string;
  view: RotationView;
}

async function listed(config: Config, domain: string | null): Promise<Listed[]> {
  const state = await rotationState(config);
  return config.dkim.map((d, index) => ({
    index,
    domain: normaliseDomain(d.domain),
    view: rotationView(rotatingKeyConfig(d), state),
  })).filter((e) => domain === null || e.domain === domain);
}

async function rotationState(config: Config): Promise<RotationState> {
  try {
    return await readRotationState(`${config.queue.dir}/${ROTATION_STATE_FILE}`);
  } catch (error) {
    throw new CliError((error as Error).message, { cause: error });
  }
}

/** The names DNS must still answer for an entry: signing, pending, and retired until their time. */
function mustKeep(e: Listed, now: Date): string[] {
  const selectors = [
    e.view.signing.selector,
    ...(e.view.pending ? [e.view.pending.selector] : []),
    ...e.view.retired.filter((r) => r.until > now).map((r) => r.selector),
  ];
  return selectors.map((s) => `${s}._domainkey.${e.domain}`);
}

/** `minimta dkim list`: signing, pending and retired selectors, and what DNS must keep. */
export async function dkimList(config: Config, flags: RotateFlags, out: Out): Promise<number> {
  const now = new Date();
  const entries = await listed(config, flags.domain);
  if (flags.json) {
    out(JSON.stringify(
      entries.map((e) => ({
        domain: e.domain,
        signing: {
          selector: e.view.signing.selector,
          private_key_file: e.view.signing.privateKeyFile,
        },
        pending: e.view.pending &&
          { selector: e.view.pending.selector, private_key_file: e.view.pending.privateKeyFile },
        retired: e.view.retired.map((r) => ({
          selector: r.selector,
          until: r.until.toISOString(),
          needed: r.until > now,
        })),
        dns_must_keep: mustKeep(e, now),
      })),
      null,
      2,
    ));
    return 0;
  }
  if (!entries.length) {
    out(flags.domain ? `No DKIM key configured for ${flags.domain}` : "No DKIM keys");
  }
  for (const e of entries) {
    out(`${e.domain}`);
    out(`  signing  ${e.view.signing.selector}  ${e.view.signing.privateKeyFile}`);
    if (e.view.pending) {
      out(
        `  pending  ${e.view.pending.selector}  waiting for ${e.view.pending.selector}._domainkey.${e.domain} in DNS (checked every ${
          formatDuration(config.dkim_rotation_check)
        })`,
      );
    }
    for (const r of e.view.retired) {
      out(
        `  retired  ${r.selector}  ${
          r.until > now
            ? `keep its record published until ${r.until.toISOString()}`
            : `its record may be removed (since ${r.until.toISOString()})`
        }`,
      );
    }
    out(`  DNS must keep: ${mustKeep(e, now).join(", ")}`);
  }
  return 0;
}

/**
 * `minimta dkim rotate --domain D [--activate]`: a new key under a new
 * selector, pending until the daemon sees its record in DNS (or switched
 * at once with `--activate`, which also finishes a pending rotation). The
 * config file is edited in place, comments kept; the daemon reloads.
 */
export async function dkimRotate(
  loaded: LoadedConfig,
  flags: RotateFlags,
  out: Out,
): Promise<number> {
  const { config } = loaded;
  if (loaded.embedded) throw new CliError("dkim rotate needs a config file (--config FILE)");
  const domain = flags.domain!;
  const entry = await pick(config, domain, flags.selector);
  const now = new Date();
  const doc = parseDocument(await Deno.readTextFile(loaded.source));
  const node = doc.getIn(["dkim", entry.index], true);
  if (!isMap(node)) throw new CliError(`Cannot edit dkim[${entry.index}] in "${loaded.source}"`);
  const old = entry.view.signing.selector;
  let switched: string;
  if (entry.view.pending) {
    if (!flags.activate) {
      throw new CliError(
        `A rotation of ${domain} to selector ${entry.view.pending.selector} is pending: publish its record, or finish it with --activate`,
      );
    }
    switched = entry.view.pending.selector;
    promote(doc, node, now);
    out(`Signing ${domain} with selector ${switched} now (--activate).`);
  } else {
    // A rotation the daemon already finished goes into the config first.
    if (entry.view.activatedAt) promote(doc, node, entry.view.activatedAt);
    const made = await newKey(config, entry, node);
    out(`Wrote the private key to ${made.file} (mode ${made.mode.toString(8).padStart(4, "0")}).`);
    out("");
    out("Publish this TXT record:");
    const name = `${made.selector}._domainkey.${domain}.`;
    out(`${name} IN TXT ( ${zoneStrings(made.dnsTxt).map((s) => `"${s}"`).join("\n    ")} )`);
    out("");
    node.set("next_selector", made.selector);
    node.set("next_private_key_file", made.configPath);
    switched = made.selector;
    if (flags.activate) {
      promote(doc, node, now);
      out(`Signing ${domain} with selector ${switched} now (--activate).`);
    } else {
      out(
        `minimta keeps signing with ${old} until ${name} is visible in DNS (checked every ${
          formatDuration(config.dkim_rotation_check)
        }), then switches; --activate switches now.`,
      );
    }
  }
  if (flags.activate) {
    const until = new Date(now.getTime() + RETIRED_KEEP_MS).toISOString();
    out(
      `Keep ${old}._domainkey.${domain} published until ${until}: mail signed with it is still on its way.`,
    );
  } else {
    out(
      `Keep ${old}._domainkey.${domain} published: it signs until the switch, and for a week after.`,
    );
  }
  // Keeps the file's mode, owner and group.
  await replaceFile(loaded.source, doc.toString());
  const reloaded = await controlRequest(config.queue.dir, { command: "reload" }).catch(() => null);
  out(
    `Updated ${loaded.source}${
      reloaded?.ok
        ? "; the running daemon reloaded"
        : "; the daemon takes it when it starts or reloads"
    }.`,
  );
  return 0;
}

async function pick(config: Config, domain: string, selector?: string): Promise<Listed> {
  const entries = (await listed(config, domain)).filter((e) =>
    selector === undefined || e.view.signing.selector === selector ||
    e.view.pending?.selector === selector
  );
  if (entries.length === 1) return entries[0];
  if (!entries.length) {
    throw new CliError(
      `No DKIM key configured for ${domain}${
        selector ? ` with selector ${selector}` : ""
      } (dkim in the config)`,
    );
  }
  throw new UsageError(`${domain} has ${entries.length} DKIM keys: name one with --selector`);
}

/**
 * The pending key becomes the signing one; the old selector is retired for a
 * week from `at`.
 */
function promote(doc: Document, node: YAMLMap, at: Date): void {
  const oldSelector = String(node.get("selector"));
  node.set("selector", node.get("next_selector"));
  node.set("private_key_file", node.get("next_private_key_file"));
  node.delete("next_selector");
  node.delete("next_private_key_file");
  const retired = {
    selector: oldSelector,
    until: new Date(at.getTime() + RETIRED_KEEP_MS).toISOString(),
  };
  const seq = node.get("retired", true);
  if (isSeq(seq)) seq.items.unshift(doc.createNode(retired));
  else node.set("retired", [retired]);
}

/** A new key beside the current one: same algorithm (RSA at least 2048 bits), mode and owner. */
async function newKey(config: Config, entry: Listed, node: YAMLMap) {
  const current = entry.view.signing.privateKeyFile;
  const pem = await Deno.readTextFile(current).catch((error) => {
    throw new CliError(`Cannot read DKIM key "${current}": ${(error as Error).message}`);
  });
  const key = createPrivateKey(pem);
  const algorithm = key.asymmetricKeyType === "ed25519" ? "ed25519" : "rsa";
  const bits = Math.max(2048, key.asymmetricKeyDetails?.modulusLength ?? 0);
  const info = await Deno.stat(current);
  const dir = current.slice(0, current.lastIndexOf("/") + 1);
  const raw = String(node.get("private_key_file"));
  const rawDir = raw.slice(0, raw.lastIndexOf("/") + 1);
  const taken = new Set(
    config.dkim.filter((d) => normaliseDomain(d.domain) === entry.domain).flatMap((d) => [
      d.selector,
      d.next_selector,
      ...d.retired.map((r) => r.selector),
    ]),
  );
  const made = await generateDkimKey(algorithm, { bits });
  const mode = (info.mode ?? 0o600) & 0o640;
  const date = new Date().toISOString().slice(0, 10).replaceAll("-", "");
  for (let n = 1;; n++) {
    const selector = n === 1 ? `s${date}` : `s${date}-${n}`;
    if (taken.has(selector)) continue;
    const name = `${entry.domain}.${selector}.key`;
    try {
      await Deno.writeTextFile(`${dir}${name}`, made.privateKeyPem, { createNew: true, mode });
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) continue;
      throw error;
    }
    // Readable by whoever reads the current key (root may run this for the minimta user).
    await Deno.chmod(`${dir}${name}`, mode);
    if (info.uid !== null && info.gid !== null) {
      await Deno.chown(`${dir}${name}`, info.uid, info.gid).catch(() => {});
    }
    return {
      selector,
      file: `${dir}${name}`,
      configPath: `${rawDir}${name}`,
      mode,
      dnsTxt: made.dnsTxt,
    };
  }
}
