#!/usr/bin/python3
"""Checks that a server under bench/delivery.sh BENCH_DKIM=1 signed what it sent.

  dkim_check.py DUMP_DIR EXPECTED SAMPLE DOMAIN SELECTOR PUBKEY_B64 VERIFIER OUT_DIR

DUMP_DIR holds the messages as `smtp-sink -d` wrote them (one file each; the
sink's own X-Client-Addr/X-Client-Proto/X-Helo-Args/X-Mail-Args/X-Rcpt-Args
lines and its Received header on top, an empty line appended). Checks that:
  - there are EXPECTED files (every message the sink counted was dumped);
  - every message's header carries a DKIM-Signature with d=DOMAIN, s=SELECTOR;
  - SAMPLE of them, chosen at random, verify with VERIFIER
    (tests/fakes/dkim_verify.py, python3-dkim) against the public key
    PUBKEY_B64 published as SELECTOR._domainkey.DOMAIN.
The sampled messages, as verified (sink lines removed), are copied to OUT_DIR.
Prints one summary line; exits 0 when all holds, 1 otherwise (the reasons on
stderr).
"""
import json
import os
import random
import re
import subprocess
import sys

SINK_FIELDS = (b"X-Client-Addr:", b"X-Client-Proto:", b"X-Helo-Args:", b"X-Mail-Args:", b"X-Rcpt-Args:")


def message_of(raw):
    """The message as the sink received it: its generated lines dropped."""
    lines = raw.split(b"\n")
    i = 0
    while i < len(lines) and lines[i].startswith(SINK_FIELDS):
        i += 1
    if i < len(lines) and lines[i].startswith(b"Received:") and i + 1 < len(lines) \
            and b"by smtp-sink" in lines[i + 1]:
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    msg = b"\n".join(lines[i:])
    if msg.endswith(b"\n\n"):  # the empty line the sink appends
        msg = msg[:-1]
    return msg


def header_of(msg):
    end = msg.find(b"\n\n")
    return msg if end < 0 else msg[:end + 1]


def signatures(header):
    """The DKIM-Signature fields of a header block, unfolded, as tag dicts."""
    out = []
    for m in re.finditer(rb"^DKIM-Signature:(.*(?:\n[ \t].*)*)", header, re.M | re.I):
        value = re.sub(rb"\s+", b"", m.group(1)).decode("ascii", "replace")
        out.append(dict(t.split("=", 1) for t in value.split(";") if "=" in t))
    return out


def main():
    dump, expected, sample, domain, selector, pubkey, verifier, out_dir = sys.argv[1:9]
    expected, sample = int(expected), int(sample)
    files = sorted(os.path.join(dump, f) for f in os.listdir(dump))
    errors = []
    if len(files) != expected:
        errors.append(f"{len(files)} messages dumped by the sink, {expected} expected")
    unsigned = wrong = 0
    for path in files:
        with open(path, "rb") as f:
            sigs = signatures(header_of(message_of(f.read())))
        if not sigs:
            unsigned += 1
        elif not any(s.get("d") == domain and s.get("s") == selector for s in sigs):
            wrong += 1
    if unsigned:
        errors.append(f"{unsigned} of {len(files)} messages carry no DKIM-Signature")
    if wrong:
        errors.append(f"{wrong} of {len(files)} messages carry no DKIM-Signature with d={domain} s={selector}")
    txt = f"{selector}._domainkey.{domain}=v=DKIM1; k=rsa; p={pubkey}"
    picked = random.sample(files, min(sample, len(files)))
    os.makedirs(out_dir, exist_ok=True)
    verified = 0
    algs = set()
    for path in picked:
        target = os.path.join(out_dir, os.path.basename(path) + ".eml")
        with open(path, "rb") as f, open(target, "wb") as g:
            g.write(message_of(f.read()))
        r = subprocess.run([sys.executable, verifier, target, "--txt", txt], capture_output=True, text=True)
        results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        good = [x for x in results if x.get("ok") and x.get("d") == domain and x.get("s") == selector]
        if r.returncode == 0 and good:
            verified += 1
            algs.update(x.get("a") for x in good)
        else:
            errors.append(f"{target} does not verify (exit {r.returncode}): {r.stdout.strip() or r.stderr.strip()}")
    print(f"{len(files) - unsigned - wrong}/{len(files)} messages at the sink signed d={domain} s={selector};"
          f" {verified}/{len(picked)} sampled verify ({', '.join(sorted(a for a in algs if a)) or '-'},"
          f" python3-dkim)")
    if errors:
        print("\n".join(errors[:10]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
