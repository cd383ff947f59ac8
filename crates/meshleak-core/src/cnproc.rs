//! The proc connector (NETLINK_CONNECTOR, `CN_IDX_PROC`): the subscription request and the
//! events, decoded by meshleak itself with the layouts of `linux/connector.h` and
//! `linux/cn_proc.h`. The kernel sends a process's fork, exec and id changes (per thread)
//! as they happen, but only to a listener in the initial user and PID namespaces; pids are
//! as that PID namespace numbers them. Pure: the agent does the I/O.

use crate::nlmsg::NLMSG_HDRLEN;

/// `CN_IDX_PROC`, `CN_VAL_PROC`: the proc connector's id, and the group to bind.
pub const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `struct cn_msg` without its data: id (idx, val), seq, ack, len, flags.
const CN_MSG_LEN: usize = 20;
/// `PROC_CN_MCAST_LISTEN`.
const MCAST_LISTEN: u32 = 1;
/// NLMSG_DONE: the netlink type every connector message carries.
const NLMSG_DONE: u16 = 3;
/// Where `proc_event.event_data` starts: what (4), cpu (4), timestamp_ns (8).
const EVENT_DATA: usize = 16;

// enum what.
const NONE: u32 = 0;
const FORK: u32 = 0x1;
const EXEC: u32 = 0x2;
const UID: u32 = 0x4;
const GID: u32 = 0x40;

/// One event that may change a verdict. Thread-level events name the thread (`pid`) and
/// its process (`tgid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// A new task: a process when `pid == tgid`, else a thread of `tgid`.
    Fork { parent: u32, pid: u32, tgid: u32 },
    /// A process ran a new program (a set-id binary may change its ids).
    Exec { pid: u32, tgid: u32 },
    /// A thread's real or effective uid changed, or its fsuid (the event then repeats
    /// the real and effective ones): `ruid`, `euid` as the event carries them.
    Uid {
        pid: u32,
        tgid: u32,
        ruid: u32,
        euid: u32,
    },
    /// The same for gids.
    Gid {
        pid: u32,
        tgid: u32,
        rgid: u32,
        egid: u32,
    },
}

impl ProcEvent {
    /// The process (thread group) the event is about: for a fork, the new one.
    pub fn process(&self) -> u32 {
        match *self {
            ProcEvent::Fork { tgid, .. }
            | ProcEvent::Exec { tgid, .. }
            | ProcEvent::Uid { tgid, .. }
            | ProcEvent::Gid { tgid, .. } => tgid,
        }
    }

    /// The event's kind as logs and metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcEvent::Fork { .. } => "fork",
            ProcEvent::Exec { .. } => "exec",
            ProcEvent::Uid { .. } => "uid",
            ProcEvent::Gid { .. } => "gid",
        }
    }
}

