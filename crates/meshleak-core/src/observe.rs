//! Connections observed between scans: what the agent's conntrack event follower needs to
//! know of each meshed namespace (from the last scan), and how it judges one new connection.
//! A connection that opens and closes between two scans is in no socket table a scan reads;
//! its conntrack NEW event says where its first packet went and whether the destination was
//! translated (the redirect to the proxy), and a socket lookup by its 5-tuple says whose it
//! is. Pure: the follower does the I/O.

use std::net::IpAddr;

use crate::schema::{ProcessVerdict, Report};
use crate::snapshot::{NetnsFacts, ProcessFacts, Snapshot, SocketFacts, SocketProto, Tracked};

/// CAP_SETUID: its holder may take any uid, the proxy's among them.
const CAP_SETUID: u32 = 7;

/// What the follower keeps of one meshed namespace, rebuilt after every scan.
#[derive(Clone, Debug)]
pub struct Watch {
    pub inode: u64,
    /// How to enter it: its bind mounts, else its processes' `ns/net` (to be checked
    /// against `inode` once entered: a pid may have been reused).
    pub paths: Vec<String>,
    pub pids: Vec<u32>,
    /// Its pod's Kubernetes namespace (the metrics label); `None`: in no known pod.
    pub namespace: Option<String>,
    /// `namespace/name` of its pod, for log lines.
    pub pod: Option<String>,
    /// Its own addresses: connections to them (and to loopback) stay in the pod.
    pub local: Vec<IpAddr>,
    /// Socket uids of the proxy's processes, as meshleak sees them (sock_diag reports
    /// uids so): their connections leave uncaptured by design.
    pub proxy_uids: Vec<u32>,
    /// Non-proxy processes by uid (as meshleak sees it), to name whose a socket is and to
    /// tell an app sharing the proxy's uid from the proxy.
    pub apps: Vec<App>,
    /// Proxy process pids, to tell whose a socket of a shared uid is.
    pub proxy_pids: Vec<u32>,
    /// Whether UDP counts: only where the mesh captures UDP (DNS capture) is an
    /// untranslated datagram flow an escape.
    pub udp_captured: bool,
    /// A mark-based mesh's proxy (ztunnel) opens its sockets in the pod from elsewhere,
    /// marked: a marked socket is the proxy's.
    pub proxy_by_mark: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub pid: u32,
    pub uid: u32,
    pub comm: String,
}

/// The namespaces to follow: those with a mesh, not the host's.
pub fn watches(snapshot: &Snapshot, report: &Report) -> Vec<Watch> {
    report
        .netns
        .iter()
        .filter(|r| r.mesh.is_some())
        .filter_map(|r| {
            let ns = snapshot.netns.iter().find(|n| n.inode == r.inode)?;
            (!ns.host).then(|| watch(ns, r))
        })
        .collect()
}

fn watch(ns: &NetnsFacts, r: &crate::schema::NetnsReport) -> Watch {
    let facts = |pid: u32| -> Option<&ProcessFacts> { ns.processes.iter().find(|p| p.pid == pid) };
    let (mut proxy_uids, mut proxy_pids, mut apps) = (Vec::new(), Vec::new(), Vec::new());
    let mut others: Vec<&ProcessFacts> = Vec::new();
    for p in r.processes.iter().filter(|p| p.lives_in.is_none()) {
        let Some(f) = facts(p.pid) else { continue };
        if p.verdict == ProcessVerdict::Proxy {
            proxy_pids.push(p.pid);
            if !proxy_uids.contains(&f.fsuid) {
                proxy_uids.push(f.fsuid);
            }
        } else {
            others.push(f);
        }
    }
    // An app is listed under every uid its sockets may carry, not only its fsuid now: its
    // real, effective and saved uids and its threads' (it switches among them at will), and
    // with CAP_SETUID the proxy's too. A socket of the proxy's uid that such an app may
    // hold is then told apart by descriptors, never taken for the proxy's by its uid.
    for f in others {
        let mut uids: Vec<u32> = std::iter::once(f.fsuid)
            .chain(f.all_uids.iter().copied())
            .chain(f.threads.iter().map(|t| t.fsuid))
            .collect();
        if f.has_cap(CAP_SETUID) {
            uids.extend(&proxy_uids);
        }
        uids.sort_unstable();
        uids.dedup();
        for uid in uids {
            apps.push(App {
                pid: f.pid,
                uid,
                comm: f.comm.clone(),
            });
        }
    }
    Watch {
        inode: ns.inode,
        paths: ns.paths.clone(),
        pids: ns.processes.iter().map(|p| p.pid).collect(),
        namespace: r.pod.as_ref().map(|p| p.namespace.clone()),
        pod: r
            .pod
            .as_ref()
            .map(|p| format!("{}/{}", p.namespace, p.name)),
        local: ns.local_addrs(),
        proxy_uids,
        apps,
        proxy_pids,
        udp_captured: r.capture.protocols.iter().any(|p| p == "udp"),
        proxy_by_mark: r
            .mesh
            .as_ref()
            .is_some_and(crate::meshes::Mesh::proxy_by_mark),
    }
}

