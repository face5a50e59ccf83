/**
 * DKIM signing at intake (RFC 6376, RFC 8463). {@linkcode loadDkimKeys} reads the
 * configured private keys at start-up; a {@linkcode DkimSigner} signs each accepted
 * message with the keys of its From: domain as the intake read it (or the nearest
 * parent domain that has keys), relaxed/relaxed, rsa-sha256 and ed25519-sha256, over-signing the fields a
 * forwarder must not add. {@linkcode generateDkimKey} makes a key pair and the DNS TXT
 * record to publish for `minimta dkim keygen`. A {@linkcode RotationWatcher} switches
 * to a rotated key (`minimta dkim rotate`) once its record is visible in DNS, and
 * {@linkcode rotationView} says what signs, what waits and what DNS must keep.
 *
 * @example
 * ```ts
 * const signer = new DkimSigner(await loadDkimKeys(config.dkim));
 * const signed = await signer.sign(message, "example.com");
 * const stored = signed ? concat([signed.headers, message]) : message;
 * ```
 *
 * @module
 */
export { type DkimKey, loadDkimKeys } from "./dkim_key.ts";
export { DkimSigner } from "./dkim_signer.ts";
export { parseKeyRecord, publicKeyRecordData, zoneStrings } from "./public_key.ts";
export { generateDkimKey, type GenerateDkimKeyOptions } from "./generate_dkim_key.ts";
export {
  checkSpf,
  type CheckSpfOptions,
  type DnsQuestion,
  findDmarcRecord,
} from "./sender_auth.ts";
export {
  readRotationState,
  RETIRED_KEEP_MS,
  rotatingKeyConfig,
  ROTATION_STATE_FILE,
  type RotationState,
  type RotationView,
  rotationView,
} from "./key_rotation.ts";
export { RotationWatcher, type RotationWatcherOptions } from "./rotation_watcher.ts";
