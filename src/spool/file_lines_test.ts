import assert from "node:assert/strict";
import { fileLines } from "./file_lines.ts";

async function linesOf(text: string, chunk: number): Promise<string[]> {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, text);
    const decoder = new TextDecoder();
    // Each view is decoded before the next line is read: the buffer is reused.
    const out: string[] = [];
    for (const line of fileLines(Deno.openSync(path), chunk)) out.push(decoder.decode(line));
    return out;
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("fileLines() gives every line whatever the chunk size, lines longer than a chunk included", async () => {
  const lines = ["", "a", "ü€ two-byte and three-byte", "x".repeat(100), "last"];
  for (const chunk of [1, 3, 7, 64, 1 << 20]) {
    assert.deepEqual(await linesOf(lines.join("\n") + "\n", chunk), lines, `chunk ${chunk}`);
  }
  assert.deepEqual(await linesOf("", 4), []);
});

Deno.test("fileLines() refuses a last line without its newline, naming it", async () => {
  await assert.rejects(() => linesOf("one\ntwo\nthr", 4), /line 3 does not end/);
});
