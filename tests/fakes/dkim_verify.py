#!/usr/bin/python3
"""Independent DKIM verifier for minimta's tests (python3-dkim, not mailauth).

Usage:
    /usr/bin/python3 tests/fakes/dkim_verify.py MESSAGE [--txt NAME=RECORD]... [--txt-file FILE]
    /usr/bin/python3 tests/fakes/dkim_verify.py --check

MESSAGE     path of the message file (raw bytes, CRLF or LF), or "-" for stdin.
--txt       one DNS TXT record, NAME=RECORD, for example
              --txt 's2026._domainkey.example.test=v=DKIM1; k=rsa; p=MIIB...'
            NAME is the full query name, without a trailing dot; repeatable.
--txt-file  a JSON object {"s2026._domainkey.example.test": "v=DKIM1; ..."}.
--check     exit 0 when python3-dkim (and PyNaCl for ed25519) can be imported, 3 if not.

No real DNS is ever queried: a name missing from the records is "no key".

Output: one JSON line on stdout per DKIM-Signature header, top-most first:
    {"i": 0, "d": "example.test", "s": "s2026", "a": "rsa-sha256",
     "h": ["from", "to", ...], "ok": true, "error": null}
"error" carries python3-dkim's reason when "ok" is false.

Exit status: 0 when the message has at least one DKIM-Signature and every one
verifies; 1 when one fails or there is none; 2 on bad usage; 3 when
python3-dkim is not installed.
"""

import argparse
import json
import logging
import re
import sys
import types

# python3-dkim imports dnspython only for its default resolver, and that import takes a
# third of a second. The records here come from the command line: a stub module keeps
# real DNS out and the start fast.
for _name in ("dns", "dns.resolver"):
    sys.modules.setdefault(_name, types.ModuleType(_name))

try:
    import dkim
except ImportError:
    dkim = None

try:
    import nacl.signing  # noqa: F401  (python3-dkim needs it for ed25519-sha256)
    HAVE_NACL = True
except ImportError:
    HAVE_NACL = False


class ReasonLog(logging.Handler):
    """Keeps the last error python3-dkim logged: verify() returns only False."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.last = None

    def emit(self, record):
        if record.levelno >= logging.ERROR:
            self.last = record.getMessage()


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Verify every DKIM-Signature of a message.")
    parser.add_argument("message", nargs="?", help='message file, or "-" for stdin')
    parser.add_argument("--txt", action="append", default=[], metavar="NAME=RECORD")
    parser.add_argument("--txt-file", metavar="FILE")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if not args.check and args.message is None:
        parser.error("a MESSAGE file is required")
    return args


def load_records(args):
    records = {}
    if args.txt_file:
        with open(args.txt_file, encoding="utf-8") as f:
            for name, value in json.load(f).items():
                records[name.lower().rstrip(".")] = value
    for entry in args.txt:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            print("dkim_verify.py: --txt needs NAME=RECORD, got %r" % entry, file=sys.stderr)
            sys.exit(2)
        records[name.lower().rstrip(".")] = value
    return records


def read_message(path):
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def signature_tags(raw):
    """The d=, s=, a= and h= tags of one DKIM-Signature value, for the report."""
    value = re.sub(rb"\s+", b"", raw).decode("utf-8", "replace")
    tags = dict(part.split("=", 1) for part in value.split(";") if "=" in part)
    names = [h.lower() for h in tags.get("h", "").split(":") if h]
    return tags.get("d"), tags.get("s"), tags.get("a"), names


def verify_all(message, records):
    def dnsfunc(name, timeout=5):
        key = name.decode("ascii", "replace").lower().rstrip(".")
        value = records.get(key)
        return value.encode("utf-8") if value is not None else None

    reason = ReasonLog()
    logger = logging.getLogger("dkim_verify")
    logger.addHandler(reason)
    logger.propagate = False
    checker = dkim.DKIM(message, logger=logger)
    sigs = [v for k, v in checker.headers if k.lower() == b"dkim-signature"]
    results = []
    for idx, raw in enumerate(sigs):
        d, s, a, h = signature_tags(raw)
        reason.last = None
        try:
            ok = bool(dkim.DKIM(message, logger=logger).verify(idx=idx, dnsfunc=dnsfunc))
            error = None if ok else (reason.last or "signature did not verify")
        except Exception as e:  # python3-dkim raises for malformed input or keys
            ok, error = False, "%s: %s" % (type(e).__name__, e)
        results.append({"i": idx, "d": d, "s": s, "a": a, "h": h, "ok": ok, "error": error})
    return results


def main(argv):
    args = parse_args(argv)
    if dkim is None:
        print("dkim_verify.py: python3-dkim is not installed (apt install python3-dkim)",
              file=sys.stderr)
        return 3
    if args.check:
        if not HAVE_NACL:
            print("dkim_verify.py: PyNaCl is missing, ed25519-sha256 cannot be verified",
                  file=sys.stderr)
            return 3
        return 0
    results = verify_all(read_message(args.message), load_records(args))
    for result in results:
        print(json.dumps(result))
    if not results:
        print("dkim_verify.py: the message has no DKIM-Signature header", file=sys.stderr)
        return 1
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
