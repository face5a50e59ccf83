#!/usr/bin/python3
"""Scripted fake MX for minimta's delivery tests: a small asyncio SMTP server
that records the raw bytes it receives and misbehaves on request.

Usage:
  /usr/bin/python3 tests/fakes/fake_mx.py CONFIG.json

Prints "READY <host> <port>" on stdout once it listens. CONFIG.json:

  {
    "host": "127.0.0.2", "port": 2525,       # where to listen
    "name": "mx1.dest.test",                 # greeting and EHLO name
    "events": "/tmp/x/events.jsonl",         # one JSON line per event (below)
    "greeting": "220 mx1.dest.test ESMTP",   # e.g. "554 5.7.1 go away" (then close)
    "extensions": ["PIPELINING", "8BITMIME", "SIZE 50000000"],
    "starttls": {"cert": "c.pem", "key": "k.pem",
                 "inject": "250-injected\\r\\n250 AUTH PLAIN\\r\\n"},  # inject optional
    "mail": "250 2.1.0 OK",
    "rcpt": {"bad@dest.test": "550 5.1.1 No such user"},   # by lowercase address
    "rcpt_default": "250 2.1.5 OK",
    "rcpt_limit": 50,                                      # then 452 4.5.3 per transaction
    "data": ["451 4.3.0 Try later", "250 2.0.0 OK"],       # reply to the final dot,
    "delay_ms": [0],                                       # delay before that reply,
    "wait_for": [null],                                    # or until this file exists,
    "drop_after_bytes": [null],                            # close after N body bytes;
    "reset": "after_data",                                 # or "on_quit": see below
    "tarpit": false,                                       # accept, never say anything
    "blackhole": false                                     # never even accept (SYN dropped)
  }

"data", "delay_ms", "wait_for" and "drop_after_bytes" are indexed by the transaction
number (counted across connections from 0, each DATA that got 354); the last
entry repeats. A "data" reply of "DROP" closes the connection without a
reply once the whole message is in (the receiver may have kept it). A "rcpt"
value may be a list: the n-th RCPT for that address gets the n-th reply, the
last repeating. A missing "starttls" means STARTTLS is not offered.
"reset" sends a TCP RST (no TLS close_notify): "after_data" right after each
reply to the final dot, "on_quit" instead of the 221 reply to QUIT.
"blackhole" listens with a full accept queue, so the kernel drops every new
SYN and a client's connect() hangs until its own timeout.

Events (JSON lines, each also with "t": Unix time in seconds):
  {"event": "connect", "conn": N, "peer": "ip:port"}
  {"event": "command", "conn": N, "tls": bool, "line": "RCPT TO:<a@b>"}  (each command line)
  {"event": "tls", "conn": N, "ok": bool, "error": str|null}
  {"event": "transaction", "conn": N, "index": I, "tls": bool, "mail_from": str,
   "rcpts": [...], "data_b64": "<bytes after 354, terminator included>",
   "reply": "250 ...", "dropped": bool}
  {"event": "close", "conn": N, "tls": bool, "raw_b64": "<every byte received>"}
"raw_b64" holds the plaintext before STARTTLS and the decrypted bytes after it.
"""

import asyncio
import base64
import json
import os
import socket
import ssl
import struct
import sys
import time

TERMINATOR = b"\r\n.\r\n"


