const encoder = new TextEncoder();

function writeAll(stream: typeof Deno.stdout, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += stream.writeSync(bytes.subarray(offset));
}

/** Prints a line of command output on stdout. */
export function printOut(text: string): void {
  writeAll(Deno.stdout, encoder.encode(`${text}\n`));
}

/** Writes bytes of command output on stdout as they are. */
export function printBytes(bytes: Uint8Array): void {
  writeAll(Deno.stdout, bytes);
}

/** Prints a line on stderr. */
export function printErr(text: string): void {
  writeAll(Deno.stderr, encoder.encode(`${text}\n`));
}
