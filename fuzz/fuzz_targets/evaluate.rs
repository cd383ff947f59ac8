//! Whatever parses must evaluate and analyse without panicking or hanging (offline dumps
//! can hold jump loops the kernel would refuse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshleak::eval::{trace, Flow, Identity, SourcePort};
use meshleak::model::IpVersion;
use meshleak::parse::{combine, parse_dump, Hints};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(tables) = parse_dump("fuzz.rules", text, Hints::default()) else { return };
    let Ok(rules) = combine(vec![tables]) else { return };
    for (dst, port, uid) in [("10.0.0.1", 80, 1337), ("127.0.0.1", 15001, 0), ("10.96.0.10", 53, 10001)] {
        let flow = Flow {
            version: IpVersion::V4,
            proto: if port == 53 { 17 } else { 6 },
            src: None,
            dst: dst.parse().unwrap(),
            sport: SourcePort::DEFAULT_EPHEMERAL,
            dport: port,
            oif: "eth0".into(),
            identity: Identity { uid, gid: uid, groups: vec![1337] },
            mark: 0,
            local: vec![],
        };
        let _ = trace(&rules, &flow);
    }
    let _ = meshleak::analyze::analyze(&rules, &[Identity { uid: 1337, gid: 1337, groups: vec![] }]);
});
