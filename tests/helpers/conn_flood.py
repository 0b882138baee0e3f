#!/usr/bin/env python3
"""Hostile clients for the p11ca resource tests (tests/cli/test_ca_limits.sh).

  conn_flood.py hold PORT N SECONDS SOURCE READYFILE
      Open N idle TCP connections to 127.0.0.1:PORT from address SOURCE,
      write READYFILE, keep them SECONDS, then print one line:
      "opened O failed F closed_by_server C closed_early E"
      (E: closed within the first 2 s after all were opened).
  conn_flood.py trickle PORT INTERVAL COUNT
      TLS connection, then a request whose headers arrive one byte every
      INTERVAL seconds, at most COUNT bytes.  Prints "closed after S s" when
      the server ends the connection, else "open after S s".

Loopback only; every loop is bounded; everything is closed at exit.
"""
import select
import socket
import ssl
import sys
import time


def closed(s):
    """The server ended the connection (EOF or reset), without blocking."""
    try:
        r, _, _ = select.select([s], [], [], 0)
        if not r:
            return False
        return s.recv(4096, socket.MSG_PEEK) == b""
    except OSError:
        return True


def hold(port, n, secs, source, ready):
    socks, failed = [], 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    with open(ready, "w") as f:
        f.write("ready\n")
    t0 = time.monotonic()
    done = set()
    early = 0
    while time.monotonic() - t0 < secs:
        for i, s in enumerate(socks):
            if i not in done and closed(s):
                done.add(i)
                if time.monotonic() - t0 < 2:
                    early += 1
        time.sleep(0.1)
    print("opened %d failed %d closed_by_server %d closed_early %d" % (len(socks), failed, len(done), early))
    for s in socks:
        s.close()


def trickle(port, interval, count):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a hostile client: no verification needed
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    t0 = time.monotonic()
    s.sendall(b"GET /root.crt HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    s.setblocking(False)
    for _ in range(count):
        time.sleep(interval)
        try:
            # drain what arrived (TLS 1.3 session tickets) without blocking;
            # b"" is the end of the stream
            while True:
                try:
                    if s.recv(4096) == b"":
                        raise OSError("eof")
                except (ssl.SSLWantReadError, BlockingIOError):
                    break
            s.send(b"a")
        except (OSError, ssl.SSLError):
            print("closed after %d s" % round(time.monotonic() - t0))
            s.close()
            return
    print("open after %d s" % round(time.monotonic() - t0))
    s.close()


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "hold":
        hold(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif len(sys.argv) == 5 and sys.argv[1] == "trickle":
        trickle(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
