/**
 * The lines of an open file, read a chunk at a time into one buffer (grown
 * only for a line longer than it), each yielded without its newline as a
 * view into that buffer: valid until the next line is asked for. Nothing the
 * size of the file is ever held, so reading a 20 MB file leaves no 20 MB
 * buffer for the garbage collector to find. Closes the file when done (or
 * when the loop reading it ends early); throws a `SyntaxError` when the last
 * line has no newline.
 */
export function* fileLines(file: Deno.FsFile, chunk = 1 << 20): Generator<Uint8Array> {
  let buf = new Uint8Array(chunk);
  let start = 0; // first byte not yet yielded
  let end = 0; // bytes in buf
  let line = 0;
  try {
    while (true) {
      let newline = buf.subarray(start, end).indexOf(0x0a);
      while (newline >= 0) {
        line++;
        yield buf.subarray(start, start + newline);
        start += newline + 1;
        newline = buf.subarray(start, end).indexOf(0x0a);
      }
      // Keep the partial line, at the front; grow only if it fills the buffer.
      if (start > 0) {
        buf.copyWithin(0, start, end);
        end -= start;
        start = 0;
      } else if (end === buf.length) {
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
      const n = file.readSync(buf.subarray(end));
      if (n === null) break;
      end += n;
    }
    if (end > start) throw new SyntaxError(`line ${line + 1} does not end`);
  } finally {
    file.close();
  }
}
