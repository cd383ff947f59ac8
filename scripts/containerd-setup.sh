#!/bin/sh
# Starts the containerd the containerd end-to-end tests (tests/containerd.rs) create pods
# in through the CRI API, on a plain Debian machine (root, no systemd): Debian's containerd
# with the project's own config (CRI plugin, runc, cgroupfs, a CNI bridge on
# 169.254.79.0/24, apart from the test labs' 169.254.77.0/24, in a conf dir of its own;
# podman's /etc/cni/net.d is left alone), at containerd's default paths (/run/containerd,
# /var/lib/containerd) as a node has them. Then imports a pause image (catatonit in pause
# mode, USER 65535 as Kubernetes' pause) and the busybox test image (scripts/podman-setup.sh
# builds it), built here: no registry is reachable.
# Idempotent: a containerd already answering is used as it is.
set -eu
conf=/etc/meshleak-test
sock=/run/containerd/containerd.sock
pause=localhost/meshleak-pause:3.9
busybox=localhost/meshleak-busybox:e2e
mkdir -p "$conf/cni"
cat >"$conf/containerd.toml.new" <<CONF
# Written by meshleak's \`make setup\` (scripts/containerd-setup.sh).
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause"
  # The kubelet asks for oom_score_adj -998 for sandboxes; a machine that does not let
  # root lower it (a VM's sandbox without CAP_SYS_RESOURCE) refuses every pod without this.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$conf/cni"
CONF
cat >"$conf/10-meshleak.conflist.new" <<'CNI'
{
  "cniVersion": "0.4.0",
  "name": "meshleak-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "mlcni0",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "169.254.79.0/24" }]]
      }
    },
    { "type": "loopback" }
  ]
}
CNI
# Replaced only when changed: containerd reloads its CNI configs on every write. A change
# (a new version of this script) restarts our containerd with it, and removes the bridge
# the old network made: the plugin refuses a bridge that has another range's address.
changed=""
keep() {
	if cmp -s "$1.new" "$2"; then rm -f "$1.new"; else mv "$1.new" "$2" && changed=1; fi
}
keep "$conf/containerd.toml" "$conf/containerd.toml"
keep "$conf/10-meshleak.conflist" "$conf/cni/10-meshleak.conflist"
if [ -n "$changed" ]; then
	pkill -f "^containerd --config $conf/containerd.toml" 2>/dev/null && sleep 1 || true
	ip link del mlcni0 2>/dev/null || true
fi
if ! ctr --address "$sock" version >/dev/null 2>&1; then
	command -v containerd >/dev/null || { echo "containerd-setup: containerd is not installed (make setup)" >&2; exit 1; }
	mkdir -p /var/log
	setsid containerd --config "$conf/containerd.toml" >>/var/log/meshleak-containerd.log 2>&1 </dev/null &
	i=0
	until ctr --address "$sock" version >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -gt 100 ]; then
			echo "containerd-setup: containerd did not answer on $sock in 10 s; see /var/log/meshleak-containerd.log" >&2
			tail -20 /var/log/meshleak-containerd.log >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "setup: started containerd ($conf/containerd.toml)"
fi
have() { ctr --address "$sock" -n k8s.io images ls -q | grep -qx "$1"; }
import() {
	tar=$(mktemp)
	podman save -q --format docker-archive -o "$tar" "$1" >/dev/null
	ctr --address "$sock" -n k8s.io images import "$tar" >/dev/null
	rm -f "$tar"
	echo "setup: imported $1 into containerd"
}
if ! have "$pause"; then
	if ! podman image exists "$pause" 2>/dev/null; then
		root=$(mktemp -d)
		cp /usr/bin/catatonit "$root/pause"
		tar -C "$root" -c . | podman import -q -c 'ENTRYPOINT ["/pause", "-P"]' -c 'USER 65535:65535' - "$pause" >/dev/null
		rm -rf "$root"
	fi
	import "$pause"
fi
have "$busybox" || import "$busybox"
