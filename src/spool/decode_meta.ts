import type { MessageMeta } from "./types.ts";
import { parseSpoolTime } from "./spool_time.ts";

const RECIPIENT_STATUSES = ["pending", "deferred", "delivered", "failed"];
const MESSAGE_STATES = ["queued", "deferred", "held"];
// The stored form (see AttemptRecord): "transient" is a temporary failure.
const OUTCOMES = ["delivered", "transient", "permanent"];

type Check = (value: unknown) => boolean;

const isString: Check = (v) => typeof v === "string";
const isBoolean: Check = (v) => typeof v === "boolean";
const isCount: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 0;
// The spool's own form is read fast; any other text Date.parse accepts is allowed too.
const isDate: Check = (v) =>
  typeof v === "string" && !(Number.isNaN(parseSpoolTime(v)) && Number.isNaN(Date.parse(v)));
const oneOf = (values: string[]): Check => (v) => values.includes(v as string);
const orNull = (check: Check): Check => (v) => v === null || check(v);

type Checks = [key: string, check: Check][];

const RECIPIENT: Checks = Object.entries({
  address: isString,
  status: oneOf(RECIPIENT_STATUSES),
  attempts: isCount,
  last_error: orNull(isString),
  last_status: orNull(isString),
  remote: orNull(isString),
  updated_at: orNull(isDate),
});

const ATTEMPT: Checks = Object.entries({
  at: isDate,
  outcome: oneOf(OUTCOMES),
  status: isString,
  text: isString,
  remote: orNull(isString),
});

const MESSAGE: Checks = Object.entries({
  from: isString,
  state: oneOf(MESSAGE_STATES),
  created_at: isDate,
  next_attempt_at: isDate,
  size: isCount,
  message_id: orNull(isString),
  auth_user: orNull(isString),
  client_ip: orNull(isString),
  is_bounce: isBoolean,
  smtputf8: isBoolean,
  eight_bit: isBoolean,
});

/**
 * Parses and fully checks the metadata file of message `id`: every field
 * the delivery engine, the CLI and the status page read must have its type,
 * so a file that is valid JSON but wrong inside (`"recipients": [null]`) is
 * refused here, naming the field, instead of crashing start-up later.
 * Unknown extra fields are allowed. Throws a `SyntaxError`.
 */
export function decodeMeta(text: string, id: string): MessageMeta {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new SyntaxError(`Metadata of "${id}" is not valid JSON`);
  }
  const problem = metaProblem(value, id);
  if (problem) throw new SyntaxError(`Metadata of "${id}" has an unknown format: ${problem}`);
  return value as MessageMeta;
}

// The first thing wrong with a parsed metadata file, or null.
function metaProblem(value: unknown, id: string): string | null {
  if (!isObject(value)) return "not an object";
  if (value.version !== 1) return "version is not 1";
  if (value.id !== id) return "id does not match the file name";
  const top = fieldsProblem(value, MESSAGE);
  if (top) return top;
  const recipients = value.recipients;
  if (!Array.isArray(recipients) || recipients.length === 0) {
    return "recipients is not a non-empty list";
  }
  const optional = optionalProblem(value);
  if (optional) return optional;
  for (const [i, rcpt] of recipients.entries()) {
    const where = `recipients[${i}]`;
    if (!isObject(rcpt)) return `${where} is not an object`;
    const problem = fieldsProblem(rcpt, RECIPIENT);
    if (problem) return `${where}.${problem}`;
    if (rcpt.delay_warned_at !== undefined && !isDate(rcpt.delay_warned_at)) {
      return `${where}.delay_warned_at has a wrong type or value`;
    }
    if (rcpt.history === undefined) continue;
    if (!Array.isArray(rcpt.history)) return `${where}.history is not a list`;
    for (const [j, attempt] of rcpt.history.entries()) {
      if (!isObject(attempt)) return `${where}.history[${j}] is not an object`;
      const bad = fieldsProblem(attempt, ATTEMPT);
      if (bad) return `${where}.history[${j}].${bad}`;
    }
  }
  return null;
}

// The optional top-level fields, checked only when present (older files lack them).
function optionalProblem(value: Record<string, unknown>): string | null {
  if (value.subject !== undefined && !orNull(isString)(value.subject)) {
    return "subject has a wrong type or value";
  }
  const ids = value.list_ids;
  if (ids === undefined) return null;
  if (!isObject(ids)) return "list_ids is not an object";
  for (const [key, id] of Object.entries(ids)) {
    if (!["listmonk_campaign", "listmonk_subscriber"].includes(key) || !isString(id)) {
      return `list_ids.${key} has a wrong type or value`;
    }
  }
  return null;
}

// The first field of `value` that is missing or fails its check, or null.
function fieldsProblem(
  value: Record<string, unknown>,
  checks: Checks,
): string | null {
  for (const [key, check] of checks) {
    if (!(key in value)) return `${key} is missing`;
    if (!check(value[key])) return `${key} has a wrong type or value`;
  }
  return null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
