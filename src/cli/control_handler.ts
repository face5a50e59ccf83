import { Buffer } from "node:buffer";
import type { DeliveryEngine } from "../delivery/mod.ts";
import { MessageNotFoundError } from "../spool/mod.ts";
import type { Intake } from "../submission/mod.ts";
import type { ControlHandler } from "./control.ts";
import { submitLocal } from "./sendmail.ts";

/** Answers the CLI over the control socket: queue changes, listing, reload, local submission. */
export function controlHandler(
  engine: DeliveryEngine,
  intake: Intake,
  reloadAll: () => Promise<void>,
): ControlHandler {
  return async (req) => {
    switch (req.command) {
      case "submit": {
        const m = req.message!;
        const id = await submitLocal(intake, {
          from: m.from,
          recipients: m.recipients,
          data: Buffer.from(m.data, "base64"),
        });
        return { ok: true, lines: [`queued as ${id}`] };
      }
      case "ping":
        return { ok: true, lines: ["pong"] };
      case "list":
        return { ok: true, lines: [], data: engine.index.all() };
      case "reload":
        await reloadAll();
        return { ok: true, lines: ["reloaded users and DKIM keys"] };
      case "retry-all":
        return {
          ok: true,
          lines: [`${await engine.retryAll()} message(s) scheduled for delivery now`],
        };
      case "operate": {
        const lines: string[] = [];
        let missing = 0;
        for (const id of req.ids ?? []) {
          try {
            lines.push(await engine.operate(id, req.op!));
          } catch (error) {
            if (!(error instanceof MessageNotFoundError)) throw error;
            lines.push(`${id}: no such message`);
            missing++;
          }
        }
        return missing
          ? { ok: false, lines, error: `${missing} of the given ids are not in the queue` }
          : { ok: true, lines };
      }
      default:
        return { ok: false, lines: [], error: `Unknown control command "${req.command}"` };
    }
  };
}
