#!/usr/bin/env python3
"""Time from Sentinel's first +switch-master to the agent's API showing it.

Usage: bench/switch_to_api.py SENTINEL_PORT,SENTINEL_PORT,... AGENT_URL RUNS

Against a running sentinel group watched by the agent (e.g. scripts/demo):
subscribes to +switch-master on every sentinel (an independent timestamp),
runs RUNS planned failovers (SENTINEL FAILOVER) one after another, and for
each measures the time from the first +switch-master any sentinel published
to /api/v1/failovers showing the `switched` mark (polled every 1 ms, which
bounds the resolution). Prints median, p90, min and max in milliseconds.
"""
import json, socket, subprocess, sys, threading, time, urllib.request

ports = [int(p) for p in sys.argv[1].split(",")]; sentinel_port = ports[0]; api = sys.argv[2]; runs = int(sys.argv[3])

def resp(*args):
    out = f"*{len(args)}\r\n"
    for a in args:
        out += f"${len(a)}\r\n{a}\r\n"
    return out.encode()

times = []
def listen(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(resp("PSUBSCRIBE", "+switch-master"))
    buf = b""
    while True:
        data = s.recv(65536)
        if not data:
            return
        t = time.time()
        buf += data
        while b"+switch-master\r\n" in buf:
            i = buf.index(b"+switch-master\r\n")
            times.append(t)
            buf = buf[i + 16:]
for p in ports:
    threading.Thread(target=listen, args=(p,), daemon=True).start()
time.sleep(0.5)

def failovers():
    with urllib.request.urlopen(api + "/api/v1/failovers?limit=1000") as r:
        return json.load(r)["failovers"]

results = []
for run in range(runs):
    before = len(failovers())
    sent = time.time()
    c = socket.create_connection(("127.0.0.1", sentinel_port))
    c.sendall(resp("SENTINEL", "FAILOVER", "mymaster")); c.recv(100); c.close()
    switched_visible = None
    while True:
        fs = failovers()
        now = time.time()
        if len(fs) > before:
            t = fs[0]
            if switched_visible is None and any(m["name"] == "switched" for m in t["marks"]):
                switched_visible = now
            if t["outcome"] is not None:
                break
        time.sleep(0.001)
    first = min(t for t in times if t > sent)
    results.append((switched_visible - first) * 1000)
    time.sleep(3)
results.sort()
print("runs=%d switch-to-API ms: median=%.1f p90=%.1f min=%.1f max=%.1f" % (len(results), results[len(results)//2], results[int(len(results)*0.9)-1], results[0], results[-1]))
