const CR = 0x0d;
const LF = 0x0a;
const NUL = 0x00;
const SP = 0x20;
const HT = 0x09;
const CRLF = new Uint8Array([CR, LF]);

/**
 * Turns DATA bytes as smtp-server hands them over (it passes bare CR, bare
 * LF and NUL through verbatim; docs/testing.md, SMTP smuggling) into CRLF-only bytes: every
 * bare CR or LF becomes CRLF, as Postfix's `smtpd_forbid_bare_newline =
 * normalize` does, and counts are kept so the caller can refuse instead.
 * Works across chunk boundaries; bytes are never decoded to text.
 */
export class LineEndingNormalizer {
  /** Bare CR or LF seen so far. */
  bare = 0;
  /** NUL bytes seen so far. */
  nul = 0;
  /** Any byte above 0x7f seen (RFC 6152 8-bit content). */
  eightBit = false;
  /** Octets in the longest line, without its line end (RFC 5322 §2.1.1 allows 998). */
  longestLine = 0;
  /**
   * The header section, up to the first empty line (RFC 5322 §2.1): its octets and
   * lines (line ends included), and the octets and lines of its largest field, a field
   * being a line and the folded lines after it (RFC 5322 §2.2.3).
   */
  header = { bytes: 0, lines: 0, fieldBytes: 0, fieldLines: 0 };
  #pendingCR = false;
  #column = 0;
  #inHeader = true;
  #folded = false;
  #field = { bytes: 0, lines: 0 };

  /** Normalises one chunk; the result may be `chunk` itself when nothing changes. */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let start = 0;
    if (this.#pendingCR && chunk.length > 0) {
      this.#pendingCR = false;
      this.#endLine();
      if (chunk[0] === LF) {
        out.push(CRLF);
        start = 1;
      } else {
        this.bare++;
        out.push(CRLF);
      }
    }
    // The per-byte state lives in locals (this is the hot loop of every
    // message's DATA) and goes back to the fields at each line end and at
    // the end of the chunk.
    let column = this.#column;
    let nul = 0;
    let high = false;
    const n = chunk.length;
    let i = start;
    for (; i < n; i++) {
      const byte = chunk[i];
      if (byte > CR) {
        if (column === 0) this.#folded = byte === SP;
        column++;
        if (byte > 0x7f) high = true;
        continue;
      }
      if (byte !== CR && byte !== LF) {
        if (column === 0) this.#folded = byte === HT;
        column++;
        if (byte === NUL) nul++;
        continue;
      }
      this.#column = column;
      column = 0;
      if (byte === LF) {
        this.#endLine();
        // A LF here has no CR before it (CRLF pairs are consumed below).
        this.bare++;
        if (i > start) out.push(chunk.subarray(start, i));
        out.push(CRLF);
        start = i + 1;
      } else if (i + 1 === n) {
        // Whether the line ends here is known with the next chunk.
        column = this.#column;
        if (i > start) out.push(chunk.subarray(start, i));
        this.#pendingCR = true;
        start = i + 1;
      } else if (chunk[i + 1] === LF) {
        this.#endLine();
        i++;
      } else {
        this.#endLine();
        this.bare++;
        if (i > start) out.push(chunk.subarray(start, i));
        out.push(CRLF);
        start = i + 1;
      }
    }
    this.#column = column;
    this.nul += nul;
    if (high) this.eightBit = true;
    if (start === 0 && out.length === 0) return [chunk];
    if (i > start) out.push(chunk.subarray(start, i));
    return out;
  }

  /** Ends the stream: a CR left hanging at the very end becomes CRLF. */
  end(): Uint8Array[] {
    this.#endLine();
    if (!this.#pendingCR) return [];
    this.#pendingCR = false;
    this.bare++;
    return [CRLF];
  }

  #endLine(): void {
    if (this.#column > this.longestLine) this.longestLine = this.#column;
    if (this.#inHeader) this.#headerLine();
    this.#column = 0;
  }

  #headerLine(): void {
    if (this.#column === 0) {
      this.#inHeader = false;
      return;
    }
    const h = this.header;
    if (!this.#folded) this.#field = { bytes: 0, lines: 0 };
    this.#field.bytes += this.#column + 2;
    this.#field.lines++;
    h.bytes += this.#column + 2;
    h.lines++;
    if (this.#field.bytes > h.fieldBytes) h.fieldBytes = this.#field.bytes;
    if (this.#field.lines > h.fieldLines) h.fieldLines = this.#field.lines;
  }
}
