import { canonicalIp } from "./address.ts";

/** One name server, in the shape `Deno.resolveDns` takes as `nameServer`. */
export interface NameServer {
  ipAddr: string;
  port: number;
}

/**
 * Parses `"127.0.0.1:5353"`, `"127.0.0.1"`, `"[::1]:5353"` or `"::1"` (port 53
 * when absent). Throws a `TypeError` naming the bad value.
 */
export function parseNameServer(text: string): NameServer {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const v4WithPort = /^([0-9.]+):(\d+)$/.exec(text);
  const [host, port] = bracketed
    ? [bracketed[1], bracketed[2]]
    : v4WithPort
    ? [v4WithPort[1], v4WithPort[2]]
    : [text, undefined];
  const ipAddr = canonicalIp(host);
  const portNumber = port === undefined ? 53 : Number(port);
  if (ipAddr === null || !Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
    throw new TypeError(`Invalid DNS server "${text}": expected "IP" or "IP:PORT"`);
  }
  return { ipAddr, port: portNumber };
}

/**
 * Name servers listed in resolv.conf(5) text. glibc uses 127.0.0.1 when the
 * file lists none, so do we.
 */
export function parseResolvConf(text: string): NameServer[] {
  const servers: NameServer[] = [];
  for (const line of text.split("\n")) {
    const fields = line.replace(/[#;].*$/, "").trim().split(/\s+/);
    if (fields[0] !== "nameserver" || fields.length < 2) continue;
    try {
      // A link-local zone ("fe80::1%eth0") cannot be given to Deno.connect; skip it.
      if (!fields[1].includes("%")) servers.push(parseNameServer(fields[1]));
    } catch {
      // resolv.conf(5): malformed lines are ignored.
    }
  }
  return servers.length > 0 ? servers : [{ ipAddr: "127.0.0.1", port: 53 }];
}

/**
 * The system resolver's name servers from `/etc/resolv.conf`, or an empty list
 * when the file cannot be read (no `--allow-read`, or absent).
 */
export async function systemNameServers(path = "/etc/resolv.conf"): Promise<NameServer[]> {
  try {
    return parseResolvConf(await Deno.readTextFile(path));
  } catch {
    return [];
  }
}
