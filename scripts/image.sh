#!/bin/sh
# Builds meshleak's image from the static binary `make image` built (profile `image`):
# the build context is a directory holding only that binary and the Containerfile, so no
# registry, network or Rust toolchain is needed inside. Tags localhost/meshleak:VERSION.
# With podman the image is reproducible (`--timestamp 0`: the same binary, the same digest).
set -eu
bin=${1:?usage: image.sh BINARY}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=localhost/meshleak:$version
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/meshleak"
cp Containerfile "$ctx/Containerfile"
if command -v podman >/dev/null 2>&1; then
	podman build -q --pull=never --timestamp 0 -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null
	echo "image: $tag $(podman image inspect --format '{{.Id}}' "$tag" | cut -c1-12)"
elif command -v docker >/dev/null 2>&1; then
	docker build -q -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null
	echo "image: $tag"
else
	echo "image: needs podman or docker" >&2
	exit 1
fi
