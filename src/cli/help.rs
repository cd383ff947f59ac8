//! Each command's help epilogue: examples, then the exit statuses (the same everywhere).

use super::status::help;

pub(super) const SCAN: &str = concat!(
    "Examples:\n",
    "  meshleak scan                              every pod of this node, worst first\n",
    "  meshleak scan -n shop --bypassing          only what escapes, in namespace shop\n",
    "  meshleak scan --fail-on high -o json       for CI: JSON, status 1 on a high finding\n",
    "  meshleak scan --proc-root /host/proc --host-root /host   (in a container)\n",
    "\n",
    help!()
);

pub(super) const POD: &str = concat!(
    "Examples:\n",
    "  meshleak pod --pod shop/web-0\n",
    "  meshleak pod --pid 4242 -o wide\n",
    "  meshleak pod --netns /run/netns/cni-1234 -o yaml\n",
    "\n",
    help!()
);

pub(super) const TRACE: &str = concat!(
    "Examples:\n",
    "  meshleak trace --pid 4242 --dst 10.96.0.10:443\n",
    "  meshleak trace --rules save.txt --uid 10001 --gid 1337 --dst 10.0.0.5:80\n",
    "  meshleak trace --rules ruleset.nft --uid 1000 --gid 1000 --dst [fd00::5]:8080 --proto udp\n",
    "\n",
    help!()
);

pub(super) const ANALYZE: &str = concat!(
    "Examples:\n",
    "  meshleak analyze --rules iptables-save.txt --identity 10001:1337\n",
    "  meshleak analyze --rules nft-list-ruleset.txt --identity 1000:1000 -o yaml\n",
    "  meshleak analyze --snapshot node.json -n shop --severity high\n",
    "\n",
    help!(),
    "\nFor analyze, 1 is an identity whose verdict is bypass, partial or unmeshed."
);

pub(super) const CHECK: &str = concat!(
    "Examples:\n",
    "  meshleak check --mesh istio-1.28 deploy/                  every manifest in deploy/\n",
    "  helm template web ./chart | meshleak check --rules pod-iptables-save.txt -\n",
    "  meshleak check --snapshot node.json --like shop/web-0 k8s/ -o sarif > check.sarif\n",
    "  meshleak check --mesh istio-1.28 --image-user app:1.2=10001:10001 web.yaml\n",
    "\n",
    help!(),
    "\nFor check, 1 is also a container outside the mesh (hostNetwork, injection off) and a finding\n",
    "as severe as --fail-on; 4 is also no rules given (identities not judged)."
);

pub(super) const RULES: &str = concat!(
    "Examples:\n",
    "  meshleak rules --pid 4242\n",
    "  meshleak rules --netns /run/netns/cni-1234 -o json\n",
    "\n",
    help!()
);

pub(super) const COLLECT: &str = concat!(
    "Examples:\n",
    "  meshleak collect -f node.json              then elsewhere: meshleak analyze --snapshot node.json\n",
    "  meshleak collect -f - | gzip > node.json.gz\n",
    "\n",
    help!()
);

pub(super) const AGENT: &str = concat!(
    "Examples:\n",
    "  meshleak agent --listen :9808 --interval 60s\n",
    "  meshleak agent --log-format json --proc-root /host/proc --host-root /host\n",
    "\n",
    help!()
);
