/**
 * The SMTP client's one edge to the network: TCP and TLS through `node:net` and
 * `node:tls`, behind the small {@linkcode Transport} byte-stream interface.
 *
 * Why not `Deno.connect`/`Deno.startTls` (verified on Deno 2.9.6): `Deno.connect` has no
 * local-address option, `Deno.startTls` refuses unverifiable certificates with no
 * per-connection opt-out, and `Deno.TlsConn` reports neither TLS version nor cipher.
 * `node:tls` upgrades a `node:net` socket mid-stream (`tls.connect({ socket })`), takes
 * `rejectUnauthorized: false`, and reports `authorized`, `authorizationError`,
 * `getProtocol()` and `getCipher()`.
 *
 * @module
 */
import net from "node:net";
import tls from "node:tls";
import { Buffer } from "node:buffer";

/** Where and how to open a TCP connection. */
export interface TransportConnectOptions {
  /** IP address (v4 or v6) to connect to. */
  hostname: string;
  /** TCP port. */
  port: number;
  /** Local address to bind; "" or undefined lets the system choose. @default {undefined} */
  localAddress?: string;
}

/** How to run a TLS handshake on an open transport. */
export interface TransportTlsOptions {
  /** Name sent as SNI and checked against the certificate; IP literals send no SNI. */
  servername: string;
  /** Refuse the handshake unless the chain and name verify. @default {false} */
  verify?: boolean;
  /** Extra PEM CA certificates trusted besides the system roots. @default {[]} */
  caCerts?: string[];
}

/** What a finished TLS handshake reports. */
export interface TransportTlsResult {
  /** Negotiated protocol, e.g. `TLSv1.3`. */
  version: string | null;
  /** Negotiated cipher suite name. */
  cipher: string | null;
  /** Whether the chain verified against trusted roots and matched the server name. */
  verified: boolean;
  /** Why verification failed, e.g. `DEPTH_ZERO_SELF_SIGNED_CERT`; null when verified. */
  verifyError: string | null;
}

/** A bidirectional byte stream that can be upgraded to TLS. */
export interface Transport {
  /** Next chunk from the peer, or null once the stream has ended or failed. */
  read(): Promise<Uint8Array | null>;
  /** Write bytes; resolves once they are handed to the OS. */
  write(bytes: Uint8Array): Promise<void>;
  /** Bytes received from the peer that no read() has returned yet. */
  readonly buffered: number;
  /** Start TLS on this connection (client side); rejects on handshake failure. */
  startTls(options: TransportTlsOptions): Promise<TransportTlsResult>;
  /** Tear the connection down at once. Safe to call more than once. */
  close(): void;
}

/** Opens a {@linkcode Transport}; injectable so tests can point the client elsewhere. */
export type Connector = (options: TransportConnectOptions) => Promise<Transport>;

/** The default {@linkcode Connector}: a `node:net` TCP connection. */
export function connectTcp(options: TransportConnectOptions): Promise<Transport> {
  const socket = net.connect({
    host: options.hostname,
    port: options.port,
    localAddress: options.localAddress || undefined,
  });
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      socket.setNoDelay(true);
      resolve(new NodeTransport(socket));
    });
  });
}

/**
 * The default root certificates, which `ca` would otherwise replace. Deno gates
 * `tls.rootCertificates` behind a bare `--allow-sys` (there is no `--allow-sys=ca`
 * descriptor), and the daemon runs with `--allow-sys=hostname,…`: reading them
 * (the list is lazy: reading its items, not the property) throws `NotCapable`. Then only the extra CAs are trusted, which fails closed
 * (a public MX does not verify) rather than failing every verification.
 */
function defaultRoots(): readonly string[] {
  try {
    return [...tls.rootCertificates];
  } catch {
    // Without sys permission, the system's CA bundle (Debian/Ubuntu,
    // Fedora/RHEL, Arch/Alpine) read as a file is the same trust store.
    for (const path of SYSTEM_CA_BUNDLES) {
      try {
        return [Deno.readTextFileSync(path)];
      } catch {
        // Try the next location.
      }
    }
    return [];
  }
}

const SYSTEM_CA_BUNDLES = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/cert.pem",
];

class NodeTransport implements Transport {
  #socket: net.Socket;
  #raw: net.Socket;
  #queue: Uint8Array[] = [];
  #ended = false;
  #wake: (() => void) | null = null;
  #onData = (chunk: Buffer) => {
    // Paused right away: at most one chunk is read ahead of the caller (bounded memory).
    this.#queue.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#socket.pause();
    this.#notify();
  };
  #onEnd = () => {
    this.#ended = true;
    this.#notify();
  };

  constructor(socket: net.Socket) {
    this.#socket = socket;
    this.#raw = socket;
    this.#attach(socket);
  }

  get buffered(): number {
    return this.#queue.reduce((n, c) => n + c.length, 0) + this.#socket.readableLength;
  }

  async read(): Promise<Uint8Array | null> {
    while (this.#queue.length === 0 && !this.#ended) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#wake = resolve;
      this.#socket.resume();
      await promise;
    }
    return this.#queue.shift() ?? null;
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.#ended || this.#socket.destroyed) {
      return Promise.reject(new Deno.errors.BrokenPipe("Connection is closed"));
    }
    return new Promise((resolve, reject) => {
      this.#socket.write(bytes, (err) => (err ? reject(err) : resolve()));
    });
  }

  async startTls(options: TransportTlsOptions): Promise<TransportTlsResult> {
    this.#detach(this.#socket);
    // From here the TLS socket owns the raw one; keep its late errors from going unhandled.
    this.#raw.on("error", () => {});
    const secure = tls.connect({
      socket: this.#socket,
      servername: net.isIP(options.servername) ? undefined : options.servername,
      rejectUnauthorized: options.verify ?? false,
      ca: options.caCerts?.length ? [...defaultRoots(), ...options.caCerts] : undefined,
    });
    this.#socket = secure;
    // Not paused here: a paused TLS socket in Deno never finishes its handshake. #onData
    // pauses it again as soon as application data arrives.
    this.#attach(secure);
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", () => resolve());
      secure.once("error", reject);
      secure.once(
        "close",
        () => reject(new Deno.errors.ConnectionReset("Closed during handshake")),
      );
    });
    const err = secure.authorizationError;
    return {
      version: secure.getProtocol() ?? null,
      cipher: secure.getCipher()?.name ?? null,
      verified: secure.authorized,
      verifyError: secure.authorized ? null : String(err ?? "unknown"),
    };
  }

  close(): void {
    this.#ended = true;
    this.#socket.destroy();
    this.#raw.destroy();
    this.#notify();
  }

  #attach(socket: net.Socket): void {
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onEnd);
    // Errors end the stream; the caller sees null from read() or a rejected write().
    socket.on("error", this.#onEnd);
  }

  #detach(socket: net.Socket): void {
    socket.off("data", this.#onData);
    socket.off("end", this.#onEnd);
    socket.off("close", this.#onEnd);
    socket.off("error", this.#onEnd);
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}
