#!/bin/sh
# Makes podman usable for the container end-to-end test on a plain Debian machine (root):
# runc as the runtime (crun is not installed), and ulimits the VM's hard limits allow
# (podman's defaults exceed them: "error setting rlimit type 7"). Then builds the test image from busybox-static
# (no registry is reachable), once.
set -eu
# A drop-in, so an existing containers.conf is left as it is and still gets these settings.
conf=/etc/containers/containers.conf.d/50-meshleak.conf
if [ ! -s "$conf" ]; then
	mkdir -p /etc/containers/containers.conf.d
	cat >"$conf" <<'CONF'
# Written by meshleak's `make setup` (scripts/podman-setup.sh).
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=1000:1000"]

[engine]
runtime = "runc"
CONF
fi
image=localhost/meshleak-busybox:e2e
if ! podman image exists "$image" 2>/dev/null; then
	root=$(mktemp -d)
	trap 'rm -rf "$root"' EXIT
	mkdir -p "$root/bin"
	cp /bin/busybox "$root/bin/busybox"
	for applet in sh sleep httpd nc cat id; do
		ln -s busybox "$root/bin/$applet"
	done
	tar -C "$root" -c . | podman import -q - "$image" >/dev/null
	echo "setup: built $image from busybox-static"
fi
