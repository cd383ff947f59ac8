#!/usr/bin/env python3
"""Connection load for the follower benchmark, run inside one pod namespace (as root):
`connect_load.py PEER_IP RATE START SECONDS`: from the Unix time START on (every loader of
a run starts together), for SECONDS. Two threads, each making RATE/2 TCP connections a
second to PEER_IP:80 and holding each for 0.3 s: one with fsuid:fsgid 1337:1337 (the
proxy's identity, exempt: untranslated, the proxy's), one with 10001:1337 (an app with the
exempt gid: an untranslated bypass). Credentials are per thread, and a socket takes its
creator's fsuid/fsgid. Prints the connections made in the measured window (1 s to 21 s
after START)."""
import ctypes
import socket
import sys
import threading
import time

libc = ctypes.CDLL(None, use_errno=True)
peer, rate, begin, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
# Connections made inside the measured window (from 1 s after the start, for 20 s).
window = (1.0, 21.0)
made = [0, 0]


def load(i, uid, gid):
    libc.setfsgid(gid)
    libc.setfsuid(uid)
    every = 2.0 / rate
    held = []
    time.sleep(max(0.0, begin - time.time()))
    start = time.monotonic()
    sched, n = start, 0
    while time.monotonic() - start < seconds:
        s = socket.socket()
        try:
            s.connect((peer, 80))
            held.append((time.monotonic(), s))
            if window[0] <= time.monotonic() - start < window[1]:
                made[i] += 1
        except OSError:
            s.close()
        now = time.monotonic()
        while held and now - held[0][0] > 0.3:
            held.pop(0)[1].close()
        # A steady rate: a late connection is not made up for with a burst.
        n += 1
        delay = sched + n * every - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            sched, n = time.monotonic(), 0
    for _, s in held:
        s.close()


threads = [threading.Thread(target=load, args=(0, 1337, 1337)), threading.Thread(target=load, args=(1, 10001, 1337))]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sum(made))