/// The message that subscribes a connector socket (bound to group [`CN_IDX_PROC`]) to the
/// events: `PROC_CN_MCAST_LISTEN` in a `cn_msg`.
pub fn listen_request() -> Vec<u8> {
    let mut cn = Vec::with_capacity(CN_MSG_LEN + 4);
    cn.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    cn.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    cn.extend_from_slice(&0u32.to_ne_bytes()); // seq
    cn.extend_from_slice(&0u32.to_ne_bytes()); // ack
    cn.extend_from_slice(&4u16.to_ne_bytes()); // len
    cn.extend_from_slice(&0u16.to_ne_bytes()); // flags
    cn.extend_from_slice(&MCAST_LISTEN.to_ne_bytes());
    crate::nlmsg::request(NLMSG_DONE, 0, &cn)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The kernel's answer to [`listen_request`] (`PROC_EVENT_NONE` with an error number, 0
/// when subscribed). It is sent only when the subscription was taken: a listener outside the
/// initial user or PID namespace gets no answer at all.
pub fn ack(msg: &[u8]) -> Option<u32> {
    let ev = event(msg)?;
    (u32_at(ev, 0)? == NONE)
        .then(|| u32_at(ev, EVENT_DATA))
        .flatten()
}

/// The `proc_event` in a whole netlink message, if it is the proc connector's.
fn event(msg: &[u8]) -> Option<&[u8]> {
    let cn = msg.get(NLMSG_HDRLEN..)?;
    if u32_at(cn, 0)? != CN_IDX_PROC || u32_at(cn, 4)? != CN_VAL_PROC {
        return None;
    }
    let len = u16::from_ne_bytes(cn.get(16..18)?.try_into().ok()?) as usize;
    cn.get(CN_MSG_LEN..CN_MSG_LEN + len)
}

/// One whole netlink message as the event it carries; `None` for what is not a proc
/// connector event meshleak follows (exit, comm, sid, ptrace, the subscription's ack) and
/// for what is too short to be one.
pub fn decode(msg: &[u8]) -> Option<ProcEvent> {
    let ev = event(msg)?;
    let data = |i: usize| u32_at(ev, EVENT_DATA + 4 * i);
    Some(match u32_at(ev, 0)? {
        FORK => ProcEvent::Fork {
            parent: data(1)?,
            pid: data(2)?,
            tgid: data(3)?,
        },
        EXEC => ProcEvent::Exec {
            pid: data(0)?,
            tgid: data(1)?,
        },
        UID => ProcEvent::Uid {
            pid: data(0)?,
            tgid: data(1)?,
            ruid: data(2)?,
            euid: data(3)?,
        },
        GID => ProcEvent::Gid {
            pid: data(0)?,
            tgid: data(1)?,
            rgid: data(2)?,
            egid: data(3)?,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the kernel sends one: `what` and the event's words.
    fn event(what: u32, words: &[u32]) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&what.to_ne_bytes());
        ev.extend_from_slice(&1u32.to_ne_bytes()); // cpu
        ev.extend_from_slice(&123u64.to_ne_bytes()); // timestamp
        for w in words {
            ev.extend_from_slice(&w.to_ne_bytes());
        }
        let mut cn = Vec::new();
        cn.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        cn.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        cn.extend_from_slice(&[0; 8]);
        cn.extend_from_slice(&(ev.len() as u16).to_ne_bytes());
        cn.extend_from_slice(&[0; 2]);
        cn.extend_from_slice(&ev);
        crate::nlmsg::request(NLMSG_DONE, 0, &cn)
    }

    #[test]
    fn events_decode_by_their_kind() {
        assert_eq!(
            decode(&event(FORK, &[10, 10, 12, 12])),
            Some(ProcEvent::Fork {
                parent: 10,
                pid: 12,
                tgid: 12
            })
        );
        assert_eq!(
            decode(&event(EXEC, &[12, 12])),
            Some(ProcEvent::Exec { pid: 12, tgid: 12 })
        );
        // A thread of 12 drops to uid 10001.
        let uid = decode(&event(UID, &[13, 12, 0, 10001])).unwrap();
        assert_eq!(
            uid,
            ProcEvent::Uid {
                pid: 13,
                tgid: 12,
                ruid: 0,
                euid: 10001
            }
        );
        assert_eq!(uid.process(), 12);
        assert_eq!(
            decode(&event(GID, &[12, 12, 1337, 1337])).map(|e| e.kind()),
            Some("gid")
        );
        // Exit events, and what is cut short, are not followed.
        assert_eq!(decode(&event(0x8000_0000, &[12, 12, 0, 0, 1, 1])), None);
        let cut = event(EXEC, &[12]);
        assert_eq!(decode(&cut), None);
        assert_eq!(decode(&cut[..20]), None);
        assert_eq!(ack(&event(NONE, &[0])), Some(0));
        assert_eq!(ack(&event(EXEC, &[12, 12])), None);
        assert_eq!(decode(&event(NONE, &[0])), None);
    }

    #[test]
    fn the_subscription_is_one_listen_op() {
        let m = listen_request();
        assert_eq!(m.len(), NLMSG_HDRLEN + CN_MSG_LEN + 4);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), NLMSG_DONE);
        assert_eq!(u32_at(&m, NLMSG_HDRLEN + CN_MSG_LEN), Some(MCAST_LISTEN));
    }
}
