import type { EmitEvent } from "../events/mod.ts";
import type { SuppressionList } from "../spool/mod.ts";
import type { ControlResponse, SuppressRequest } from "./control.ts";

/**
 * Applies one `minimta suppress …` request to a suppression list: inside
 * the daemon (control socket), or in the CLI under the spool lock when the
 * daemon is stopped, so both paths do the same. Additions and removals are
 * mail events (`suppressed`, `unsuppressed`) sent to `emit`: the daemon's
 * event stream (log, webhooks, metrics), or the CLI's mail log.
 */
export async function applySuppress(
  list: SuppressionList,
  req: SuppressRequest,
  emit: EmitEvent,
): Promise<ControlResponse> {
  const addresses = (req.addresses ?? []).map(String);
  switch (req.op) {
    case "list":
      return { ok: true, lines: [], data: list.list() };
    case "add": {
      const lines: string[] = [];
      for (const address of addresses) {
        const added = await list.add({
          address,
          source: req.source === "import" ? "import" : "operator",
          reply: req.reason || "added by an operator",
          status: null,
          sender_domain: null,
          queue_id: null,
        });
        if (!added) {
          lines.push(`${address}: already suppressed`);
          continue;
        }
        emit({
          type: "suppressed",
          queue_id: null,
          recipient: added.address,
          from: "",
          message_id: null,
          source: added.source,
          code: null,
          status: null,
          text: added.reply,
          relay: null,
          expires_at: added.expires_at,
        });
        lines.push(`${added.address}: suppressed until ${added.expires_at}`);
      }
      return { ok: true, lines };
    }
    case "remove": {
      const lines: string[] = [];
      let missing = 0;
      for (const address of addresses) {
        if (await list.remove(address)) {
          emit({ type: "unsuppressed", recipient: address });
          lines.push(`${address}: removed`);
        } else {
          lines.push(`${address}: not suppressed`);
          missing++;
        }
      }
      return missing
        ? { ok: false, lines, error: `${missing} of the given addresses are not suppressed` }
        : { ok: true, lines };
    }
    default:
      return { ok: false, lines: [], error: `Unknown suppress operation "${req.op}"` };
  }
}
