import { replaceFile } from "./replace_file.ts";
import { isHashed } from "./password.ts";

/** One user allowed to submit mail. */
export interface User {
  username: string;
  /** `$scrypt$…` hash, or plaintext for compatibility. */
  password: string;
  email: string | null;
  active: boolean;
  /** Addresses and `@domain` entries the user may send as. */
  allowed_senders: string[] | null;
  /** May use the web status page (issue 5). */
  admin: boolean;
  /** Recipients the user may send to per clock hour and per 24 hours; absent for no limit. */
  limits?: UserLimits;
}

/** A user's sending limits (`"limits"` in users.json); null for no limit in that window. */
export interface UserLimits {
  per_hour: number | null;
  per_day: number | null;
}

/** The on-disk format of a users file, told by its extension. */
export type UsersFormat = "json" | "txt";

/** A users file that cannot be used; the message names the file and the entry. */
export class UsersFileError extends Error {
  constructor(file: string, detail: string, options?: ErrorOptions) {
    super(`Users file "${file}": ${detail}`, options);
    this.name = "UsersFileError";
  }
}

/** `json` for `*.json`, otherwise `txt` (`user:password` lines). */
export function usersFormat(path: string): UsersFormat {
  return path.toLowerCase().endsWith(".json") ? "json" : "txt";
}

/** Reads and checks a users file. */
export async function readUsersFile(path: string): Promise<User[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotFound ? "not found" : (error as Error).message;
    throw new UsersFileError(path, `cannot read: ${why}`, { cause: error });
  }
  return usersFormat(path) === "json" ? parseJsonUsers(text, path) : parseTxtUsers(text, path);
}

/** Parses the original MiniMTA `users.json` format. */
export function parseJsonUsers(text: string, file: string): User[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new UsersFileError(file, "not valid JSON", { cause: error });
  }
  if (!Array.isArray(raw)) throw new UsersFileError(file, "expected a list of users");
  const users = raw.map((entry, i) => parseJsonUser(entry, `[${i}]`, file));
  return checkUnique(users, file);
}

function parseJsonUser(entry: unknown, at: string, file: string): User {
  if (typeof entry !== "object" || entry === null) {
    throw new UsersFileError(file, `${at}: expected an object`);
  }
  const e = entry as Record<string, unknown>;
  const known = ["username", "password", "email", "active", "allowed_senders", "admin", "limits"];
  for (const key of Object.keys(e)) {
    if (!known.includes(key)) throw new UsersFileError(file, `${at}.${key}: unknown key`);
  }
  const str = (key: string, required: boolean): string | null => {
    const v = e[key];
    if (v === undefined || v === null || v === "") {
      if (required) throw new UsersFileError(file, `${at}.${key}: missing`);
      return null;
    }
    if (typeof v !== "string") throw new UsersFileError(file, `${at}.${key}: expected a string`);
    return v;
  };
  const senders = e.allowed_senders;
  if (
    senders !== undefined && (!Array.isArray(senders) || senders.some((s) => typeof s !== "string"))
  ) {
    throw new UsersFileError(file, `${at}.allowed_senders: expected a list of strings`);
  }
  for (const key of ["active", "admin"]) {
    if (e[key] !== undefined && typeof e[key] !== "boolean") {
      throw new UsersFileError(file, `${at}.${key}: expected true or false`);
    }
  }
  const user: User = {
    username: str("username", true)!,
    password: str("password", true)!,
    email: str("email", false),
    active: e.active !== false,
    allowed_senders: (senders as string[] | undefined) ?? null,
    admin: e.admin === true,
  };
  if (e.limits !== undefined) user.limits = parseLimits(e.limits, `${at}.limits`, file);
  return user;
}

function parseLimits(value: unknown, at: string, file: string): UserLimits {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsersFileError(file, `${at}: expected an object with per_hour and/or per_day`);
  }
  const limits: UserLimits = { per_hour: null, per_day: null };
  for (const [key, n] of Object.entries(value)) {
    if (key !== "per_hour" && key !== "per_day") {
      throw new UsersFileError(file, `${at}.${key}: unknown key`);
    }
    if (!Number.isSafeInteger(n) || (n as number) < 1) {
      throw new UsersFileError(file, `${at}.${key}: expected a whole number of recipients >= 1`);
    }
    limits[key] = n as number;
  }
  return limits;
}

/** Parses `username:password` lines; `#` starts a comment. */
export function parseTxtUsers(text: string, file: string): User[] {
  const users: User[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const colon = trimmed.indexOf(":");
    if (colon <= 0 || colon === trimmed.length - 1) {
      throw new UsersFileError(file, `line ${i + 1}: expected "username:password"`);
    }
    const username = trimmed.slice(0, colon);
    users.push({
      username,
      password: trimmed.slice(colon + 1),
      email: username.includes("@") ? username : null,
      active: true,
      allowed_senders: null,
      admin: false,
    });
  });
  return checkUnique(users, file);
}

function checkUnique(users: User[], file: string): User[] {
  const seen = new Set<string>();
  for (const user of users) {
    const key = user.username.toLowerCase();
    if (seen.has(key)) throw new UsersFileError(file, `user "${user.username}" appears twice`);
    seen.add(key);
  }
  return users;
}

/** Serialises users in the given format, keeping only what that format holds. */
export function formatUsers(users: User[], format: UsersFormat): string {
  if (format === "txt") return users.map((u) => `${u.username}:${u.password}\n`).join("");
  const entries = users.map((u) => {
    const entry: Record<string, unknown> = {
      username: u.username,
      password: u.password,
      email: u.email ?? "",
      active: u.active,
    };
    if (u.allowed_senders) entry.allowed_senders = u.allowed_senders;
    if (u.admin) entry.admin = true;
    if (u.limits) {
      entry.limits = Object.fromEntries(
        Object.entries(u.limits).filter(([, n]) => n !== null),
      );
    }
    return entry;
  });
  return JSON.stringify(entries, null, 2) + "\n";
}

/**
 * Replaces a users file atomically with {@linkcode replaceFile}: a new
 * file gets mode 0600, an old one keeps its mode, owner and group.
 */
export async function writeUsersFile(path: string, users: User[]): Promise<void> {
  const previous = await Deno.readTextFile(path).catch(() => "");
  const text = usersFormat(path) === "txt"
    ? formatTxtKeepingComments(previous, users)
    : formatUsers(users, "json");
  await replaceFile(path, text);
}

/**
 * users.txt as edited by `minimta user`: comments, blank lines and the
 * order of the old file are kept, changed users are rewritten in place,
 * removed ones dropped and new ones appended.
 */
export function formatTxtKeepingComments(previous: string, users: User[]): string {
  const byName = new Map(users.map((u) => [u.username.toLowerCase(), u]));
  const written = new Set<string>();
  const lines: string[] = [];
  for (const line of previous.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) {
      lines.push(line);
      continue;
    }
    const name = trimmed.slice(0, trimmed.indexOf(":")).toLowerCase();
    const user = byName.get(name);
    if (user && !written.has(name)) {
      lines.push(`${user.username}:${user.password}`);
      written.add(name);
    }
  }
  while (lines.length && lines[lines.length - 1].trim() === "") lines.pop();
  for (const user of users) {
    if (!written.has(user.username.toLowerCase())) lines.push(`${user.username}:${user.password}`);
  }
  return lines.map((l) => `${l}\n`).join("");
}

/** Users whose password is stored in plaintext (warned about at start-up). */
export function plaintextUsers(users: User[]): string[] {
  return users.filter((u) => !isHashed(u.password)).map((u) => u.username);
}
