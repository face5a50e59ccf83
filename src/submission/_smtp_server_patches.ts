import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import { SMTPStream } from "smtp-server/lib/smtp-stream.js";

// Two changes to smtp-server 3.21.6, pinned in deno.json; both are covered
// by tests and must be re-checked when the pin moves.

// 1. smtp-server loses every command pipelined after a second complete
// message in one chunk: SMTPStream.continue() runs the pending continuation,
// which parses the second message and stores a new continuation, and then
// overwrites that new one with `false`, so the rest of the chunk (e.g. QUIT)
// is never parsed and the client waits until the idle timeout. Clearing the
// slot before running the callback keeps the new continuation.
// Test: tests/submission_smuggling_test.ts (SMUG-IN-15).
const stream = SMTPStream.prototype as unknown as { continue(): void };
stream.continue = function (this: { _continueCallback: unknown }) {
  const pending = this._continueCallback;
  if (typeof pending === "function") {
    this._continueCallback = false;
    pending();
  } else {
    this._continueCallback = true;
  }
};

// 2. smtp-server waits a fixed 100 ms before its greeting to catch clients
// that talk first (a port-25 anti-spam check, like Postfix's postscreen).
// On submission every client authenticates, and an application that opens a
// connection per message pays 100 ms each time: it capped a 20-session
// load at about 165 messages/s (bench/). Postfix's smtpd greets at once;
// so does minimta. The connection limit check is kept as it was.
interface Connection {
  _server: { options: { maxClients?: number }; connections: Set<unknown> };
  name: string;
  _setListeners(ready: () => void): void;
  send(code: number, text: string, context: boolean): void;
  connectionReady(): void;
}
const connection = SMTPConnection.prototype as unknown as { init(): void };
connection.init = function (this: Connection) {
  this._setListeners(() => {
    const max = this._server.options.maxClients;
    if (max && this._server.connections.size > max) {
      return this.send(
        421,
        `${this.name} Too many connected clients, try again in a moment`,
        false,
      );
    }
    this.connectionReady();
  });
};
