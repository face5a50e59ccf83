const encoder = new TextEncoder();

/**
 * Reads a password: from stdin when `fromStdin` (first line), else from the
 * terminal without echo, asked twice. Never from the command line, where it
 * would be visible in `ps` and the shell history.
 */
export async function readPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin || !Deno.stdin.isTerminal()) {
    const text = await new Response(Deno.stdin.readable).text();
    return text.split(/\r?\n/)[0];
  }
  const first = await promptHidden("New password: ");
  const second = await promptHidden("Repeat password: ");
  if (first !== second) throw new Error("The passwords do not match");
  return first;
}

async function promptHidden(label: string): Promise<string> {
  await Deno.stderr.write(encoder.encode(label));
  Deno.stdin.setRaw(true);
  const chars: string[] = [];
  const buf = new Uint8Array(1);
  try {
    for (;;) {
      const n = await Deno.stdin.read(buf);
      if (n === null || buf[0] === 0x0d || buf[0] === 0x0a) break;
      if (buf[0] === 0x03) throw new Error("Cancelled");
      if (buf[0] === 0x7f || buf[0] === 0x08) chars.pop();
      else chars.push(String.fromCharCode(buf[0]));
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(encoder.encode("\n"));
  }
  return new TextDecoder().decode(new Uint8Array(chars.map((c) => c.charCodeAt(0))));
}
