#!/usr/bin/python3
"""A receiving SMTP host that throttles like a big mailbox provider, for
bench/campaign_throttle.sh.

  throttle_mx.py --listen IP --port PORT --stats FILE
                 [--max-conns 2] [--max-per-min 100] [--name mx.bigmail.example]

It accepts every message (and drops it), except that it answers
`421 4.7.28 ... unusual rate` and closes the connection
  - at connect, when the new connection would make more than --max-conns open, and
  - at MAIL FROM, when it has accepted --max-per-min or more messages in the
    last 60 seconds (a sliding window),
the way Gmail answers a sender that goes too fast. Every 0.2 s (and at exit)
it rewrites FILE with one JSON object: accepted, throttled (all 421s sent),
throttled_connect, throttled_mail, sessions, open, peak_open. Prints
"READY <port>" once it listens. Stops on SIGTERM.
"""
import argparse
import asyncio
import collections
import json
import os
import signal
import sys
import time

REPLY_421 = "421 4.7.28 [{ip}] Our system has detected an unusual rate of unsolicited mail; try again later"


class Host:
    def __init__(self, args):
        self.args = args
        self.stats = {
            "accepted": 0,
            "throttled": 0,
            "throttled_connect": 0,
            "throttled_mail": 0,
            "sessions": 0,
            "open": 0,
            "peak_open": 0,
        }
        self.window = collections.deque()  # times of accepted messages, last 60 s

    def rate_exceeded(self):
        now = time.monotonic()
        while self.window and now - self.window[0] > 60:
            self.window.popleft()
        return len(self.window) >= self.args.max_per_min

    def throttle(self, writer, where):
        ip = writer.get_extra_info("peername")[0]
        self.stats["throttled"] += 1
        self.stats["throttled_" + where] += 1
        writer.write((REPLY_421.format(ip=ip) + "\r\n").encode())

    async def session(self, reader, writer):
        s = self.stats
        s["sessions"] += 1
        s["open"] += 1
        s["peak_open"] = max(s["peak_open"], s["open"])
        try:
            if s["open"] > self.args.max_conns:
                self.throttle(writer, "connect")
                await writer.drain()
                return
            writer.write(f"220 {self.args.name} ESMTP\r\n".encode())
            while True:
                line = await reader.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(f"250-{self.args.name}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n".encode())
                elif verb == b"HELO":
                    writer.write(f"250 {self.args.name}\r\n".encode())
                elif verb == b"MAIL":
                    if self.rate_exceeded():
                        self.throttle(writer, "mail")
                        await writer.drain()
                        return
                    writer.write(b"250 2.1.0 ok\r\n")
                elif verb == b"RCPT":
                    writer.write(b"250 2.1.5 ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    while True:
                        body = await reader.readline()
                        if not body:
                            return
                        if body in (b".\r\n", b".\n"):
                            break
                    s["accepted"] += 1
                    self.window.append(time.monotonic())
                    writer.write(b"250 2.0.0 ok queued\r\n")
                elif verb in (b"RSET", b"NOOP"):
                    writer.write(b"250 2.0.0 ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"502 5.5.2 not implemented\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            s["open"] -= 1
            try:
                writer.close()
            except Exception:
                pass

    def dump(self):
        tmp = self.args.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.stats, f)
        os.replace(tmp, self.args.stats)

    async def main(self):
        server = await asyncio.start_server(self.session, self.args.listen, self.args.port, backlog=512)
        print(f"READY {self.args.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        async with server:
            while not stop.is_set():
                self.dump()
                try:
                    await asyncio.wait_for(stop.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
        self.dump()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--max-conns", type=int, default=2)
    p.add_argument("--max-per-min", type=int, default=100)
    p.add_argument("--name", default="mx.bigmail.example")
    asyncio.run(Host(p.parse_args()).main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
