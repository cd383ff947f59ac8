#!/usr/bin/env python3
"""The agent between scans (`make bench`, root): how long each kind of change takes to be
reported, what the agent costs idle with many meshed pods, and what it costs under storms.

Usage: events.py BIN RAW PREFIX PODS
  BIN     the meshleak binary
  RAW     the benchmark's raw file (lines are appended: `latency KIND SECONDS`, `idle ...`,
          `storm ...`)
  PREFIX  the prefix of the namespaces this script makes (removed by bench.sh's cleanup too)
  PODS    meshed pods for the idle measurement (100 by the issue's target)

The agent runs as shipped (`--interval 60s`, all other options default), its JSON log lines
read with their time of arrival. Each change is made for real and timed from just before it
is made to the log line that reports it.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
import time

BIN, RAW, PREFIX, PODS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISTIO = open(os.path.join(ROOT, "testdata/istio-sidecar.rules")).read()
ISTIO_NFT = open(os.path.join(ROOT, "testdata/meshes/istio-sidecar-nft.nft")).read()
SAMPLES = int(os.environ.get("BENCH_EVENT_SAMPLES", "20"))
# Which parts run (all by default): latency, idle, storms (storms use idle's pods).
PARTS = os.environ.get("BENCH_EVENT_PARTS", "latency,idle,storms").split(",")
HZ = os.sysconf("SC_CLK_TCK")
made = []


def sh(*args, stdin=None, check=True):
    return subprocess.run(args, input=stdin, text=True, capture_output=True, check=check).stdout


def spawn(ns, uid, gid, *cmd):
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *cmd],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pod(name, loader="iptables-nft", proxy=True):
    ns = f"{PREFIX}-{name}"
    sh("ip", "netns", "add", ns)
    made.append(ns)
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    if loader == "nft":
        sh("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=ISTIO_NFT)
    elif loader:
        sh("ip", "netns", "exec", ns, f"{loader}-restore", stdin=ISTIO)
    if proxy:
        spawn(ns, 1337, 1337, "socat", "TCP-LISTEN:15001,reuseaddr,fork", "EXEC:/bin/cat")
    return ns


def remove(ns):
    for pid in sh("ip", "netns", "pids", ns, check=False).split():
        subprocess.run(["kill", "-9", pid], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if ns in made:
        made.remove(ns)


class Agent:
    def __init__(self, port):
        self.port = port
        self.proc = subprocess.Popen(
            [BIN, "agent", "--interval", "60s", "--log-format", "json",
             "--listen", f"127.0.0.1:{port}", "--report-listen", f"127.0.0.1:{port + 1}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        while not self._ready():
            time.sleep(0.1)
        time.sleep(1)

    def _ready(self):
        try:
            import urllib.request
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status == 200
        except Exception:
            return False

    def _read(self):
        for line in self.proc.stderr:
            try:
                v = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                self.lines.append((time.time(), v))
                self.cond.notify_all()

    def wait(self, since, want, timeout=10.0):
        """Seconds from `since` to the first line after it that satisfies `want`."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for at, v in self.lines:
                    if at >= since and want(v):
                        return at - since
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def ticks(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def hwm_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))

    def metric(self, name):
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def record(line):
    with open(RAW, "a") as f:
        f.write(line + "\n")


def inode(ns):
    return os.stat(f"/run/netns/{ns}").st_ino


