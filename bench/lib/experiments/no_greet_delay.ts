/**
 * EXPERIMENT, not a product change: runs minimta with smtp-server's fixed
 * 100 ms "early talker" pause before the 220 greeting removed, to measure
 * what that pause costs. smtp-server 3.21.6 hard-codes it in
 * SMTPConnection.init() (dist/esm/smtp-connection.js:441, no option). Use:
 *   BENCH_MINIMTA_ENTRY=bench/lib/experiments/no_greet_delay.ts bash bench/run.sh
 */
// @ts-ignore: deep import of the npm package's ESM build
import { SMTPConnection } from "npm:smtp-server@3.21.6/lib/smtp-connection.js";

// deno-lint-ignore no-explicit-any
(SMTPConnection as any).prototype.init = function (this: any) {
  this._setListeners(() => {
    const max = this._server.options.maxClients;
    if (max && this._server.connections.size > max) {
      return this.send(
        421,
        this.name + " Too many connected clients, try again in a moment",
        false,
      );
    }
    this.connectionReady();
  });
};

await import("../../../main.ts");
