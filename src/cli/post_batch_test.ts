import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { PostBatch } from "./post_batch.ts";

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

Deno.test("what is posted in one turn goes over as one batch, in order, after that turn", async () => {
  const sent: number[][] = [];
  const batch = new PostBatch<number>({ postMessage: (messages) => sent.push(messages) });
  batch.post(1);
  batch.post(2);
  await Promise.resolve();
  batch.post(3); // a microtask of the same turn joins the batch
  assert.deepEqual(sent, [], "nothing is posted before the turn ends");
  await nextTurn();
  assert.deepEqual(sent, [[1, 2, 3]]);
  batch.post(4);
  await nextTurn();
  await nextTurn();
  assert.deepEqual(sent, [[1, 2, 3], [4]], "a later turn is a batch of its own");
});

Deno.test("batches between real threads keep their order, each side's messages answered in turn", async () => {
  // A worker that echoes every message it gets, through its own PostBatch.
  const source = `
    import { PostBatch } from ${JSON.stringify(new URL("./post_batch.ts", import.meta.url).href)};
    const out = new PostBatch(self);
    self.onmessage = (event) => { for (const n of event.data) out.post(n * 10); };
  `;
  const url = URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
  const worker = new Worker(url, { type: "module" });
  try {
    const batches: number[][] = [];
    const all = new Promise<void>((resolve) => {
      worker.onmessage = (event: MessageEvent<number[]>) => {
        batches.push(event.data);
        if (batches.flat().length === 100) resolve();
      };
    });
    const out = new PostBatch<number>(worker);
    for (let i = 0; i < 50; i++) out.post(i);
    await nextTurn();
    for (let i = 50; i < 100; i++) out.post(i);
    await all;
    assert.deepEqual(batches.flat(), Array.from({ length: 100 }, (_, i) => i * 10));
    assert.ok(
      batches.length <= 2,
      `100 messages in two turns came back in ${batches.length} batches`,
    );
  } finally {
    worker.terminate();
    URL.revokeObjectURL(url);
  }
});
