import { SMTPConnection } from "smtp-server/lib/smtp-connection.js";
import { SMTPStream } from "smtp-server/lib/smtp-stream.js";

// Four changes to smtp-server 3.21.6, pinned in deno.json; each is covered
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

// 3. Once smtp-server has closed a connection (QUIT, any 421), it resumes the
// socket and discards what still arrives until the client closes its side,
// for up to 5 s. A client that keeps sending is read at wire speed all that
// time: measured here, 10 GB in those 5 s, one core busy and the daemon's RSS
// up by 600 MB, e.g. from a client that never read its replies (docs/testing.md R6)
// and floods once the timeout ends its session. Past a small allowance, more
// than any client finishing its pipeline sends, the socket is destroyed.
// Test: tests/submission_limits_test.ts (R6).
const AFTER_CLOSE_ALLOWANCE = 64 * 1024;
/** The parts of a connection and its socket that changes 3 and 4 use. */
interface ClosingConnection {
  _closing: boolean;
  _upgrading: boolean;
  _socket: {
    destroyed: boolean;
    writableFinished: boolean;
    on(event: "data", listener: (chunk: Uint8Array) => void): void;
    once(event: "finish", listener: () => void): void;
    destroy(): void;
  };
}
const closing = SMTPConnection.prototype as unknown as { close(): void };
const close = closing.close;
closing.close = function (this: ClosingConnection) {
  const first = !this._closing;
  close.call(this);
  // During a STARTTLS handshake the TLS socket reads the raw one: leave it be.
  if (!first || this._upgrading || this._socket.destroyed) return;
  const socket = this._socket;
  let discarded = 0;
  socket.on("data", (chunk) => {
    discarded += chunk.length;
    if (discarded > AFTER_CLOSE_ALLOWANCE) socket.destroy();
  });
};

// 4. After QUIT, smtp-server half-closes the socket and reads on until the
// client closes its side. Postfix's smtpd closes the connection as soon as
// its 221 is sent. A client that resets its side after the 221 (smtp-source
// does) then makes the half-open socket fail with ECONNRESET. Node's stream
// code formats that error's stack trace: 7-8% of the intake's CPU with one
// connection per message (BENCH_PROFILE=1 bash bench/submission.sh), about
// half of it left when the reset beats the "finish" below. Once the 221 and
// the FIN are with the kernel, the socket is closed, as Postfix does; the
// kernel still sends the reply. Only after QUIT: a 421 (change 3) may reach a
// client still sending, whose FIN is still read. A reset that beats the
// "finish" is no error of this connection any more: the socket is destroyed
// without it, so the stack is never formatted (4.3% left before this).
// Tests: tests/submission_limits_test.ts ("QUIT closes the connection", "reset after QUIT").
const quitting = SMTPConnection.prototype as unknown as {
  handler_QUIT(command: unknown, callback: () => void): void;
};
const quit = quitting.handler_QUIT;
quitting.handler_QUIT = function (this: ClosingConnection, command, callback) {
  quit.call(this, command, callback);
  const socket = this._socket;
  if (socket.destroyed || this._upgrading) return;
  const destroy = socket.destroy;
  socket.destroy = () => destroy.call(socket);
  if (socket.writableFinished) socket.destroy();
  else socket.once("finish", () => socket.destroy());
};
