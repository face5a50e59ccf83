import { hashPassword, writeUsersFile } from "../auth/mod.ts";
import type { Config } from "../config/mod.ts";
import { log } from "../log/mod.ts";

const logger = log("cli");

/**
 * Prepares the embedded default's data folder on first start: a
 * self-signed certificate for the listeners and one user with a random
 * password, printed once. Nothing is overwritten on later starts.
 */
export async function prepareDataFolder(config: Config): Promise<void> {
  if (!(await exists(config.tls.cert_file)) || !(await exists(config.tls.key_file))) {
    await writeSelfSignedCertificate(
      config.tls.cert_file,
      config.tls.key_file,
      config.server.hostname,
    );
    logger.info("Created a self-signed certificate at {cert}", { cert: config.tls.cert_file });
  }
  if (!(await exists(config.auth.users_file))) {
    const password = randomPassword();
    const username = `admin@${
      config.server.hostname.includes(".") ? config.server.hostname : "localhost.localdomain"
    }`;
    await mkdirFor(config.auth.users_file);
    await writeUsersFile(config.auth.users_file, [{
      username,
      password: await hashPassword(password),
      email: username,
      active: true,
      allowed_senders: null,
      admin: true,
    }]);
    const banner = [
      "",
      "minimta: first start, created a submission user (this password is shown only once):",
      `  username: ${username}`,
      `  password: ${password}`,
      `  users file: ${config.auth.users_file}`,
      "",
    ].join("\n");
    await Deno.stderr.write(new TextEncoder().encode(banner + "\n"));
  }
}

/** Writes a self-signed certificate and key (0600) for `hostname`. */
export async function writeSelfSignedCertificate(
  certFile: string,
  keyFile: string,
  hostname: string,
): Promise<void> {
  // Loaded only here: its X.509 libraries would otherwise take memory in every daemon.
  const { default: selfsigned } = await import("selfsigned");
  const pems = await selfsigned.generate([{ name: "commonName", value: hostname }], {
    keySize: 2048,
    notAfterDate: new Date(Date.now() + 825 * 86_400_000),
    algorithm: "sha256",
    extensions: [{
      name: "subjectAltName",
      altNames: [{ type: 2, value: hostname }, { type: 2, value: "localhost" }, {
        type: 7,
        ip: "127.0.0.1",
      }],
    }],
  });
  await mkdirFor(certFile);
  await mkdirFor(keyFile);
  await Deno.writeTextFile(keyFile, pems.private, { mode: 0o600 });
  await Deno.writeTextFile(certFile, pems.cert, { mode: 0o644 });
}

/** 20 random characters from an alphabet without look-alikes (~116 bits). */
export function randomPassword(): string {
  const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  const bytes = crypto.getRandomValues(new Uint8Array(20));
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join("");
}

async function mkdirFor(file: string): Promise<void> {
  const dir = file.slice(0, file.lastIndexOf("/"));
  if (dir) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
