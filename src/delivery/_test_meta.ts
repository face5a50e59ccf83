import { type MessageMeta, pendingRecipient } from "../spool/mod.ts";

/**
 * Test fixture: the metadata of message "Q1" with fresh (pending) recipients,
 * queued at 09:59 on 2026-12-02; `overrides` replaces any field.
 */
export function testMeta(addresses: string[], overrides: Partial<MessageMeta> = {}): MessageMeta {
  return {
    version: 1,
    id: "Q1",
    from: "news@ours.test",
    recipients: addresses.map(pendingRecipient),
    state: "queued",
    created_at: "2026-12-02T09:59:00Z",
    next_attempt_at: "2026-12-02T09:59:00Z",
    size: 100,
    message_id: "<m1@ours.test>",
    auth_user: null,
    client_ip: null,
    is_bounce: false,
    smtputf8: false,
    eight_bit: false,
    ...overrides,
  };
}
