"""Below netfilter: a hand-made TCP SYN sent from an AF_PACKET socket, and a sniffer that
sees it arrive.

  packet.py send IFACE DST_MAC SRC_IP DST_IP DPORT
      opens the packet socket, prints `ready`, waits for `go` on stdin, sends
      one SYN to DST_IP:DPORT, prints `sent`, then waits for stdin to close.
  packet.py sniff IFACE DPORT
      prints `ready`, then `B` when a SYN to DPORT arrives on IFACE (the raw receive sees
      frames before any rule of the receiving namespace), or `nothing` after 10 s.
"""
import socket
import struct
import sys

ETH_P_IP = 0x0800


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(src_mac, dst_mac, src, dst, dport):
    sport = 40404
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + tcp


def main():
    mode, iface = sys.argv[1], sys.argv[2]
    if mode == "send":
        dst_mac = bytes.fromhex(sys.argv[3].replace(":", ""))
        src, dst, dport = sys.argv[4], sys.argv[5], int(sys.argv[6])
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        s.bind((iface, ETH_P_IP))
        src_mac = s.getsockname()[4]
        print("ready", flush=True)
        if sys.stdin.readline().strip() == "go":
            s.send(syn(src_mac, dst_mac, src, dst, dport))
            print("sent", flush=True)
        sys.stdin.read()
    else:
        dport = int(sys.argv[3])
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        s.bind((iface, ETH_P_IP))
        s.settimeout(10)
        print("ready", flush=True)
        while True:
            try:
                frame = s.recv(2048)
            except socket.timeout:
                print("nothing", flush=True)
                return
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] == 6 and len(ip) >= ihl + 14:
                port, = struct.unpack("!H", ip[ihl + 2:ihl + 4])
                if port == dport and ip[ihl + 13] & 0x02:
                    print("B", flush=True)
                    return


main()
