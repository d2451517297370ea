#!/usr/bin/env bash
# Builds the Jaeger (v2, all-in-one) binary from the Go module proxy into a cache outside the checkout, keyed by
# version. A second run is a no-op. Tests run it with in-memory storage and OTLP in (tests/tracing/harness.py).
#
#   scripts/build-jaeger.sh [VERSION]      # default v1.75.0 (newer versions are not approved releases)
#   prints the directory holding the binary on its last line.
#
# A tiny wrapper module takes cmd/jaeger as a tool (`go get -tool`), so that its go.mod's requirements and
# go.sum pin every dependency; then `go build` writes the binary.
set -euo pipefail

version="${1:-${CLOUDPILOT_JAEGER_VERSION:-v1.75.0}}"
cache="${CLOUDPILOT_CACHE:-$HOME/.cache/cloudpilot}"
out="$cache/jaeger/$version"
pkg="github.com/jaegertracing/jaeger/cmd/jaeger"

if [ -x "$out/bin/jaeger" ]; then echo "$out/bin"; exit 0; fi

command -v go >/dev/null || { echo "go is required to build Jaeger" >&2; exit 1; }
src="$out/src"
rm -rf "$src"
mkdir -p "$src" "$out/bin"
cd "$src"

go mod init cloudpilot.local/jaeger >&2
go get -tool "$pkg@$version" >&2 \
  || { echo "go get -tool $pkg@$version failed (GOPROXY=$(go env GOPROXY))" >&2; exit 1; }

echo "building jaeger $version" >&2
ldflags="-s -w"
ldflags+=" -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$version"
ldflags+=" -X github.com/jaegertracing/jaeger/internal/version.commitSHA=${version}"
ldflags+=" -X github.com/jaegertracing/jaeger/internal/version.date=1970-01-01T00:00:00Z"
# Build to a temporary name first, so that an interrupted build never leaves a binary that looks finished.
CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/bin/jaeger.tmp" "$pkg"
mv "$out/bin/jaeger.tmp" "$out/bin/jaeger"
echo "$out/bin"