def latencies(agent):
    """Each kind SAMPLES times: the seconds until the agent's log line."""
    shutil.copy("/bin/sleep", "/tmp/mlb-setgid-sleep")
    os.chown("/tmp/mlb-setgid-sleep", 0, 1337)
    os.chmod("/tmp/mlb-setgid-sleep", 0o2755)
    peer = f"{PREFIX}-lpeer"
    for i in range(SAMPLES):
        # A new pod whose app has the proxy's gid.
        t = time.time()
        ns = pod(f"lnew{i}")
        app = spawn(ns, 10001, 1337, "sleep", "600")
        record(f"latency new-pod {agent.wait(t, lambda v: v.get('msg') == 'finding new' and v.get('pid') == app.pid)}")
        # A rule inserted by iptables-nft, then one by nft (into a native pod).
        ino = inode(ns)
        t = time.time()
        sh("ip", "netns", "exec", ns, "iptables-nft", "-t", "nat", "-I", "ISTIO_OUTPUT", "1", "-m", "owner",
           "--uid-owner", "10002", "-j", "RETURN")
        record(f"latency rule-iptables-nft {agent.wait(t, lambda v: v.get('msg') == 'rules changed' and v.get('netns') == ino)}")
        # A root process that drops to 10001:1337.
        drop = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-c",
             "import os, sys, time\ntime.sleep(0.5)\nprint(time.time(), flush=True)\n"
             "os.setgroups([]); os.setgid(1337); os.setuid(10001)\ntime.sleep(600)"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        t = float(drop.stdout.readline())
        record(f"latency id-change {agent.wait(t, lambda v: v.get('msg') == 'finding new' and v.get('pid') == drop.pid)}")
        # An exec of a setgid-1337 binary.
        t = time.time()
        sg = spawn(ns, 10001, 10001, "/tmp/mlb-setgid-sleep", "600")
        record(f"latency setgid-exec {agent.wait(t, lambda v: v.get('msg') == 'finding new' and v.get('pid') == sg.pid)}")
        remove(ns)
        nsn = pod(f"lnft{i}", loader="nft")
        spawn(nsn, 10001, 10001, "sleep", "600")
        time.sleep(0.5)
        ino = inode(nsn)
        t = time.time()
        sh("ip", "netns", "exec", nsn, "nft", "insert", "rule", "inet", "istio-proxy-nat", "istio-output",
           "meta", "skuid", "10002", "return")
        record(f"latency rule-nft {agent.wait(t, lambda v: v.get('msg') == 'rules changed' and v.get('netns') == ino)}")
        remove(nsn)
        nsl = pod(f"lleg{i}", loader="iptables-legacy")
        time.sleep(0.5)
        ino = inode(nsl)
        t = time.time()
        sh("ip", "netns", "exec", nsl, "iptables-legacy", "-t", "nat", "-I", "ISTIO_OUTPUT", "1", "-m", "owner",
           "--uid-owner", "10002", "-j", "RETURN")
        record(f"latency rule-legacy {agent.wait(t, lambda v: v.get('msg') == 'rules changed' and v.get('netns') == ino)}")
        remove(nsl)
    # One connection that bypasses, from a pod that exists for it.
    sh("ip", "netns", "add", peer)
    made.append(peer)
    sh("ip", "-n", peer, "link", "set", "lo", "up")
    server = subprocess.Popen(["ip", "netns", "exec", peer, "socat", "TCP-LISTEN:80,reuseaddr,fork", "SYSTEM:echo B"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for i in range(SAMPLES):
        ns = pod(f"lconn{i}")
        a, b = f"{PREFIX}c{i}a", f"{PREFIX}c{i}b"
        sh("ip", "link", "add", a, "netns", ns, "type", "veth", "peer", "name", b, "netns", peer)
        sh("ip", "-n", ns, "addr", "add", "169.254.99.1/24", "dev", a)
        sh("ip", "-n", ns, "link", "set", a, "up")
        sh("ip", "-n", peer, "addr", "add", "169.254.99.2/24", "dev", b)
        sh("ip", "-n", peer, "link", "set", b, "up")
        time.sleep(1)
        ino = inode(ns)
        t = time.time()
        subprocess.run(["ip", "netns", "exec", ns, "setpriv", "--reuid=10001", "--regid=1337", "--clear-groups",
                        "socat", "-T1", "-", "TCP:169.254.99.2:80"], input="x\n", text=True, capture_output=True)
        record(f"latency connection {agent.wait(t, lambda v: v.get('msg') == 'observed bypass' and v.get('netns') == ino)}")
        remove(ns)
    server.kill()
    remove(peer)
    os.remove("/tmp/mlb-setgid-sleep")


def idle(port):
    """CPU over two minutes with PODS meshed pods and nothing happening (one scan falls in
    it, as on a node), and the peak RSS."""
    pods = [pod(f"idle{i}", loader=("iptables-nft", "iptables-legacy", "nft")[i % 3]) for i in range(PODS)]
    for ns in pods:
        spawn(ns, 10001, 10001, "sleep", "100000")
    time.sleep(2)
    agent = Agent(port)
    time.sleep(5)
    if "idle" in PARTS:
        a = agent.ticks()
        time.sleep(120)
        b = agent.ticks()
        record(f"idle {PODS} {b - a} 120 {agent.hwm_kib()} {HZ}")
    return agent, pods


def storm(agent, kind, seconds, start):
    """Runs a storm for `seconds` (start() returns the processes making it); the agent's CPU
    and peak RSS over it, events dropped, re-reads."""
    d0, r0 = agent.metric("meshleak_source_overruns_total"), agent.metric("meshleak_rescans_total")
    s0 = agent.metric("meshleak_scans_total")
    a = agent.ticks()
    t = time.time()
    procs, count = start()
    time.sleep(seconds)
    b = agent.ticks()
    elapsed = time.time() - t
    for p in procs:
        p.kill()
        p.wait()
    done = count()
    record(f"storm {kind} {done / elapsed:.0f} {b - a} {elapsed:.1f} {agent.hwm_kib()} "
           f"{agent.metric('meshleak_source_overruns_total') - d0:.0f} {agent.metric('meshleak_rescans_total') - r0:.0f} "
           f"{agent.metric('meshleak_scans_total') - s0:.0f} {HZ}")


def storms(agent, pods):
    target = pods[0]
    counter = "/tmp/mlb-storm-count"

    def count():
        try:
            return int(open(counter).read() or 0)
        except (OSError, ValueError):
            return 0

    # Namespaces created and deleted: 1,000 in a minute.
    def namespaces():
        script = (f"import subprocess, time\nn = 0\nstart = time.time()\n"
                  f"while n < 1000 and time.time() < start + 60:\n"
                  f"    ns = '{PREFIX}-churn%d' % n\n"
                  f"    subprocess.run(['ip', 'netns', 'add', ns])\n"
                  f"    subprocess.run(['ip', 'netns', 'del', ns])\n"
                  f"    n += 1\n    open('{counter}', 'w').write(str(n))\n"
                  f"    time.sleep(max(0, start + n * 0.06 - time.time()))\n")
        return [subprocess.Popen(["python3", "-c", script])], count
    open(counter, "w").write("0")
    storm(agent, "namespaces", 60, namespaces)
    # Execs in a meshed pod, as fast as this machine makes them (the issue: 10,000 a second).
    def execs():
        script = ("import os, sys\nn = 0\nwhile True:\n    pid = os.fork()\n"
                  "    if pid == 0:\n        os.execv('/bin/true', ['true'])\n"
                  f"    os.waitpid(pid, 0)\n    n += 1\n    if n % 500 == 0: open('{counter}', 'w').write(str(n))\n")
        return [spawn(target, 10001, 10001, "python3", "-c", script) for _ in range(2)], lambda: 2 * count()
    open(counter, "w").write("0")
    os.chmod(counter, 0o666)
    storm(agent, "execs", 30, execs)
    # A process changing its ids in a loop (setresuid, keeping its saved root).
    def ids():
        script = ("import os\nn = 0\nwhile True:\n    os.setresgid(1337, 1337, 0); os.setresgid(0, 0, 0)\n"
                  f"    n += 2\n    if n % 1000 == 0: open('{counter}', 'w').write(str(n))\n")
        return [subprocess.Popen(["ip", "netns", "exec", target, "python3", "-c", script])], count
    open(counter, "w").write("0")
    storm(agent, "id-changes", 30, ids)
    # nf_tables commits in a meshed pod, back to back.
    def commits():
        rule = f"add table inet mlbstorm\nflush table inet mlbstorm\nadd chain inet mlbstorm c\nadd rule inet mlbstorm c counter\n"
        script = (f"import subprocess\nn = 0\nwhile True:\n"
                  f"    subprocess.run(['nft', '-f', '-'], input={rule!r}, text=True)\n"
                  f"    n += 1\n    open('{counter}', 'w').write(str(n))\n")
        return [subprocess.Popen(["ip", "netns", "exec", target, "python3", "-c", script])], count
    open(counter, "w").write("0")
    storm(agent, "commits", 30, commits)
    os.remove(counter)


try:
    if "latency" in PARTS:
        agent = Agent(19828)
        latencies(agent)
        agent.stop()
    if "idle" in PARTS or "storms" in PARTS:
        agent, pods = idle(19838)
        if "storms" in PARTS:
            storms(agent, pods)
        agent.stop()
finally:
    for ns in list(made):
        remove(ns)