impl Watch {
    /// Whether a new connection left the pod with its destination untranslated (or
    /// translated to a remote address): one the capture did not send to the proxy.
    /// Connections to the pod's own addresses, inbound ones and UDP where the mesh does
    /// not capture UDP are not.
    pub fn escaped(&self, t: &Tracked) -> bool {
        let local = |a: IpAddr| {
            let a = a.to_canonical();
            a.is_loopback() || a.is_unspecified() || self.local.contains(&a)
        };
        if t.proto == SocketProto::Udp && !self.udp_captured {
            return false;
        }
        local(t.src) && !local(t.dst) && !local(t.reply_src)
    }

    /// Whose a new connection's socket is. `socket`: the lookup by 5-tuple (`None`: it
    /// was closed before the lookup); `holds(pid, inode)`: whether the process holds the
    /// socket (read from its descriptors, asked only when the uid alone does not tell).
    pub fn owner(
        &self,
        socket: Option<&SocketFacts>,
        holds: &mut dyn FnMut(u32, u64) -> bool,
    ) -> Owner {
        let Some(s) = socket else {
            return Owner::Gone;
        };
        if self.proxy_by_mark && s.mark.is_some_and(|m| m != 0) {
            return Owner::Proxy;
        }
        let apps: Vec<&App> = self.apps.iter().filter(|a| a.uid == s.uid).collect();
        if self.proxy_uids.contains(&s.uid) {
            if apps.is_empty() {
                return Owner::Proxy;
            }
            // An app shares the proxy's uid: only the descriptors tell.
            if self.proxy_pids.iter().any(|p| holds(*p, s.inode)) {
                return Owner::Proxy;
            }
            return match apps.into_iter().find(|a| holds(a.pid, s.inode)) {
                Some(a) => Owner::App {
                    uid: s.uid,
                    app: Some(a.clone()),
                },
                None => Owner::Unknown { uid: s.uid },
            };
        }
        // Not the proxy's uid: an app's, maybe one started after the scan. Which
        // process holds it is asked only when it is told (see `holder`).
        Owner::App {
            uid: s.uid,
            app: None,
        }
    }

    /// The process the scan saw that holds an app's socket, for a log line: the one whose
    /// descriptors name it (apps of the socket's uid asked first), never one that merely
    /// shares its uid: a process started since the scan may hold it instead. `None`: none
    /// of them holds it.
    pub fn holder(
        &self,
        socket: &SocketFacts,
        holds: &mut dyn FnMut(u32, u64) -> bool,
    ) -> Option<App> {
        let (same, other): (Vec<&App>, Vec<&App>) =
            self.apps.iter().partition(|a| a.uid == socket.uid);
        same.into_iter()
            .chain(other)
            .find(|a| holds(a.pid, socket.inode))
            .cloned()
    }
}

