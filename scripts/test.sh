#!/usr/bin/env bash
# Installs everything the test suite needs, from nothing, then runs it. Safe to re-run: each step is cached.
#   - etcd (and Prometheus, openssl, PostgreSQL) from Debian's packages
#   - kube-apiserver, kube-controller-manager, kube-scheduler, kubectl built from the Go module proxy,
#     cached in ~/.cache/cloudpilot/kube/<version>
#   - Jaeger (all-in-one, in-memory storage) built from the Go module proxy,
#     cached in ~/.cache/cloudpilot/jaeger/<version>
#   - helm (v4) built from the Go module proxy, cached in ~/.cache/cloudpilot/helm/<version>
#   - the Python package and its test extras in .venv
#   - the MCP Inspector CLI from npm, cached in ~/.cache/cloudpilot/inspector
# Extra arguments go to pytest, e.g. scripts/test.sh -k pods -x
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v openssl >/dev/null || missing+=(openssl)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)  # tests/store/postgres.py
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt: ${missing[*]}"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== control plane binaries"
CLOUDPILOT_KUBE_BIN="$(bash scripts/build-control-plane.sh | tail -n 1)"
export CLOUDPILOT_KUBE_BIN

echo "== jaeger binary"
CLOUDPILOT_JAEGER_BIN="$(bash scripts/build-jaeger.sh | tail -n 1)"
export CLOUDPILOT_JAEGER_BIN

echo "== helm binary"
CLOUDPILOT_HELM_BIN="$(bash scripts/build-helm.sh | tail -n 1)"
export CLOUDPILOT_HELM_BIN

echo "== python"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"

inspector="$HOME/.cache/cloudpilot/inspector"
if [ ! -x "$inspector/node_modules/.bin/mcp-inspector" ]; then
  echo "== npm: MCP Inspector CLI"
  mkdir -p "$inspector"
  npm install --silent --no-audit --no-fund --prefix "$inspector" @modelcontextprotocol/inspector@2.12.0 >/dev/null
fi

echo "== lint"
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache --no-logo
.venv/bin/bandit -q -c pyproject.toml -r server.py settings.py errors.py runtime.py cli connections guard kube tools \
  engines agents notifiers prompts store runbooks bots watch ops

echo "== tests"
exec .venv/bin/python -m pytest "$@"