class Mx:
    def __init__(self, cfg):
        self.cfg = cfg
        self.name = cfg.get("name", "mx.test")
        self.events = open(cfg["events"], "a", encoding="utf-8")
        self.conns = 0
        self.transactions = 0
        self.rcpt_seen = {}
        self.tls_ctx = None
        st = cfg.get("starttls")
        if st:
            self.tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls_ctx.load_cert_chain(st["cert"], st["key"])

    def emit(self, event):
        event["t"] = time.time()
        self.events.write(json.dumps(event) + "\n")
        self.events.flush()

    def rcpt_reply(self, addr):
        reply = self.cfg.get("rcpt", {}).get(addr, self.cfg.get("rcpt_default", "250 2.1.5 OK"))
        if isinstance(reply, list):
            seen = self.rcpt_seen.get(addr, 0)
            self.rcpt_seen[addr] = seen + 1
            reply = reply[min(seen, len(reply) - 1)]
        return reply

    def pick(self, key, index, default):
        values = self.cfg.get(key)
        if not values:
            return default
        return values[min(index, len(values) - 1)]

    async def handle(self, reader, writer):
        conn = self.conns
        self.conns += 1
        peer = writer.get_extra_info("peername")
        self.emit({"event": "connect", "conn": conn, "peer": f"{peer[0]}:{peer[1]}"})
        session = Session(self, conn, reader, writer)
        try:
            await session.run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            self.emit({"event": "close", "conn": conn, "tls": session.tls,
                       "raw_b64": base64.b64encode(bytes(session.raw)).decode()})
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - already gone
                pass


