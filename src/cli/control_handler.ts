import { Buffer } from "node:buffer";
import type { DeliveryEngine } from "../delivery/mod.ts";
import type { EmitEvent } from "../events/mod.ts";
import { MessageNotFoundError, type SuppressionList } from "../spool/mod.ts";
import type { Intake } from "../submission/mod.ts";
import type { ControlHandler } from "./control.ts";
import { jsonListText } from "./queue_format.ts";
import { submitLocal } from "./sendmail.ts";
import { applySuppress } from "./suppress_apply.ts";

/** Options for {@linkcode controlHandler}. */
export interface ControlHandlerOptions {
  /** Our name, for local senders without a domain. */
  hostname: string;
  /** Reloads users and DKIM keys (as SIGHUP does). */
  reloadAll: () => Promise<void>;
  /** The daemon's suppression list, changed only through it while it runs. */
  suppressions: SuppressionList;
  /** The daemon's event stream, for `suppressed` and `unsuppressed`. */
  emit: EmitEvent;
}

/** Answers the CLI over the control socket: queue changes, listing, reload, local submission, suppressions. */
export function controlHandler(
  engine: DeliveryEngine,
  intake: Intake,
  options: ControlHandlerOptions,
): ControlHandler {
  const { hostname, reloadAll, suppressions, emit } = options;
  const local = localSubmitHandler(intake, hostname);
  return async (req) => {
    switch (req.command) {
      case "suppress":
        if (!req.suppress) return { ok: false, lines: [], error: "Malformed suppress request" };
        return await applySuppress(suppressions, req.suppress, emit);
      case "submit":
      case "ping":
        return await local(req);
      case "list":
        // Made one entry at a time as the socket takes them (see ControlResponse.stream).
        if (req.stream && req.render === "json") {
          return { ok: true, lines: [], raw: true, stream: jsonListText(engine.index.summaries()) };
        }
        return req.stream
          ? { ok: true, lines: [], stream: engine.index.summaries() }
          : { ok: true, lines: [], data: [...engine.index.summaries()] };
      case "providers":
        return { ok: true, lines: [], data: engine.providerStatus() };
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

/**
 * Answers the local submission socket, open to every local user as Postfix's
 * sendmail is: it takes messages (and pings), nothing else. A sender without
 * a domain (the default `$USER`) gets this host's name.
 */
export function localSubmitHandler(intake: Intake, hostname: string): ControlHandler {
  return async (req) => {
    switch (req.command) {
      case "submit": {
        const m = req.message;
        if (!m || typeof m.from !== "string" || !Array.isArray(m.recipients)) {
          return { ok: false, lines: [], error: "Malformed submit request" };
        }
        const id = await submitLocal(intake, {
          from: m.from === "" || m.from.includes("@") ? m.from : `${m.from}@${hostname}`,
          recipients: m.recipients.map(String),
          data: Buffer.from(String(m.data), "base64"),
        });
        return { ok: true, lines: [`queued as ${id}`] };
      }
      case "ping":
        return { ok: true, lines: ["pong"] };
      default:
        return { ok: false, lines: [], error: `"${req.command}" is not allowed here` };
    }
  };
}
