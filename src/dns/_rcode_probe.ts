// Why this file exists: `Deno.resolveDns` throws the same `NotFound` for
// NXDOMAIN, NODATA, SERVFAIL and REFUSED (denoland/deno#36561). Bouncing on
// SERVFAIL would lose mail, so when it says NotFound we ask the same server
// once more ourselves and read the RCODE (RFC 1035 §4.1.1).
//
// The probe goes over TCP (RFC 7766, two-byte length prefix; every server
// must support it, RFC 7766 §5): `Deno.connect` is a stable API, there is no
// truncation to handle, and an off-path attacker cannot spoof an NXDOMAIN that
// would bounce mail as easily as over UDP.
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import type { NameServer } from "./_name_servers.ts";

/** The part of npm dns-packet used here (the package ships no types). */
interface DnsPacketApi {
  RECURSION_DESIRED: number;
  streamEncode(packet: {
    type: "query";
    id: number;
    flags: number;
    questions: { type: string; name: string; class: string }[];
  }): Uint8Array;
  decode(buf: Uint8Array): {
    id: number;
    type: string;
    rcode: string;
    questions: { type: string; name: string }[];
    answers?: { type: string; name: string }[];
  };
}

const packet = dnsPacket as unknown as DnsPacketApi;

/** What the server said about a name and type. */
export interface ProbeResult {
  /** RCODE name as dns-packet spells it: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, … */
  rcode: string;
  /** Answer records of the asked type (0 with NOERROR means NODATA, RFC 2308 §2.2). */
  answers: number;
}

/** Options for {@linkcode probeRcode}. */
export interface ProbeOptions {
  /** The server to ask. */
  server: NameServer;
  /** Gives up when aborted; the caller owns the timer. */
  signal: AbortSignal;
  /** @default Deno.connect */
  connect?: typeof Deno.connect;
}

/** A probe function, injectable for tests. */
export type RcodeProbe = (name: string, type: string, opts: ProbeOptions) => Promise<ProbeResult>;

/** Largest DNS message over TCP (RFC 1035 §4.2.2: 16-bit length). */
const MAX_TCP_MESSAGE = 65535;

/** Asks `server` about `name`/`type` over TCP and returns the RCODE and answer count. */
export async function probeRcode(
  name: string,
  type: string,
  opts: ProbeOptions,
): Promise<ProbeResult> {
  const connect = opts.connect ?? Deno.connect;
  const conn = await connect({
    hostname: opts.server.ipAddr,
    port: opts.server.port,
    signal: opts.signal,
  });
  let closed = false;
  const close = () => {
    if (!closed) conn.close();
    closed = true;
  };
  opts.signal.addEventListener("abort", close, { once: true });
  try {
    opts.signal.throwIfAborted();
    return await exchange(conn, name, type);
  } catch (err) {
    if (opts.signal.aborted) throw opts.signal.reason;
    throw err;
  } finally {
    opts.signal.removeEventListener("abort", close);
    close();
  }
}

/** One query and its reply on an open connection (RFC 7766 §8: length-prefixed). */
async function exchange(conn: Deno.Conn, name: string, type: string): Promise<ProbeResult> {
  const id = crypto.getRandomValues(new Uint16Array(1))[0];
  const query = packet.streamEncode({
    type: "query",
    id,
    flags: packet.RECURSION_DESIRED,
    questions: [{ type, name, class: "IN" }],
  });
  await writeAll(conn, query);
  const length = new DataView((await readExactly(conn, 2)).buffer).getUint16(0);
  const reply = packet.decode(Buffer.from(await readExactly(conn, length)));
  const question = reply.questions[0];
  if (reply.id !== id || question?.name.toLowerCase() !== name.toLowerCase().replace(/\.$/, "")) {
    throw new Deno.errors.InvalidData(`DNS reply does not match the query for "${name}"`);
  }
  const answers = (reply.answers ?? []).filter((a) => a.type === type).length;
  return { rcode: reply.rcode, answers };
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  if (n > MAX_TCP_MESSAGE) throw new RangeError(`DNS reply length ${n} is too large`);
  const buf = new Uint8Array(n);
  for (let off = 0; off < n;) {
    const got = await conn.read(buf.subarray(off));
    if (got === null) throw new Deno.errors.UnexpectedEof("DNS server closed the connection");
    off += got;
  }
  return buf;
}
