#!/usr/bin/env bash
# Builds the helm (v4) binary from the Go module proxy into a cache outside the checkout, keyed by version. A second
# run is a no-op. Tests lint and render the chart in deploy/helm/cloudpilot with it (tests/deploy/).
#
#   scripts/build-helm.sh [VERSION]      # default v4.3.2
#   prints the directory holding the binary on its last line.
#
# A tiny wrapper module takes cmd/helm as a tool (`go get -tool`), so that its go.mod's requirements and go.sum
# pin every dependency; then `go build` writes the binary.
set -euo pipefail

version="${1:-${CLOUDPILOT_HELM_VERSION:-v4.3.2}}"
cache="${CLOUDPILOT_CACHE:-$HOME/.cache/cloudpilot}"
out="$cache/helm/$version"
pkg="helm.sh/helm/v4/cmd/helm"

if [ -x "$out/bin/helm" ]; then echo "$out/bin"; exit 0; fi

command -v go >/dev/null || { echo "go is required to build helm" >&2; exit 1; }
src="$out/src"
rm -rf "$src"
mkdir -p "$src" "$out/bin"
cd "$src"

go mod init cloudpilot.local/helm >&2
go get -tool "$pkg@$version" >&2 \
  || { echo "go get -tool $pkg@$version failed (GOPROXY=$(go env GOPROXY))" >&2; exit 1; }

echo "building helm $version" >&2
# `helm version` reports the release rather than "main" (helm's own Makefile sets the same variable).
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version"
# Build to a temporary name first, so that an interrupted build never leaves a binary that looks finished.
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/bin/helm.tmp" "$pkg"
mv "$out/bin/helm.tmp" "$out/bin/helm"
echo "$out/bin"
