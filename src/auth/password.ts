import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

// scrypt N=2^15, r=8, p=1: about 32 MiB and a few tens of milliseconds, as
// OWASP recommends for scrypt.
const LOG_N = 15;
const R = 8;
const P = 1;
const KEY_LENGTH = 32;
const MAX_MEM = 128 * 1024 * 1024;

// scrypt runs on the thread pool and takes 32 MiB each: a burst of logins
// (every session of a campaign app at once, or an attack with unknown
// users) would otherwise run them all at once. At most one per core runs;
// the rest wait in order.
const MAX_PARALLEL = Math.max(1, navigator.hardwareConcurrency || 2);
let running = 0;
const waiting: (() => void)[] = [];

async function derive(
  password: string,
  salt: Buffer,
  logN: number,
  r: number,
  p: number,
  len: number,
): Promise<Buffer> {
  if (running >= MAX_PARALLEL) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      scrypt(password, salt, len, { N: 2 ** logN, r, p, maxmem: MAX_MEM }, (error, key) => {
        if (error) reject(error);
        else resolve(key);
      });
    });
  } finally {
    running--;
    waiting.shift()?.();
  }
}

function b64(bytes: Buffer): string {
  return bytes.toString("base64").replace(/=+$/, "");
}

/** Hashes a password as a PHC string: `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, LOG_N, R, P, KEY_LENGTH);
  return `$scrypt$ln=${LOG_N},r=${R},p=${P}$${b64(salt)}$${b64(key)}`;
}

/** True when `stored` is a hash minimta understands (rather than plaintext). */
export function isHashed(stored: string): boolean {
  return stored.startsWith("$scrypt$");
}

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/**
 * Checks `password` against a stored value: a `$scrypt$` PHC string, or a
 * plaintext password kept for compatibility. Comparison is constant-time.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  if (!isHashed(stored)) return constantTimeEqual(Buffer.from(password), Buffer.from(stored));
  const match = PHC.exec(stored);
  if (!match) return false;
  const [, logN, r, p, salt, hash] = match;
  const expected = Buffer.from(hash, "base64");
  if (Number(logN) > 20 || expected.length < 16) return false;
  const key = await derive(
    password,
    Buffer.from(salt, "base64"),
    Number(logN),
    Number(r),
    Number(p),
    expected.length,
  );
  return timingSafeEqual(key, expected);
}

function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  // Compare equal-length digests so the length of the secret does not leak.
  const pad = Math.max(a.length, b.length, 1);
  const x = Buffer.alloc(pad);
  const y = Buffer.alloc(pad);
  a.copy(x);
  b.copy(y);
  return timingSafeEqual(x, y) && a.length === b.length;
}

/** A hash of a random password, verified against for unknown users so timing does not tell who exists. */
export const DUMMY_HASH: Promise<string> = hashPassword(crypto.randomUUID());
