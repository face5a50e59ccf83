#!/usr/bin/python3
"""Fake DNS server for minimta's tests: per-name behaviour from a JSON zone.

Usage:
  /usr/bin/python3 tests/fakes/fake_dns.py --listen 127.0.0.1 --port PORT --zone ZONE.json
      [--log QUERIES.jsonl] [--verbose]

Answers on UDP and TCP (RFC 7766 two-byte length prefix) on the same port and
prints "READY <port>" on stdout once both sockets listen (--port 0 picks a
free port). ZONE.json maps lowercase names (no trailing dot) to behaviour:

  {
    "example.test": {"MX": [[10, "mx1.example.test"], [20, "mx2.example.test"]],
                     "A": ["127.0.0.2"], "AAAA": ["::2"], "TXT": ["v=DKIM1; ..."]},
    "nx.test":      {"rcode": "NXDOMAIN"},    # also SERVFAIL, REFUSED, NOTIMP, FORMERR
    "drop.test":    {"drop": true},           # never answer (UDP and TCP)
    "slow.test":    {"delay_ms": 500, "A": ["127.0.0.3"]},
    "null.test":    {"MX": [[0, "."]]},        # RFC 7505 null MX
    "alias.test":   {"CNAME": "real.test"},   # chased inside the zone like a recursive server
    "big.test":     {"truncate": true, "A": ["127.0.0.4"]},  # UDP answers set TC, TCP answers in full
    "2.0.0.127.in-addr.arpa": {"PTR": ["mx1.example.test"]}
  }

Names not listed answer NXDOMAIN; a listed name without the asked type answers
NOERROR with an empty answer (NODATA). The zone is reloaded on SIGHUP and
whenever the file's mtime changes (checked on every query), so tests may add
records while the server runs. A zone file that fails to parse keeps the last
good zone and logs the error on stderr. With --log, every query is appended as
one JSON line {"name", "type", "proto"} so tests can count lookups.
"""

import argparse
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60
MAX_CNAME_HOPS = 8
RCODES = {
    "NOERROR": dns.rcode.NOERROR,
    "FORMERR": dns.rcode.FORMERR,
    "SERVFAIL": dns.rcode.SERVFAIL,
    "NXDOMAIN": dns.rcode.NXDOMAIN,
    "NOTIMP": dns.rcode.NOTIMP,
    "REFUSED": dns.rcode.REFUSED,
}


class Zone:
    """The zone file's contents, reloaded when the file changes or on SIGHUP."""

    def __init__(self, path, verbose):
        self.path = path
        self.verbose = verbose
        self.lock = threading.Lock()
        self.mtime = None
        self.names = {}
        self.reload(force=True)

    def reload(self, force=False):
        with self.lock:
            try:
                mtime = os.stat(self.path).st_mtime_ns
                if not force and mtime == self.mtime:
                    return
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
                if not isinstance(data, dict):
                    raise ValueError("zone must be a JSON object")
                self.names = {k.lower().rstrip("."): v for k, v in data.items()}
                self.mtime = mtime
                if self.verbose:
                    log(f"zone loaded: {len(self.names)} names")
            except (OSError, ValueError) as e:
                log(f"cannot load zone {self.path!r}: {e}")

    def get(self, name):
        self.reload()
        with self.lock:
            return self.names.get(name)


def log(msg):
    print(f"fake_dns: {msg}", file=sys.stderr, flush=True)


def rdata_texts(rdtype, values):
    """Zone values of one type as presentation-format rdata strings."""
    if rdtype == dns.rdatatype.MX:
        return [f"{int(pref)} {fqdn(host)}" for pref, host in values]
    if rdtype == dns.rdatatype.TXT:
        return [txt_rdata(v) for v in values]
    if rdtype in (dns.rdatatype.PTR, dns.rdatatype.NS, dns.rdatatype.CNAME):
        return [fqdn(v) for v in values]
    return [str(v) for v in values]


def fqdn(host):
    host = str(host)
    return host if host.endswith(".") else host + "."


def txt_rdata(value):
    # RFC 1035 §3.3.14: character-strings of at most 255 octets each.
    raw = str(value).encode("utf-8")
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode("utf-8", "replace").replace("\\", "\\\\").replace('"', '\\"') + '"'
                    for c in chunks)


def add_rrset(response, owner, rdtype, values):
    texts = rdata_texts(rdtype, values)
    rrset = dns.rrset.from_text_list(owner, TTL, dns.rdataclass.IN, rdtype, texts)
    response.answer.append(rrset)


class Resolution:
    """The outcome for one question: rcode, answer added, or drop/delay."""

    def __init__(self):
        self.drop = False
        self.delay = 0.0
        self.truncate = False


