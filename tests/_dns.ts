/**
 * The fake DNS for delivery tests: tests/fakes/fake_dns.py on 127.0.0.1,
 * serving a zone (JSON) the test can replace while it runs.
 */
import { ReadyChild } from "./_child.ts";
import { FAKES, freePorts, PYTHON } from "./_harness.ts";

/** A zone for fake_dns.py: name → behaviour (see its header). */
export type Zone = Record<string, Record<string, unknown>>;

/** tests/fakes/fake_dns.py on 127.0.0.1 with a zone the test can change. */
export class FakeDns {
  readonly port: number;
  readonly zonePath: string;
  #server: ReadyChild;
  #dir: string;

  private constructor(server: ReadyChild, dir: string, port: number) {
    this.#server = server;
    this.#dir = dir;
    this.zonePath = `${dir}/zone.json`;
    this.port = port;
  }

  static async start(zone: Zone): Promise<FakeDns> {
    const dir = await Deno.makeTempDir({ prefix: "minimta-dns-" });
    await Deno.writeTextFile(`${dir}/zone.json`, JSON.stringify(zone));
    for (let tries = 0;; tries++) {
      const [port] = freePorts(1);
      try {
        const server = await ReadyChild.spawn(PYTHON, [
          `${FAKES}/fake_dns.py`,
          "--listen",
          "127.0.0.1",
          "--port",
          String(port),
          "--zone",
          `${dir}/zone.json`,
        ]);
        return new FakeDns(server, dir, port);
      } catch (error) {
        if (tries >= 3) throw error;
      }
    }
  }

  /** `"127.0.0.1:PORT"`, for `delivery.dns_servers`. */
  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Replaces the zone (the server reloads it on its next query). */
  async setZone(zone: Zone): Promise<void> {
    const tmp = `${this.#dir}/zone.json.tmp`;
    await Deno.writeTextFile(tmp, JSON.stringify(zone));
    await Deno.rename(tmp, this.zonePath);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.dispose();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** A zone entry: `domain` has one MX, `mxName`, at `ip`. */
export function mxZone(domain: string, mxName: string, ip: string): Zone {
  return { [domain]: { MX: [[10, mxName]] }, [mxName]: { A: [ip] } };
}
