import { parseArgs } from "node:util";
import {
  hashPassword,
  type LimitRecord,
  type LimitUsage,
  readUsersFile,
  SendingLimits,
  type User,
  usersFormat,
  writeUsersFile,
} from "../auth/mod.ts";
import type { Config } from "../config/mod.ts";
import { Outbox } from "../spool/mod.ts";
import { controlRequest } from "./control.ts";
import { CliError, UsageError } from "./errors.ts";
import { readPassword } from "./password_prompt.ts";

type Out = (text: string) => void;

const USAGE =
  "user add NAME [--email ADDR] [--admin] [--password-stdin] | user passwd NAME [--password-stdin] | user list | user remove NAME";

/** `minimta user …`: edits the users file atomically, keeping its format; the daemon reloads it. */
export async function userCommand(args: string[], config: Config, out: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      email: { type: "string" },
      "password-stdin": { type: "boolean" },
      json: { type: "boolean" },
      admin: { type: "boolean" },
    },
    allowPositionals: true,
    strict: true,
  });
  const [sub, name, ...extra] = positionals;
  if (extra.length || (sub === "list" && name !== undefined)) {
    throw new UsageError(`Unexpected argument "${extra[0] ?? name}"`);
  }
  const file = config.auth.users_file;
  switch (sub) {
    case "list":
      return listUsers(await readUsersFile(file), out, {
        json: values.json ?? false,
        usage: await limitUsage(config.queue.dir),
      });
    case "add":
    case "passwd":
    case "remove":
      if (!name) throw new UsageError(`Usage: minimta ${USAGE}`);
      return await editUsers(file, config.queue.dir, out, async (users) => {
        const index = users.findIndex((u) => u.username.toLowerCase() === name.toLowerCase());
        if (sub === "add") {
          return await addUser(
            users,
            index,
            name,
            values.email,
            file,
            { stdin: values["password-stdin"] ?? false, admin: values.admin ?? false },
          );
        }
        if (index < 0) throw new CliError(`No user "${name}" in "${file}"`);
        if (sub === "remove") {
          return { users: users.filter((_, i) => i !== index), text: `Removed user ${name}` };
        }
        const password = await newPassword(values["password-stdin"] ?? false);
        users[index] = { ...users[index], password: await hashPassword(password) };
        return { users, text: `Changed the password of ${name}` };
      });
    default:
      throw new UsageError(sub ? `Unknown user command "${sub}"` : `Usage: minimta ${USAGE}`);
  }
}

async function addUser(
  users: User[],
  index: number,
  name: string,
  email: string | undefined,
  file: string,
  flags: { stdin: boolean; admin: boolean },
) {
  if (index >= 0) throw new CliError(`User "${name}" already exists in "${file}"`);
  if (!/^[^\s:]+$/.test(name)) {
    throw new UsageError(`User name "${name}" must not contain spaces or ":"`);
  }
  const address = email ?? (name.includes("@") ? name : null);
  if (address !== null && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(address)) {
    throw new UsageError(`"${address}" is not an email address`);
  }
  if (usersFormat(file) === "txt" && address !== null && address !== name) {
    throw new UsageError(
      `"${file}" is a users.txt, which holds no email: use the address as the user name`,
    );
  }
  if (usersFormat(file) === "txt" && flags.admin) {
    throw new UsageError(`"${file}" is a users.txt, which holds no admin flag: use users.json`);
  }
  const password = await newPassword(flags.stdin);
  const user: User = {
    username: name,
    password: await hashPassword(password),
    email: address,
    active: true,
    allowed_senders: null,
    admin: flags.admin,
  };
  return {
    users: [...users, user],
    text: `Added user ${name}${
      address ? ` <${address}>` : " (no email: it may not send until allowed_senders is set)"
    }`,
  };
}

async function newPassword(stdin: boolean): Promise<string> {
  const password = await readPassword(stdin);
  if (password.length < 8) throw new CliError("The password must have at least 8 characters");
  return password;
}

/**
 * The sending counts the daemon keeps in `<spool>/limits/`, read without
 * it (reading is safe while it runs: each file is replaced by a rename).
 */
async function limitUsage(spoolDir: string): Promise<(username: string) => LimitUsage> {
  const store = new Outbox<LimitRecord>(`${spoolDir}/limits`, {
    tmp: `${spoolDir}/tmp`,
    fsync: false,
  });
  const limits = await SendingLimits.open({
    list: () => store.list().catch(() => []),
    put: () => Promise.resolve(),
  });
  return (username) => limits.usage(username);
}

function listUsers(
  users: User[],
  out: Out,
  options: { json: boolean; usage: (username: string) => LimitUsage },
): number {
  const { json, usage } = options;
  if (json) {
    out(
      JSON.stringify(
        users.map((u) => ({
          username: u.username,
          email: u.email,
          active: u.active,
          allowed_senders: u.allowed_senders,
          admin: u.admin,
          ...(u.limits ? { limits: u.limits, usage: usage(u.username) } : {}),
        })),
        null,
        2,
      ),
    );
    return 0;
  }
  for (const u of users) {
    const flags = [
      u.active ? "active" : "inactive",
      u.password.startsWith("$scrypt$") ? "hashed" : "PLAINTEXT password",
    ];
    if (u.limits) {
      const used = usage(u.username);
      flags.push(
        `sent ${used.hour}/${u.limits.per_hour ?? "-"} this hour, ${used.day}/${
          u.limits.per_day ?? "-"
        } in 24 h`,
      );
    }
    out(`${u.username}\t${u.email ?? "-"}\t${flags.join(", ")}`);
  }
  if (!users.length) out("No users");
  return 0;
}

// Read-modify-write under an exclusive lock on a lock file beside the users
// file, so two `minimta user` commands never lose each other's change.
async function editUsers(
  file: string,
  spoolDir: string,
  out: Out,
  change: (users: User[]) => Promise<{ users: User[]; text: string }>,
): Promise<number> {
  const lock = await Deno.open(`${file}.lock`, { create: true, write: true, mode: 0o600 });
  try {
    await lock.lock(true);
    const users = await readUsersFile(file).catch((error) => {
      if (error instanceof Error && /not found/.test(error.message)) return [] as User[];
      throw error;
    });
    const result = await change(users);
    await writeUsersFile(file, result.users);
    out(result.text);
  } finally {
    lock.close();
  }
  const reloaded = await controlRequest(spoolDir, { command: "reload" }).catch(() => null);
  if (reloaded) out("The running daemon reloaded its users");
  return 0;
}
