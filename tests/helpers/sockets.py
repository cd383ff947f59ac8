"""Builds, for real, a process whose sockets carry credentials other than its own.

Run inside the pod's network namespace:  sockets.py SCENARIO DST_IP DST_PORT [PEER_NS | PORT]
Prints `ready {json}` once the process is in place (its pid, the fds of its sockets, the
tids of its threads), waits for `go` on stdin, then connects every socket to DST and prints
`result {json}`: per socket or thread, the first line the far end answered (the pod's
proxy echoes `x`, the peer answers `B`). Then waits for stdin to close.
"""
import ctypes
import json
import os
import socket
import sys
import threading

libc = ctypes.CDLL(None, use_errno=True)
# x86_64 system call numbers: the raw calls change one thread only (glibc's wrappers
# change every thread of the process).
NR = {"setresuid": 117, "setresgid": 119, "setfsuid": 122, "setfsgid": 123,
      "unshare": 272, "gettid": 186, "setns": 308}
CLONE_FILES = 0x400
CLONE_NEWNET = 0x40000000


def raw(name, *args):
    rc = libc.syscall(NR[name], *[ctypes.c_long(a) for a in args])
    if rc < 0 and name not in ("setfsuid", "setfsgid"):
        raise OSError(ctypes.get_errno(), name)
    return rc


def drop_all(uid, gid):
    """Every thread, for good, no capabilities left."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


CAP_NET_ADMIN = 12


def capset(effective, permitted):
    """Sets this thread's effective and permitted capabilities (first 32 bits only)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)(effective, permitted, 0, 0, 0, 0)
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def tcp():
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def talk(s, dst):
    """Connects, says a line, and returns the first line the far end answers (the peer
    reads ours first: closing with data unread would reset the connection)."""
    try:
        s.settimeout(2)
        s.connect(dst)
        s.sendall(b"x\n")
        return s.recv(16).decode().strip() or "empty"
    except OSError as e:
        return "err:" + (e.strerror or str(e))


