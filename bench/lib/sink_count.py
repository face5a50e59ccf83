#!/usr/bin/python3
"""Reads the running counter of Postfix's `smtp-sink -c` for bench/delivery.sh.

smtp-sink -c writes "sess=N quit=N mesg=N\\r" to stdout after every event;
mesg is the number of messages whose final dot it has answered with 250.

  sink_count.py FILE                       print the current mesg count
  sink_count.py FILE TARGET TIMEOUT_S      wait until mesg >= TARGET, then print
                                           "<unix time> <count>" (the moment the
                                           count was seen) and exit 0; exit 1 with
                                           "timeout <count>" if it never gets there

One process polls the tail of the file every 5 ms, so the waiting costs almost
no CPU and adds at most ~5 ms to the measured time.
"""
import os
import re
import sys
import time

MESG = re.compile(rb"mesg=(\d+)")


def count(path):
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 256))
            found = MESG.findall(f.read())
            return int(found[-1]) if found else 0
    except OSError:
        return 0


def main():
    path = sys.argv[1]
    if len(sys.argv) == 2:
        print(count(path))
        return 0
    target, timeout = int(sys.argv[2]), float(sys.argv[3])
    deadline = time.time() + timeout
    while True:
        n = count(path)
        now = time.time()
        if n >= target:
            print(f"{now:.6f} {n}")
            return 0
        if now > deadline:
            print(f"timeout {n}")
            return 1
        time.sleep(0.005)


if __name__ == "__main__":
    sys.exit(main())
