/**
 * EXPERIMENT, not a product change: measures what the delivery engine's spool
 * writes cost for a message delivered in full. Today, for every delivered
 * message, DeliveryEngine.#process() rewrites its metadata durably
 * (Spool.writeMeta: new file + fdatasync + rename + meta/ fsync) and then
 * #finish() removes it (Spool.remove: unlink meta + meta/ fsync + unlink body).
 * This entry point patches the Spool so that
 *   - writeMeta() of a message whose recipients are all "delivered" is skipped
 *     (it is removed right after; a crash in between re-delivers it, exactly
 *     as a crash before today's writeMeta completes would), and
 *   - remove() does not fsync meta/ (an unlink lost in a crash also only
 *     re-delivers; Postfix does not sync its deletes either).
 *   BENCH_MINIMTA_ENTRY=bench/lib/experiments/skip_final_meta_write.ts bash bench/run.sh delivery
 */
import { Spool } from "../../../src/spool/mod.ts";
import type { MessageMeta } from "../../../src/spool/mod.ts";

// deno-lint-ignore no-explicit-any
const proto = Spool.prototype as any;
const writeMeta = proto.writeMeta;
proto.writeMeta = function (this: Spool, meta: MessageMeta): Promise<void> {
  if (meta.recipients.every((r) => r.status === "delivered")) return Promise.resolve();
  return writeMeta.call(this, meta);
};
proto.remove = async function (this: Spool, id: string): Promise<void> {
  await Deno.remove(`${this.dir}/meta/${id}.json`);
  await Deno.remove(`${this.dir}/msg/${id}.eml`).catch(() => {});
};

await import("../../../main.ts");
