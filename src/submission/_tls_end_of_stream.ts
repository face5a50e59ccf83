// Deno's node:tls (seen on 2.9.6) can lose the end of a TLS stream. While
// its reader is paused (backpressure: smtp-server's parser is still busy,
// e.g. un-stuffing dots in a long DATA), decrypted bytes and the peer's
// close are held back; the next readStart() hands the held bytes to the
// socket first, the socket finds its buffer full and calls readStop() from
// inside that readStart(), and the held close is then delivered to no one.
// The socket never sees 'end': a client that hangs up in the middle of a
// message over TLS keeps its descriptor, its connection slot and the
// buffered message until the idle timeout (60 s by default). The R13 test
// (docs/testing.md) found it; tests/robustness_fuzz_test.ts checks it.
//
// The fix here: a readStop() asked for during readStart() waits until
// readStart() has returned, so the held close is delivered first.

interface StreamHandle {
  readStart(): number;
  readStop(): number;
}

/** Patches one TLS socket's stream handle so the peer's close is never lost (see above). */
export function keepTlsEndOfStream(socket: unknown): void {
  const handle = (socket as { _handle?: Partial<StreamHandle> | null })._handle;
  if (typeof handle?.readStart !== "function" || typeof handle.readStop !== "function") return;
  const readStart = handle.readStart;
  const readStop = handle.readStop;
  let starting = false;
  let stopAsked = false;
  handle.readStart = function (this: StreamHandle): number {
    starting = true;
    stopAsked = false;
    try {
      return readStart.call(this);
    } finally {
      starting = false;
      if (stopAsked) {
        stopAsked = false;
        readStop.call(this);
      }
    }
  };
  handle.readStop = function (this: StreamHandle): number {
    if (!starting) return readStop.call(this);
    stopAsked = true;
    return 0;
  };
}
