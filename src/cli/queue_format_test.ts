import assert from "node:assert/strict";
import type { QueueSummary } from "../delivery/mod.ts";
import { jsonListText, summary } from "./queue_format.ts";

function entry(id: string, over: Partial<QueueSummary> = {}): QueueSummary {
  return {
    id,
    from: "news@ours.test",
    state: "deferred",
    created_at: "2026-12-03T10:00:00.000Z",
    next_attempt_at: "2026-12-03T11:00:00.000Z",
    size: 1234,
    message_id: `<${id}@ours.test>`,
    recipients: [{
      address: "a@dest.test",
      status: "deferred",
      attempts: 2,
      last_error: "451 later",
    }],
    ...over,
  };
}

Deno.test("jsonListText() writes the same text as JSON.stringify(…, null, 2), odd values included", () => {
  const lists: QueueSummary[][] = [
    [],
    [entry("0000000000000001")],
    [
      entry("0000000000000001", { from: "", message_id: null, recipients: [] }),
      entry("0000000000000002", {
        state: "held",
        from: '"quoted \\\\ name"@ours.test',
        recipients: [
          { address: "ü@dest.test", status: "pending", attempts: 0, last_error: null },
          {
            address: "b@dest.test",
            status: "failed",
            attempts: 1,
            last_error: "550 no\n\t\u0000\u2028",
          },
        ],
      }),
    ],
  ];
  for (const list of lists) {
    assert.equal(
      [...jsonListText(list)].join(""),
      `${JSON.stringify(list.map(summary), null, 2)}\n`,
      `${list.length} entries`,
    );
  }
});
