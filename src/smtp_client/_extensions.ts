import type { SmtpReply } from "./smtp_reply.ts";

/**
 * Service extensions from a 250 EHLO reply (RFC 5321 §4.1.1.1): keyword (upper case)
 * to its parameters. The first line is the server's greeting, not an extension.
 */
export function parseExtensions(reply: SmtpReply): Map<string, string> {
  const extensions = new Map<string, string>();
  for (const line of reply.lines.slice(1)) {
    const trimmed = line.trim();
    if (trimmed === "") continue;
    const space = trimmed.indexOf(" ");
    let keyword = (space === -1 ? trimmed : trimmed.slice(0, space)).toUpperCase();
    let params = space === -1 ? "" : trimmed.slice(space + 1).trim();
    // Pre-RFC 4954 servers also advertise "AUTH=LOGIN PLAIN"; fold it into AUTH.
    if (keyword.startsWith("AUTH=")) {
      params = `${keyword.slice(5)} ${params}`.trim();
      keyword = "AUTH";
      params = [extensions.get("AUTH"), params].filter((p) => p).join(" ");
    }
    extensions.set(keyword, params);
  }
  return extensions;
}

/** The RFC 1870 SIZE limit in octets, or null when none is advertised (absent or 0). */
export function sizeLimit(extensions: Map<string, string>): number | null {
  const value = extensions.get("SIZE");
  if (value === undefined || !/^\d+$/.test(value)) return null;
  const n = Number(value);
  return n > 0 ? n : null;
}