def main():
    scenario, dst = sys.argv[1], (sys.argv[2], int(sys.argv[3]))
    sockets = {}   # label -> socket object held now
    threads = {}   # label -> (tid, function run at go)
    results = {}
    held = {}      # label -> answer of a connection made before `ready`, kept open
    relay = {}     # label -> connected unix socket, spoken through at `go`
    kept = []
    go = threading.Event()

    if scenario == "drop":
        libc.setfsgid(1337)
        sockets["fsgid-1337"] = tcp()
        libc.setfsgid(0)
        libc.setfsuid(1337)
        sockets["fsuid-1337"] = tcp()
        libc.setfsuid(0)
        drop_all(10001, 10001)
    elif scenario == "fchown":
        # Made with fsgid 1337, then the inode's owner changed (fchown changes the inode,
        # never the file's credentials, which owner matches compare), then every id and
        # capability dropped; a setgid-1337 binary dropping its saved gid does the same.
        for label, owner in (("fchown-0", 0), ("fchown-10001", 10001)):
            libc.setfsgid(1337)
            s = tcp()
            libc.setfsgid(0)
            os.fchown(s.fileno(), owner, owner)
            sockets[label] = s
        os.setresgid(1337, 1337, 1337)
        libc.setfsgid(1337)
        sockets["setgid-binary"] = tcp()
        os.fchown(sockets["setgid-binary"].fileno(), 10001, 10001)
        drop_all(10001, 10001)
    elif scenario == "relay":
        # Connected to a path unix socket (argv[4]) whose listener may live in another
        # network namespace; at `go`, the line goes through it.
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.connect(sys.argv[4])
        relay["relay"] = u
        drop_all(10001, 10001)
    elif scenario == "bind":
        # Bound, not connected, to a source port given: the rules may exempt it. With
        # `listener`, a listener shares the port (SO_REUSEADDR on both).
        s = tcp()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(sys.argv[4])))
        sockets["bound"] = s
        if sys.argv[5:] == ["listener"]:
            l = tcp()
            l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            l.bind(("0.0.0.0", int(sys.argv[4])))
            l.listen()
            kept.append(l)
        drop_all(10001, 10001)
    elif scenario == "mark":
        # SO_MARK set while root (CAP_NET_ADMIN), then every id and capability dropped.
        s = tcp()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(sys.argv[4], 0))
        sockets["marked"] = s
        drop_all(10001, 10001)
    elif scenario == "fork":
        libc.setfsgid(1337)
        s = tcp()
        libc.setfsgid(0)
        child = os.fork()
        if child:
            drop_all(10001, 10001)
            s.close()
            os.waitpid(child, 0)
            return
        drop_all(10001, 10001)
        sockets["inherited-gid-1337"] = s
    elif scenario == "scm":
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child = os.fork()
        if child == 0:
            drop_all(1337, 1337)
            s = tcp()
            socket.send_fds(b, [b"s"], [s.fileno()])
            os._exit(0)
        drop_all(10001, 10001)
        _, fds, _, _ = socket.recv_fds(a, 16, 1)
        os.waitpid(child, 0)
        sockets["received-from-uid-1337"] = socket.socket(fileno=fds[0])
    elif scenario == "thread":
        ready = threading.Barrier(3)

        def switched():
            raw("setresgid", 1337, 1337, 1337)
            raw("setresuid", 10001, 10001, 10001)
            threads["thread-gid-1337"] = raw("gettid")
            ready.wait()
            go.wait()
            results["thread-gid-1337"] = talk(tcp(), dst)

        def private():
            raw("unshare", CLONE_FILES)
            raw("setresgid", 1337, 1337, 1337)
            s = tcp()
            raw("setresgid", 10001, 10001, 10001)
            raw("setresuid", 10001, 10001, 10001)
            threads["private-fd-table"] = raw("gettid")
            sockets_private = {"private-fd-gid-1337": s}
            results["fds"] = {k: v.fileno() for k, v in sockets_private.items()}
            ready.wait()
            go.wait()
            results["private-fd-gid-1337"] = talk(s, dst)

        for f in (switched, private):
            threading.Thread(target=f, daemon=True).start()
        ready.wait()
        # The leader thread alone (a raw call): the other threads keep theirs.
        raw("setresgid", 10001, 10001, 10001)
        raw("setresuid", 10001, 10001, 10001)
    elif scenario == "netns":
        here = os.open("/proc/self/ns/net", os.O_RDONLY)
        there = os.open("/run/netns/" + sys.argv[4], os.O_RDONLY)
        raw("setns", there, CLONE_NEWNET)
        sockets["made-in-peer-netns"] = tcp()
        raw("setns", here, CLONE_NEWNET)
        os.close(here)
        os.close(there)
        drop_all(10001, 10001)
    elif scenario == "visit":
        # Run in another namespace: a socket made in the pod's (argv[4]) with fsgid 1337,
        # held from here; with `connect`, connected at once and kept open.
        here = os.open("/proc/self/ns/net", os.O_RDONLY)
        there = os.open("/run/netns/" + sys.argv[4], os.O_RDONLY)
        raw("setns", there, CLONE_NEWNET)
        libc.setfsgid(1337)
        s = tcp()
        libc.setfsgid(0)
        raw("setns", here, CLONE_NEWNET)
        os.close(here)
        os.close(there)
        drop_all(10001, 10001)
        if sys.argv[5:] == ["connect"]:
            kept.append(s)
            held["held"] = talk(s, dst)
        else:
            sockets["made-in-pod-gid-1337"] = s
    elif scenario == "listen6":
        # Also listens where the proxy's port is, IPv6 only: no IPv4 capture reaches it.
        l = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind(("::", int(sys.argv[4])))
        l.listen()
        listening = l  # noqa: F841 (held open)
    elif scenario == "hold":
        # A connection made now and kept open; optionally through a socket created with
        # fsgid 1337 before dropping for good (and fchowned to 10001, to hide it).
        how = sys.argv[4] if len(sys.argv) > 4 else ""
        if how in ("gid-1337-then-drop", "gid-1337-fchown"):
            libc.setfsgid(1337)
            s = tcp()
            libc.setfsgid(0)
            if how == "gid-1337-fchown":
                os.fchown(s.fileno(), 10001, 10001)
            drop_all(10001, 10001)
        else:
            s = tcp()
        kept.append(s)
        held["held"] = talk(s, dst)
    elif scenario == "reuse":
        # Two sockets on one address and port (SO_REUSEADDR): one goes to DST, the other
        # to a listener in the pod, whose accepted socket has that address and port as peer.
        port = int(sys.argv[4])
        for label, to in (("escaped", dst), ("local", ("127.0.0.1", 8080))):
            s = tcp()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("169.254.78.1", port))
            kept.append(s)
            held[label] = talk(s, to)
    elif scenario == "prm-net-admin":
        # uid 10001 keeping CAP_NET_ADMIN in its permitted set only: not effective now.
        libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS
        os.setgroups([])
        os.setresgid(10001, 10001, 10001)
        os.setresuid(10001, 10001, 10001)
        capset(0, 1 << CAP_NET_ADMIN)
    elif scenario not in ("plain", "become-gid-1337"):
        sys.exit("unknown scenario " + scenario)

    fds = {k: s.fileno() for k, s in sockets.items()}
    fds.update(results.pop("fds", {}))
    fds.update({k: u.fileno() for k, u in relay.items()})
    print("ready " + json.dumps({"pid": os.getpid(), "fds": fds,
                                 "tids": {k: v for k, v in threads.items()},
                                 "held": held}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    go.set()
    if scenario == "become-gid-1337":
        # No capability needed: 1337 is already one of its real, effective or saved gids.
        os.setresgid(1337, 1337, 1337)
    if scenario == "prm-net-admin":
        # Raised with capset alone, then used: SO_MARK needs CAP_NET_ADMIN.
        capset(1 << CAP_NET_ADMIN, 1 << CAP_NET_ADMIN)
        try:
            tcp().setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 0x539)
            results["raised-net-admin"] = "B"
        except OSError:
            results["raised-net-admin"] = "x"
    results["new-socket"] = talk(tcp(), dst)
    for label, s in sockets.items():
        results[label] = talk(s, dst)
    for label, u in relay.items():
        u.settimeout(2)
        u.sendall(b"x\n")
        results[label] = u.recv(16).decode().strip() or "empty"
    while len(results) < 1 + len(sockets) + len(threads) + len(relay):
        threading.Event().wait(0.05)
    print("result " + json.dumps(results), flush=True)
    sys.stdin.read()


main()
