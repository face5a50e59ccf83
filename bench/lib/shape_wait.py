#!/usr/bin/python3
"""Waits for a campaign to reach the sinks, for bench/campaign_shape.sh.

  shape_wait.py TARGET TIMEOUT_S PID SINK_OUT...

Polls the `mesg=` counter of each `smtp-sink -c` output file every 10 ms and
stops when their sum reaches TARGET (or TIMEOUT_S passes). Every 0.5 s it
also samples the memory of PID and all its descendants, keeping the peaks of
the summed RSS (VmRSS of every process: shared pages count once per process)
and of the summed PSS (smaps_rollup: shared pages divided among their users),
and the most processes seen. Prints one JSON line:
  {"done": bool, "t": unix time the count was seen, "delivered": N,
   "per_sink": [..], "peak_rss_kb", "peak_pss_kb", "peak_procs"}
and exits 0 when done, 1 on timeout. A progress line goes to stderr every 30 s.
"""
import json
import os
import re
import sys
import time

MESG = re.compile(rb"mesg=(\d+)")


def sink_count(path):
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 256))
            found = MESG.findall(f.read())
            return int(found[-1]) if found else 0
    except OSError:
        return 0


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def field_kb(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pid):
    procs = tree(pid)
    rss = sum(field_kb(f"/proc/{p}/status", "VmRSS:") for p in procs)
    pss = sum(field_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in procs)
    return rss, pss, len(procs)


def main():
    target, timeout, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    sinks = sys.argv[4:]
    start = time.time()
    peak_rss = peak_pss = peak_procs = 0
    next_mem = start
    last_note = start
    while True:
        now = time.time()
        counts = [sink_count(s) for s in sinks]
        got = sum(counts)
        done = got >= target
        if now >= next_mem or done:
            rss, pss, procs = memory(pid)
            peak_rss, peak_pss, peak_procs = max(peak_rss, rss), max(peak_pss, pss), max(peak_procs, procs)
            next_mem = now + 0.5
        if done or now - start > timeout:
            print(json.dumps({"done": done, "t": now, "delivered": got, "per_sink": counts,
                              "peak_rss_kb": peak_rss, "peak_pss_kb": peak_pss, "peak_procs": peak_procs}))
            return 0 if done else 1
        if now - last_note >= 30:
            last_note = now
            print(f"  {now - start:.0f}s: {got}/{target} at the sinks {counts}", file=sys.stderr, flush=True)
        time.sleep(0.01)


if __name__ == "__main__":
    sys.exit(main())
