//! One nfnetlink dump request and its raw replies, shared by the nf_tables and conntrack
//! readers. Replies are split by their netlink headers only, so one message the decoders
//! cannot read never hides the end of a dump or an error.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// A netfilter netlink socket bound in the calling thread's namespace.
pub struct Nfnetlink(Socket);

impl Nfnetlink {
    pub fn open() -> io::Result<Nfnetlink> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Nfnetlink(socket))
    }

    /// Sends one GET dump request and returns each reply message (whole, with its netlink
    /// header) until NLMSG_DONE. A request the kernel answers with ENOENT (nothing of that
    /// kind) gives no messages.
    pub fn dump(
        &mut self,
        family: NetfilterProtoFamily,
        msg: impl Into<NetfilterMessageInner>,
    ) -> io::Result<Vec<Vec<u8>>> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(family, 0, 0),
                msg,
            )),
        );
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.0.send(&buf, 0)?;

        let mut out = Vec::new();
        let mut rx = vec![0u8; 1 << 16];
        loop {
            let n = self.0.recv(&mut &mut rx[..], 0)?;
            let mut at = 0;
            while at + NLMSG_HDRLEN <= n {
                let word =
                    |i: usize| u32::from_ne_bytes(rx[at + i..at + i + 4].try_into().unwrap());
                let len = word(0) as usize;
                let kind = u16::from_ne_bytes([rx[at + 4], rx[at + 5]]);
                if len < NLMSG_HDRLEN || at + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a netlink reply claims {len} bytes where {} remain", n - at),
                    ));
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = if len >= NLMSG_HDRLEN + 4 {
                            -(word(NLMSG_HDRLEN) as i32)
                        } else {
                            libc::EPROTO
                        };
                        return match code {
                            0 | libc::ENOENT => Ok(out),
                            _ => Err(io::Error::from_raw_os_error(code)),
                        };
                    }
                    _ => out.push(rx[at..at + len].to_vec()),
                }
                at += (len + 3) & !3;
            }
        }
    }
}