class Session:
    def __init__(self, mx, conn, reader, writer):
        self.mx = mx
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self.raw = bytearray()
        self.buf = b""
        self.tls = False
        self.mail_from = None
        self.rcpts = []

    async def fill(self):
        chunk = await self.reader.read(65536)
        if not chunk:
            raise ConnectionError("client closed")
        self.raw += chunk
        self.buf += chunk

    async def line(self):
        while b"\n" not in self.buf:
            await self.fill()
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out.decode("latin1").rstrip("\r\n")

    async def say(self, text):
        self.writer.write(text.encode("latin1") + b"\r\n")
        await self.writer.drain()

    def reset(self):
        """Abort with a TCP RST: SO_LINGER 0, and no TLS close_notify."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def run(self):
        cfg = self.mx.cfg
        if cfg.get("tarpit"):
            # Never greet: only the client's greeting timeout (RFC 5321 §4.5.3.2.1) ends this.
            while True:
                await self.fill()
        greeting = cfg.get("greeting", f"220 {self.mx.name} ESMTP fake_mx")
        await self.say(greeting)
        if not greeting.startswith("2"):
            # RFC 5321 §3.1: a 554 greeting; answer QUIT if it comes, then close.
            try:
                await asyncio.wait_for(self.line(), 2)
                await self.say("221 2.0.0 Bye")
            except (asyncio.TimeoutError, ConnectionError):
                pass
            return
        while True:
            line = await self.line()
            self.mx.emit({"event": "command", "conn": self.conn, "tls": self.tls, "line": line})
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                await self.ehlo(verb)
            elif verb == "STARTTLS" and self.mx.tls_ctx and not self.tls:
                if not await self.starttls():
                    return
            elif verb == "MAIL":
                self.mail_from = between(line, "<", ">")
                self.rcpts = []
                await self.say(cfg.get("mail", "250 2.1.0 OK"))
            elif verb == "RCPT":
                addr = between(line, "<", ">")
                reply = self.mx.rcpt_reply(addr.lower())
                limit = cfg.get("rcpt_limit")
                if limit is not None and len(self.rcpts) >= limit:
                    reply = "452 4.5.3 Too many recipients"
                if reply.startswith("2"):
                    self.rcpts.append(addr)
                await self.say(reply)
            elif verb == "DATA":
                if self.mail_from is None or not self.rcpts:
                    await self.say("554 5.5.1 No valid recipients")
                    continue
                if not await self.data():
                    return
            elif verb == "RSET":
                self.mail_from, self.rcpts = None, []
                await self.say("250 2.0.0 OK")
            elif verb == "NOOP":
                await self.say("250 2.0.0 OK")
            elif verb == "QUIT":
                if cfg.get("reset") == "on_quit":
                    self.reset()
                    return
                await self.say("221 2.0.0 Bye")
                return
            else:
                await self.say("502 5.5.2 Command not recognized")

    async def ehlo(self, verb):
        if verb == "HELO":
            await self.say(f"250 {self.mx.name}")
            return
        exts = list(self.mx.cfg.get("extensions", ["PIPELINING", "8BITMIME", "SIZE 50000000"]))
        if self.mx.tls_ctx and not self.tls:
            exts.append("STARTTLS")
        lines = [self.mx.name] + exts
        text = "\r\n".join(
            f"250{'-' if i < len(lines) - 1 else ' '}{l}" for i, l in enumerate(lines))
        await self.say(text)

    async def starttls(self):
        inject = self.mx.cfg["starttls"].get("inject", "")
        self.writer.write(b"220 2.0.0 Ready to start TLS\r\n" + inject.encode("latin1"))
        await self.writer.drain()
        try:
            await asyncio.wait_for(self.writer.start_tls(self.mx.tls_ctx), 10)
        except Exception as e:  # noqa: BLE001 - any handshake failure ends the session
            self.mx.emit({"event": "tls", "conn": self.conn, "ok": False, "error": repr(e)})
            return False
        self.tls = True
        self.buf = b""
        self.mail_from, self.rcpts = None, []
        self.mx.emit({"event": "tls", "conn": self.conn, "ok": True, "error": None})
        return True

    async def data(self):
        mx = self.mx
        index = mx.transactions
        mx.transactions += 1
        await self.say("354 End data with <CR><LF>.<CR><LF>")
        drop = mx.pick("drop_after_bytes", index, None)
        # The body starts right after the 354: a terminator at its very start is ".\r\n".
        data = b""
        while True:
            probe = b"\r\n" + self.buf
            end = probe.find(TERMINATOR)
            if drop is not None and len(self.buf) >= drop:
                data = self.buf
                break
            if end >= 0:
                cut = end + len(TERMINATOR) - 2
                data, self.buf = self.buf[:cut], self.buf[cut:]
                break
            await self.fill()
        event = {"event": "transaction", "conn": self.conn, "index": index, "tls": self.tls,
                 "mail_from": self.mail_from, "rcpts": self.rcpts,
                 "data_b64": base64.b64encode(data).decode(), "reply": None,
                 "dropped": drop is not None}
        if drop is not None:
            mx.emit(event)
            self.writer.transport.abort()
            return False
        reply = mx.pick("data", index, "250 2.0.0 OK queued")
        event["reply"] = reply
        # Emitted before any delay: a receiver commits the message before it replies.
        mx.emit(event)
        delay = mx.pick("delay_ms", index, 0) or 0
        if delay:
            await asyncio.sleep(delay / 1000)
        gate = mx.pick("wait_for", index, None)
        while gate and not os.path.exists(gate):
            await asyncio.sleep(0.02)
        if reply == "DROP":
            self.writer.transport.abort()
            return False
        await self.say(reply)
        self.mail_from, self.rcpts = None, []
        if mx.cfg.get("reset") == "after_data":
            await asyncio.sleep(0.05)  # the 250 is on its way; then the connection dies
            self.reset()
            return False
        return True


def between(line, start, end):
    i = line.find(start)
    j = line.find(end, i + 1)
    return line[i + 1:j] if i >= 0 and j > i else ""


async def blackhole(cfg):
    """Listen with a full accept queue: Linux drops the SYNs of later connections."""
    server = socket.socket()
    server.bind((cfg["host"], cfg["port"]))
    server.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect((cfg["host"], cfg["port"]))
        except BlockingIOError:
            pass
        fillers.append(c)
    await asyncio.sleep(0.2)
    print(f"READY {cfg['host']} {cfg['port']}", flush=True)
    await asyncio.Event().wait()


async def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("blackhole"):
        await blackhole(cfg)
        return
    mx = Mx(cfg)
    server = await asyncio.start_server(mx.handle, cfg["host"], cfg["port"])
    print(f"READY {cfg['host']} {cfg['port']}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
