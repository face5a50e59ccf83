/** Where one recipient of a message stands. */
export type RecipientStatus = "pending" | "deferred" | "delivered" | "failed";

/** One recipient of a queued message and its delivery history. */
export interface RecipientState {
  address: string;
  status: RecipientStatus;
  /** Delivery attempts made for this recipient. */
  attempts: number;
  /** The last remote reply or local reason for a deferral or failure (reply text at most 1 KB). */
  last_error: string | null;
  /** RFC 3463 status of the last outcome, e.g. "4.4.1". */
  last_status: string | null;
  /** The remote host that gave the last outcome, "mx.example.com[192.0.2.1]". */
  remote: string | null;
  updated_at: string | null;
  /** The last attempts, oldest first (at most 10): when, outcome and the remote reply (at most 1 KB). */
  history?: AttemptRecord[];
  /** When the delay warning (`delivery.delay_warning`) went to the sender: it goes once. */
  delay_warned_at?: string;
}

/** A recipient no attempt has been made for yet, as a new message holds it. */
export function pendingRecipient(address: string): RecipientState {
  return {
    address,
    status: "pending",
    attempts: 0,
    last_error: null,
    last_status: null,
    remote: null,
    updated_at: null,
  };
}

/** The list manager's ids of a campaign message, read from its headers at intake. */
export interface ListIds {
  /** `X-Listmonk-Campaign`: the campaign's UUID. */
  listmonk_campaign?: string;
  /** `X-Listmonk-Subscriber`: the subscriber's UUID. */
  listmonk_subscriber?: string;
}

/**
 * One delivery attempt for one recipient. `transient` is the stored form of a
 * temporary failure (`temporary` in src/delivery and src/smtp_client): kept so
 * that spools written by older versions load unchanged.
 */
export interface AttemptRecord {
  at: string;
  outcome: "delivered" | "transient" | "permanent";
  status: string;
  text: string;
  remote: string | null;
}

/** A message's state as `queue list` shows it. */
export type MessageState = "queued" | "deferred" | "held";

/** The metadata file of one queued message (`meta/ID.json`). */
export interface MessageMeta {
  version: 1;
  id: string;
  /** Envelope sender; "" is the null reverse-path (bounces). */
  from: string;
  recipients: RecipientState[];
  state: MessageState;
  created_at: string;
  next_attempt_at: string;
  /** Size of the stored message in bytes. */
  size: number;
  message_id: string | null;
  auth_user: string | null;
  client_ip: string | null;
  /** True for a DSN minimta made itself; a DSN never bounces. */
  is_bounce: boolean;
  /** The envelope or headers need SMTPUTF8 (RFC 6531). */
  smtputf8: boolean;
  /** The body has bytes above 0x7f (RFC 6152). */
  eight_bit: boolean;
  /** Campaign and subscriber ids for bounce webhooks in the list manager's format. */
  list_ids?: ListIds;
  /** The Subject: field (at most 200 characters), for webhook formats that carry it. */
  subject?: string | null;
}

/** What a new message needs; the spool fills in id, times, size and state. */
export type NewMessage =
  & Omit<
    MessageMeta,
    "version" | "id" | "state" | "created_at" | "next_attempt_at" | "size" | "recipients"
  >
  & {
    /** A queue id made with `newQueueId()` beforehand, e.g. for the Received: field. */
    id?: string;
    recipients: string[];
  };
