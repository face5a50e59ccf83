#!/usr/bin/python3
"""Submits a campaign for bench/campaign_throttle.sh: N messages, one
recipient each (rK@dI.test, I = K mod D + 1, so every domain gets its share),
over S concurrent SMTP sessions to HOST:PORT, reusing each session.

  campaign_submit.py HOST PORT N D [S=10] [SIZE=2048]

Exits 1 (with the reply) if the server refuses anything.
"""
import smtplib
import sys
import threading


def main():
    host, port, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sessions = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    size = int(sys.argv[6]) if len(sys.argv) > 6 else 2048
    body = ("x" * 76 + "\r\n") * max(1, size // 78)
    errors = []

    def worker(w):
        try:
            with smtplib.SMTP(host, port, timeout=120) as s:
                s.ehlo("campaign.ours.test")
                for k in range(w, n, sessions):
                    rcpt = f"r{k}@d{k % d + 1}.test"
                    msg = (f"From: news@ours.test\r\nTo: {rcpt}\r\nSubject: campaign {k}\r\n"
                           f"Message-ID: <c{k}@ours.test>\r\n\r\n{body}")
                    s.sendmail("news@ours.test", [rcpt], msg)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"session {w}: {e!r}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
