#!/bin/sh
# Builds meshleak's images from the static binaries `make image` built (profile `image`),
# one per platform: the build context is a directory holding only those binaries and the
# Containerfile, so no registry, network, emulator or Rust toolchain is needed inside.
#   localhost/meshleak:VERSION-amd64, localhost/meshleak:VERSION-arm64: each platform's image;
#   localhost/meshleak:VERSION: the amd64 one again, what this (amd64) machine runs;
#   OCI_DIR: the multi-arch image (an OCI image index of both) as an OCI layout, tag VERSION,
#   what is pushed: `skopeo copy --all oci:OCI_DIR:VERSION docker://REGISTRY/meshleak:VERSION`.
# The index is made by a podman manifest list that lives only while it is pushed to OCI_DIR:
# with Debian's podman 4.3, a manifest list built locally makes `podman images` fail for
# as long as it is in local storage. Reproducible (`--timestamp 0`): the same binaries, the
# same digests, the index's included.
set -eu
usage="usage: image.sh AMD64_BINARY ARM64_BINARY OCI_DIR"
amd64=${1:?$usage}
arm64=${2:?$usage}
oci=${3:?$usage}
command -v podman >/dev/null 2>&1 || {
	echo "image: needs podman (\`make setup\` installs it)" >&2
	exit 1
}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=localhost/meshleak:$version
list=$tag-index
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"; podman manifest rm "$list" >/dev/null 2>&1 || true' EXIT
cp "$amd64" "$ctx/meshleak-amd64"
cp "$arm64" "$ctx/meshleak-arm64"
cp Containerfile "$ctx/Containerfile"
for arch in amd64 arm64; do
	podman build -q --pull=never --timestamp 0 --platform "linux/$arch" --build-arg "TARGETARCH=$arch" \
		-t "$tag-$arch" -f "$ctx/Containerfile" "$ctx" >/dev/null
	echo "image: $tag-$arch $(podman image inspect --format '{{.Os}}/{{.Architecture}} {{.Digest}}' "$tag-$arch")"
done
podman tag "$tag-amd64" "$tag"
echo "image: $tag = $tag-amd64"
# A list left by a failed run would make `manifest create` refuse the name.
podman manifest rm "$list" >/dev/null 2>&1 || true
podman manifest create "$list" >/dev/null
for arch in amd64 arm64; do
	podman manifest add "$list" "containers-storage:$tag-$arch" >/dev/null
done
rm -rf "$oci"
mkdir -p "$(dirname "$oci")"
podman manifest push -q --rm --format oci --digestfile "$ctx/digest" "$list" "oci:$oci:$version"
echo "image: $oci (oci:$oci:$version, linux/amd64 + linux/arm64) index $(cat "$ctx/digest")"
