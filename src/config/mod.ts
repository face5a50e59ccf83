/**
 * @module
 * minimta's configuration: a YAML file read as unknown, checked key by key
 * (unknown keys and wrong types are errors naming the file and the key path),
 * merged over {@linkcode DEFAULTS} and frozen. When no file is given or found
 * the embedded default is used, which needs no files and no root.
 */
import { parse as parseYaml } from "yaml";
import { ConfigKeyError, validate } from "./_schema.ts";
import { DEFAULTS, embeddedDefault } from "./defaults.ts";
import type { Config, LoadedConfig } from "./types.ts";

export type { Config, LoadedConfig } from "./types.ts";
export { BUILTIN_PROVIDERS, BUILTIN_THROTTLE_RULES, DEFAULTS } from "./defaults.ts";
export { formatDuration, parseDuration } from "./duration.ts";
export { splitHostPort } from "./_schema.ts";

/** The file read when neither `--config` nor `$MINIMTA_CONFIG` is given. */
export const SYSTEM_CONFIG = "/etc/minimta/config.yaml";
/** The name shown as the source of the embedded default. */
export const EMBEDDED = "(embedded default)";

/** A configuration that cannot be used; the message is one line naming file and key. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly key: string | null,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`Config "${file}": ${key ? `${key}: ` : ""}${detail}`, options);
    this.name = "ConfigError";
  }
}

/** Options for {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /** `--config` from the command line. */
  path?: string;
  /** Environment lookup. @default Deno.env.get */
  env?: (name: string) => string | undefined;
  /** Whether to check that files named by the config exist. @default true */
  checkFiles?: boolean;
}

/**
 * Finds and loads the configuration: `--config`, then `$MINIMTA_CONFIG`,
 * then `/etc/minimta/config.yaml` when present, then the embedded default.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const path = options.path ?? env("MINIMTA_CONFIG") ??
    (await exists(SYSTEM_CONFIG) ? SYSTEM_CONFIG : null);
  if (path === null) {
    const dataDir = env("MINIMTA_DATA_DIR") ?? "./minimta-data";
    const config = build(embeddedDefault(dataDir), EMBEDDED, null);
    return { config, source: EMBEDDED, embedded: true };
  }
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(path, null, `cannot read file: ${reason(error)}`, { cause: error });
  }
  const config = parseConfigText(text, path);
  if (options.checkFiles ?? true) await checkFiles(config, path);
  return { config, source: path, embedded: false };
}

/** Parses and validates YAML text as the file `file` (used in messages). */
export function parseConfigText(text: string, file: string): Readonly<Config> {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message.split("\n")[0] : String(error);
    throw new ConfigError(file, null, `not valid YAML: ${detail}`, { cause: error });
  }
  return build(raw, file, dirname(file));
}

function build(raw: unknown, file: string, baseDir: string | null): Readonly<Config> {
  let checked: Record<string, unknown>;
  try {
    checked = validate(raw);
  } catch (error) {
    if (error instanceof ConfigKeyError) throw new ConfigError(file, error.key, error.message);
    throw error;
  }
  const config = merge(DEFAULTS, checked) as Config;
  if ((checked.server as Record<string, unknown> | undefined)?.hostname === undefined) {
    config.server.hostname = systemHostname();
  }
  if (config.server.listen_addr === "" && config.server.listen_tls_addr === "") {
    throw new ConfigError(file, "server.listen_addr", "at least one listener must be set");
  }
  if (baseDir !== null) resolvePaths(config, baseDir);
  return deepFreeze(config);
}

function merge(base: unknown, over: unknown): unknown {
  if (over === undefined) return structuredClone(base);
  if (isMapping(base) && isMapping(over)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(base)) out[key] = merge(base[key], over[key]);
    return out;
  }
  return structuredClone(over);
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// Relative paths in a config file are relative to that file, not to the
// directory the daemon happens to start in.
function resolvePaths(config: Config, baseDir: string): void {
  const abs = (p: string) => (p === "" || p.startsWith("/") ? p : `${baseDir}/${p}`);
  config.tls.cert_file = abs(config.tls.cert_file);
  config.tls.key_file = abs(config.tls.key_file);
  config.auth.users_file = abs(config.auth.users_file);
  config.queue.dir = abs(config.queue.dir);
  config.delivery.tls_ca_file = abs(config.delivery.tls_ca_file);
  config.log.file = abs(config.log.file);
  for (const entry of config.dkim) {
    entry.private_key_file = abs(entry.private_key_file);
    entry.next_private_key_file = abs(entry.next_private_key_file);
  }
  for (const hook of config.webhooks) hook.signing_key_file = abs(hook.signing_key_file);
}

async function checkFiles(config: Config, file: string): Promise<void> {
  const files: [string, string][] = [
    ["tls.cert_file", config.tls.cert_file],
    ["tls.key_file", config.tls.key_file],
    ["auth.users_file", config.auth.users_file],
    ...(config.delivery.tls_ca_file
      ? [["delivery.tls_ca_file", config.delivery.tls_ca_file] as [string, string]]
      : []),
    ...config.dkim.map((
      d,
      i,
    ): [string, string] => [`dkim[${i}].private_key_file`, d.private_key_file]),
    ...config.dkim.flatMap((d, i): [string, string][] =>
      d.next_private_key_file ? [[`dkim[${i}].next_private_key_file`, d.next_private_key_file]] : []
    ),
    ...config.webhooks.flatMap((w, i): [string, string][] =>
      w.signing_key_file ? [[`webhooks[${i}].signing_key_file`, w.signing_key_file]] : []
    ),
  ];
  for (const [key, path] of files) {
    try {
      const info = await Deno.stat(path);
      if (!info.isFile) throw new Error("not a regular file");
    } catch (error) {
      throw new ConfigError(file, key, `cannot read "${path}": ${reason(error)}`, { cause: error });
    }
  }
}

/** A short reason for a file error: "not found", "permission denied", … */
export function reason(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "not found";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Error) return error.message.split(/[\n:]/)[0].trim();
  return String(error);
}

function systemHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return DEFAULTS.server.hostname;
  }
}

/**
 * False only when nothing is there: a config this user may not read is
 * reported as such, never silently replaced by the embedded default.
 */
async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound);
  }
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  if (i < 0) return Deno.cwd();
  return i === 0 ? "/" : path.slice(0, i);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
