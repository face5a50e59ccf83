import { classifyReply, type SmtpReply, type TlsInfo } from "../smtp_client/mod.ts";

/** What one delivery attempt did for one recipient. */
export interface RecipientOutcome {
  address: string;
  kind: "delivered" | "transient" | "permanent";
  /** SMTP reply code, or null for a local decision (DNS, connection). */
  code: number | null;
  /** RFC 3463 status, e.g. "2.0.0", "4.4.1", "5.1.1". */
  status: string;
  text: string;
  /** "mx.example.com[192.0.2.1]" when a server was reached. */
  remote: string | null;
  tls: TlsInfo | null;
}

/** Where a reply came from. */
export interface Peer {
  remote: string;
  tls: TlsInfo;
}

/** An outcome taken from a server's reply. */
export function fromReply(address: string, reply: SmtpReply, peer: Peer): RecipientOutcome {
  const cls = classifyReply(reply);
  const kind = cls === "success" ? "delivered" : cls;
  const status = reply.enhanced ?? `${String(reply.code)[0]}.0.0`;
  return {
    address,
    kind,
    code: reply.code,
    status,
    text: reply.text,
    remote: peer.remote,
    tls: peer.tls,
  };
}

/** An outcome decided locally (DNS answer, connection failure, expiry). */
export function local(
  address: string,
  kind: "transient" | "permanent",
  status: string,
  text: string,
  remote: string | null = null,
): RecipientOutcome {
  return { address, kind, code: null, status, text, remote, tls: null };
}

/** One-line form for `last_error` and DSN diagnostics. */
export function describe(outcome: RecipientOutcome): string {
  const where = outcome.remote ? `${outcome.remote} said: ` : "";
  const code = outcome.code !== null ? `${outcome.code} ` : "";
  return `${where}${code}${outcome.status} ${outcome.text}`.trim();
}
