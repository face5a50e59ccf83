#!/usr/bin/python3
"""Waits for a campaign to be delivered, for bench/campaign_throttle.sh.

  campaign_wait.py TARGET TIMEOUT_S PID THROTTLE_STATS SINK_OUT...

Every 0.5 s: sums the messages received (the `mesg=` counter of each
`smtp-sink -c` output file, plus "accepted" of throttle_mx.py's stats file)
and the memory (PSS, from smaps_rollup) of PID and all its descendants, keeping the
peak. Stops when the sum reaches TARGET or TIMEOUT_S passes, and prints one
JSON line: {"done": bool, "t": unix time, "delivered", "peak_rss_kb", plus
the throttling host's stats}. A progress line goes to stderr every 60 s.
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


def mx_stats(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


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


def rss_kb(pid):
    """Proportional set size (shared pages divided among their users) of the tree."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def main():
    target, timeout, pid, stats = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    sinks = sys.argv[5:]
    start = time.time()
    peak = 0
    last_note = start
    while True:
        now = time.time()
        st = mx_stats(stats)
        got = sum(sink_count(s) for s in sinks) + st.get("accepted", 0)
        peak = max(peak, rss_kb(pid))
        done = got >= target
        if done or now - start > timeout:
            print(json.dumps({"done": done, "t": now, "delivered": got, "peak_rss_kb": peak, **st}))
            return 0 if done else 1
        if now - last_note >= 60:
            last_note = now
            print(f"  {now - start:.0f}s: {got}/{target} delivered, {st.get('throttled', 0)} throttle replies",
                  file=sys.stderr, flush=True)
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