/// Whose a new untranslated connection is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The proxy's: by design.
    Proxy,
    /// An app's: an observed bypass. `app`: the process, when the descriptors were read to
    /// tell it from the proxy (a shared uid) and one the scan saw holds it.
    App { uid: u32, app: Option<App> },
    /// Of the proxy's uid, held by none of the processes the scan saw (one started since,
    /// or the proxy's new one): whether it escaped is not known.
    Unknown { uid: u32 },
    /// Closed before it could be looked up: whose it was is not known.
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Watch {
        Watch {
            inode: 1,
            paths: Vec::new(),
            pids: Vec::new(),
            namespace: Some("shop".into()),
            pod: Some("shop/cart".into()),
            local: vec!["169.254.78.1".parse().unwrap()],
            proxy_uids: vec![1337],
            apps: vec![
                App {
                    pid: 10,
                    uid: 10001,
                    comm: "cart".into(),
                },
                App {
                    pid: 11,
                    uid: 1337,
                    comm: "sneaky".into(),
                },
            ],
            proxy_pids: vec![5],
            udp_captured: false,
            proxy_by_mark: false,
        }
    }

    fn tracked(dst: &str, reply: &str, proto: SocketProto) -> Tracked {
        Tracked {
            proto,
            src: "169.254.78.1".parse().unwrap(),
            sport: 40000,
            dst: dst.parse().unwrap(),
            dport: 80,
            reply_src: reply.parse().unwrap(),
            reply_sport: 80,
        }
    }

    #[test]
    fn only_untranslated_outbound_connections_escaped() {
        let w = watch();
        assert!(w.escaped(&tracked("169.254.78.2", "169.254.78.2", SocketProto::Tcp)));
        // Redirected to the proxy: the reply comes from loopback.
        assert!(!w.escaped(&tracked("169.254.78.2", "127.0.0.1", SocketProto::Tcp)));
        // DNAT to another remote address: out all the same.
        assert!(w.escaped(&tracked("169.254.78.2", "169.254.78.3", SocketProto::Tcp)));
        // To the pod itself.
        assert!(!w.escaped(&tracked("169.254.78.1", "169.254.78.1", SocketProto::Tcp)));
        // UDP where the mesh captures none of it leaves by design.
        assert!(!w.escaped(&tracked("169.254.78.2", "169.254.78.2", SocketProto::Udp)));
        // Inbound: from a remote peer to the pod.
        let inbound = Tracked {
            src: "169.254.78.2".parse().unwrap(),
            dst: "169.254.78.1".parse().unwrap(),
            reply_src: "169.254.78.1".parse().unwrap(),
            ..tracked("169.254.78.1", "169.254.78.1", SocketProto::Tcp)
        };
        assert!(!w.escaped(&inbound));
    }

    fn socket(uid: u32, inode: u64) -> SocketFacts {
        SocketFacts {
            proto: SocketProto::Tcp,
            local: "169.254.78.1".parse().unwrap(),
            local_port: 40000,
            remote: "169.254.78.2".parse().unwrap(),
            remote_port: 80,
            state: "syn-sent".into(),
            uid,
            inode,
            v6only: None,
            mark: None,
        }
    }

    #[test]
    fn the_uid_tells_whose_unless_an_app_shares_the_proxys() {
        let w = watch();
        let mut never = |_: u32, _: u64| false;
        assert_eq!(w.owner(None, &mut never), Owner::Gone);
        assert_eq!(
            w.owner(Some(&socket(10001, 7)), &mut never),
            Owner::App {
                uid: 10001,
                app: None
            }
        );
        // The one app of that uid is not named unless its descriptors hold the socket: a
        // process started since the scan may.
        assert_eq!(w.holder(&socket(10001, 7), &mut never), None);
        let mut by_cart = |pid: u32, inode: u64| pid == 10 && inode == 7;
        assert_eq!(
            w.holder(&socket(10001, 7), &mut by_cart).map(|a| a.pid),
            Some(10)
        );
        // A new process of another uid: still an app's.
        assert!(matches!(
            w.owner(Some(&socket(10002, 7)), &mut never),
            Owner::App {
                uid: 10002,
                app: None
            }
        ));
        // uid 1337 is shared by the proxy (pid 5) and an app (pid 11): descriptors decide.
        let mut by_proxy = |pid: u32, _: u64| pid == 5;
        assert_eq!(w.owner(Some(&socket(1337, 7)), &mut by_proxy), Owner::Proxy);
        let mut by_app = |pid: u32, _: u64| pid == 11;
        assert!(matches!(
            w.owner(Some(&socket(1337, 7)), &mut by_app),
            Owner::App { uid: 1337, app: Some(ref a) } if a.pid == 11
        ));
        assert_eq!(
            w.owner(Some(&socket(1337, 7)), &mut never),
            Owner::Unknown { uid: 1337 }
        );
        let mut only = watch();
        only.apps.retain(|a| a.uid != 1337);
        assert_eq!(only.owner(Some(&socket(1337, 7)), &mut never), Owner::Proxy);
    }
}
