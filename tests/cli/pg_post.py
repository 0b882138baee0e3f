#!/usr/bin/env python3
"""Concurrent Caramel requests to several p11ca instances (test_ca_pg_*.sh).

  pg_post.py same CAFILE PORTS CSR...   each CSR POSTed to every port at the
                                        same moment (a barrier); prints
                                        "SHA PORT STATUS DETAIL" per answer
  pg_post.py get CAFILE PORTS SHA...    GET /SHA from every port; prints
                                        "SHA PORT STATUS SHA256(BODY)"
  pg_post.py load CAFILE PORTS SECONDS CSR...
                                        POSTs then GETs until SECONDS pass,
                                        round robin over ports, 4 threads;
                                        prints "SHA PORT STATUS" per answer
                                        (connection errors: status 0)
PORTS is comma separated.  Loopback only, every request bounded (10 s).
"""
import hashlib, http.client, json, ssl, sys, threading, time

def conn(ctx, port):
    return http.client.HTTPSConnection("localhost", int(port), context=ctx, timeout=10)

def request(ctx, port, method, path, body=None):
    c = conn(ctx, port)
    try:
        hdr = {"Content-Type": "application/pkcs10"} if body is not None else {}
        c.request(method, path, body=body, headers=hdr)
        r = c.getresponse()
        return r.status, r.read(), r.getheader("Retry-After")
    except (OSError, http.client.HTTPException):
        return 0, b"", None
    finally:
        c.close()

def detail(body):
    try:
        return str(json.loads(body).get("detail") or "-").replace(" ", "_")
    except (ValueError, AttributeError):
        return "-"

def main():
    mode, cafile, ports = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    ctx = ssl.create_default_context(cafile=cafile)
    out, lock = [], threading.Lock()
    if mode == "same":
        for f in sys.argv[4:]:
            body = open(f, "rb").read()
            sha = hashlib.sha256(body).hexdigest()
            barrier = threading.Barrier(len(ports))
            def one(port):
                barrier.wait(10)
                st, b, _ = request(ctx, port, "POST", "/" + sha, body)
                with lock:
                    out.append("%s %s %d %s" % (sha, port, st, detail(b)))
            ts = [threading.Thread(target=one, args=(p,)) for p in ports]
            for t in ts: t.start()
            for t in ts: t.join(30)
    elif mode == "get":
        for sha in sys.argv[4:]:
            for p in ports:
                st, b, _ = request(ctx, p, "GET", "/" + sha)
                out.append("%s %s %d %s" % (sha, p, st, hashlib.sha256(b).hexdigest()))
    elif mode == "load":
        end = time.time() + float(sys.argv[4])
        files = sys.argv[5:]
        idx = [0]
        def worker(w):
            n = w
            while time.time() < end:
                with lock:
                    if idx[0] >= len(files):
                        f = files[n % len(files)]
                        method = "GET"
                    else:
                        f = files[idx[0]]; idx[0] += 1
                        method = "POST"
                body = open(f, "rb").read()
                sha = hashlib.sha256(body).hexdigest()
                port = ports[n % len(ports)]
                st, b, ra = request(ctx, port, method, "/" + sha, body if method == "POST" else None)
                with lock:
                    out.append("%s %s %s %d %s %s" % (method, sha, port, st, ra or "-", detail(b) if st >= 400 else "-"))
                n += 1
                time.sleep(0.01)
        ts = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in ts: t.start()
        for t in ts: t.join(float(sys.argv[4]) + 30)
    print("\n".join(out))

main()