def answer(zone, query, response):
    """Fill response for the query's first question, following CNAMEs in the zone."""
    res = Resolution()
    q = query.question[0]
    name = q.name.to_text(omit_final_dot=True).lower()
    if name == "":
        name = "."
    rdtype = q.rdtype
    for _ in range(MAX_CNAME_HOPS):
        entry = zone.get(name)
        if entry is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return res
        res.drop = res.drop or bool(entry.get("drop"))
        res.delay = max(res.delay, float(entry.get("delay_ms", 0)) / 1000.0)
        res.truncate = res.truncate or bool(entry.get("truncate"))
        if "rcode" in entry:
            response.set_rcode(RCODES[str(entry["rcode"]).upper()])
            return res
        type_name = dns.rdatatype.to_text(rdtype)
        if "CNAME" in entry and rdtype != dns.rdatatype.CNAME:
            # RFC 1034 §3.6.2 / RFC 2181 §10.1: a CNAME owner holds no other data.
            target = fqdn(entry["CNAME"])
            add_rrset(response, fqdn(name), dns.rdatatype.CNAME, [target])
            name = target.rstrip(".").lower()
            continue
        values = entry.get(type_name)
        if values:
            add_rrset(response, fqdn(name), rdtype, values if isinstance(values, list) else [values])
        return res
    response.set_rcode(dns.rcode.SERVFAIL)
    return res


def handle(server, wire, proto):
    """Return the wire answer for one query, or None to stay silent."""
    try:
        query = dns.message.from_wire(wire)
    except Exception as e:  # noqa: BLE001 - any parse failure is FORMERR
        if server.verbose:
            log(f"bad query ({e})")
        if len(wire) < 12:
            return None
        qid = struct.unpack("!H", wire[:2])[0]
        return struct.pack("!HHHHHH", qid, 0x8000 | dns.rcode.FORMERR, 0, 0, 0, 0)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA | dns.flags.AA
    if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
        response.set_rcode(dns.rcode.NOTIMP)
        return response.to_wire()
    q = query.question[0]
    server.log_query(q, proto)
    res = answer(server.zone, query, response)
    if server.verbose:
        log(f"{proto} {q.name} {dns.rdatatype.to_text(q.rdtype)} -> "
            f"{dns.rcode.to_text(response.rcode())} drop={res.drop}")
    if res.drop:
        return None
    if res.delay:
        time.sleep(res.delay)
    if res.truncate and proto == "udp":
        # RFC 1035 §4.2.1 / RFC 7766: TC set, the client retries over TCP.
        response.answer = []
        response.flags |= dns.flags.TC
    return response.to_wire()


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        out = handle(self.server.owner, data, "udp")
        if out is not None:
            sock.sendto(out, self.client_address)


class TCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        conn.settimeout(60)
        try:
            while True:
                head = recv_exact(conn, 2)
                if head is None:
                    return
                wire = recv_exact(conn, struct.unpack("!H", head)[0])
                if wire is None:
                    return
                out = handle(self.server.owner, wire, "tcp")
                if out is None:
                    # A lost answer: keep the connection open, say nothing, until the client leaves.
                    while conn.recv(4096):
                        pass
                    return
                conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            return


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class ThreadingUDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True
    allow_reuse_address = True


class ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeDns:
    def __init__(self, args):
        self.zone = Zone(args.zone, args.verbose)
        self.verbose = args.verbose
        self.log_path = args.log
        self.log_lock = threading.Lock()
        self.udp, self.tcp = bind_both(args.listen, args.port)
        self.udp.owner = self
        self.tcp.owner = self

    def log_query(self, q, proto):
        if not self.log_path:
            return
        line = json.dumps({
            "name": q.name.to_text(omit_final_dot=True).lower(),
            "type": dns.rdatatype.to_text(q.rdtype),
            "proto": proto,
        })
        with self.log_lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def serve(self):
        for srv in (self.udp, self.tcp):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
        print(f"READY {self.udp.server_address[1]}", flush=True)


def bind_both(host, port):
    """Bind UDP and TCP on one port; with port 0 retry until both get the same one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ThreadingUDP.address_family = family
    ThreadingTCP.address_family = family
    for _ in range(50):
        udp = ThreadingUDP((host, port), UDPHandler)
        chosen = udp.server_address[1]
        try:
            tcp = ThreadingTCP((host, chosen), TCPHandler)
            return udp, tcp
        except OSError:
            udp.server_close()
            if port != 0:
                raise
    raise OSError("cannot bind UDP and TCP to one free port")


def main():
    parser = argparse.ArgumentParser(description="Fake DNS server for minimta tests")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5353)
    parser.add_argument("--zone", required=True)
    parser.add_argument("--log", default=None, help="append one JSON line per query")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    server = FakeDns(args)
    signal.signal(signal.SIGHUP, lambda *_: server.zone.reload(force=True))
    # Exit at once: socketserver's shutdown() waits for a 0.5 s poll, and tests stop us often.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    server.serve()
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
