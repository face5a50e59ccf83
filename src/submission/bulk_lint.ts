import type { ListIds } from "../spool/mod.ts";
import { fieldValue, type HeaderField } from "./headers.ts";

/** What {@linkcode lintBulk} found wrong with a message that looks like bulk mail. */
export interface BulkFinding {
  /** Why it looks like bulk mail, e.g. `List-Id` or `X-Mailer: listmonk`. */
  signal: string;
  /** What it lacks, in words. */
  missing: string;
}

// The X-Mailer (or User-Agent) of list managers whose campaigns are bulk by definition.
const LIST_MANAGERS = /\b(acelle|listmonk|mautic|mailwizz|mailcoach|sendy)\b/i;
// Headers only campaign software sets.
const CAMPAIGN_HEADERS = [
  "x-listmonk-campaign",
  "x-acelle-message-id",
  "x-acelle-campaign-id",
  "x-mailwizz-campaign-uid",
  "x-mautic-id",
  "x-sendy-campaign",
];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Why a message looks like bulk mail, or null when it does not. */
export function bulkSignal(fields: HeaderField[]): string | null {
  const value = (name: string) => {
    const field = fields.find((f) => f.name === name);
    return field ? fieldValue(field) : null;
  };
  if (value("list-id") !== null) return "List-Id";
  // RFC 2076 §3.9: Precedence: bulk or list marks mail sent to many.
  const precedence = value("precedence");
  if (precedence && /^(bulk|list)$/i.test(precedence)) return `Precedence: ${precedence}`;
  const campaign = CAMPAIGN_HEADERS.find((name) => value(name) !== null);
  if (campaign) return fields.find((f) => f.name === campaign)!.raw.split(":")[0];
  const mailer = value("x-mailer") ?? value("user-agent");
  const manager = mailer ? LIST_MANAGERS.exec(mailer) : null;
  if (manager) return `X-Mailer: ${manager[1]}`;
  return null;
}

/**
 * Checks a message that looks like bulk mail for one-click unsubscribe
 * (RFC 8058 §3.1): a `List-Unsubscribe` with an `https` URI and
 * `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, which Gmail and
 * Yahoo require of bulk senders since 2024. Null when the message is not
 * bulk mail or has both.
 */
export function lintBulk(fields: HeaderField[]): BulkFinding | null {
  const signal = bulkSignal(fields);
  if (signal === null) return null;
  const unsubscribe = fields.find((f) => f.name === "list-unsubscribe");
  const post = fields.find((f) => f.name === "list-unsubscribe-post");
  const uris = unsubscribe
    ? [...fieldValue(unsubscribe).matchAll(/<([^>]*)>/g)].map((m) => m[1])
    : [];
  const missing: string[] = [];
  // RFC 8058 §3.1: the POST goes to an HTTPS URI; a mailto: alone is not one-click.
  if (!uris.some((uri) => /^https:\/\/\S+$/i.test(uri))) {
    missing.push("List-Unsubscribe: <https://…>");
  }
  if (!post || !/^List-Unsubscribe=One-Click$/i.test(fieldValue(post))) {
    missing.push("List-Unsubscribe-Post: List-Unsubscribe=One-Click");
  }
  return missing.length ? { signal, missing: missing.join(" and ") } : null;
}

/**
 * listmonk's campaign and subscriber UUIDs from `X-Listmonk-Campaign` and
 * `X-Listmonk-Subscriber`, kept only when they are UUIDs: listmonk's bounce
 * API refuses anything else.
 */
export function listIds(fields: HeaderField[]): ListIds | undefined {
  const ids: ListIds = {};
  const read = (name: string) => {
    const field = fields.find((f) => f.name === name);
    const value = field ? fieldValue(field) : "";
    return UUID.test(value) ? value.toLowerCase() : undefined;
  };
  const campaign = read("x-listmonk-campaign");
  const subscriber = read("x-listmonk-subscriber");
  if (campaign) ids.listmonk_campaign = campaign;
  if (subscriber) ids.listmonk_subscriber = subscriber;
  return campaign || subscriber ? ids : undefined;
}
