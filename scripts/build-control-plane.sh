#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler (and kubectl) from Go modules, fetched the
# way the environment's `go env GOPROXY` says, into a cache outside the checkout, keyed by version. A second run
# is a no-op.
#
#   scripts/build-control-plane.sh [VERSION]      # default v1.35.8 (the module mirror refuses some v1.35.6 staging modules)
#   prints the directory holding the binaries on its last line.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the staging modules with local paths),
# so we write a tiny wrapper module that requires it, points every staging module at its published
# v0.Y.Z twin, and has one main package per command.
set -euo pipefail

version="${1:-${CLOUDPILOT_KUBE_VERSION:-v1.35.8}}"
cache="${CLOUDPILOT_CACHE:-$HOME/.cache/cloudpilot}"
out="$cache/kube/$version"
bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

have_all=1
for b in "${bins[@]}"; do [ -x "$out/bin/$b" ] || have_all=0; done
if [ "$have_all" = 1 ]; then echo "$out/bin"; exit 0; fi

command -v go >/dev/null || { echo "go is required to build the control plane" >&2; exit 1; }
staging="v0.${version#v1.}"
src="$out/src"
mkdir -p "$src" "$out/bin"
cd "$src"

# Fetch k8s.io/kubernetes's own go.mod through the Go toolchain, so that the environment's GOPROXY, GOPRIVATE,
# GONOSUMDB, GOFLAGS and credentials apply; its JSON report says where the file landed.
# (Run outside any module, so that a wrapper go.mod left by an interrupted run cannot get in the way.)
outside="$(mktemp -d)"
trap 'rm -rf "$outside"' EXIT
info="$(cd "$outside" && go mod download -json "k8s.io/kubernetes@$version")" \
  || { echo "go mod download k8s.io/kubernetes@$version failed (GOPROXY=$(go env GOPROXY))" >&2; exit 1; }
gomod="$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
[ -n "$gomod" ] && [ -f "$gomod" ] || { echo "go mod download did not report k8s.io/kubernetes's go.mod" >&2; exit 1; }
cp "$gomod" upstream.mod

{
  echo "module cloudpilot.local/controlplane"
  echo
  echo "go $(awk '/^go /{print $2; exit}' upstream.mod)"
  echo
  echo "require k8s.io/kubernetes $version"
  echo
  echo "replace ("
  awk -v v="$staging" '/=> \.\/staging\/src\//{print "\t" $1 " => " $1 " " v}' upstream.mod
  echo ")"
} > go.mod

write_main() { # dir import constructor
  mkdir -p "$1"
  cat > "$1/main.go" <<GO
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	app "$2"
)

func main() { os.Exit(cli.Run(app.$3())) }
GO
}
write_main kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver/app NewAPIServerCommand
write_main kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager/app NewControllerManagerCommand
write_main kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler/app NewSchedulerCommand
mkdir -p kubectl
cat > kubectl/main.go <<'GO'
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
GO

go mod tidy >&2
major="${version#v}"; major="${major%%.*}"
minor="${version#v*.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for b in "${bins[@]}"; do
  echo "building $b $version" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/bin/$b" "./$b"
done
echo "$out/bin"
