#!/usr/bin/env bash
# One-stop, idempotent setup for a fresh Debian machine: system packages the tests use, the
# project's virtualenv, and the npm harnesses of the third-party interop peers.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(etcd-server etcd-client prometheus nodejs npm chromium postgresql iproute2)  # iproute2: ip netns, tc (tests/drills/netns)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from elsewhere than Debian (the image ships them): only the binaries matter.
command -v node >/dev/null && missing=("${missing[@]/nodejs}")
command -v npm >/dev/null && missing=("${missing[@]/npm}")
read -r -a missing <<< "${missing[*]:-}"
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages enable system services; tests start their own instances on free ports.
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now etcd prometheus postgresql >/dev/null 2>&1 || true
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi
# libp2p pulls in trio-typing, whose old `trio-stubs` would shadow trio 0.35's own inline types for
# mypy (PEP 561: stub packages win), e.g. `trio.TaskStatus` "not defined".  Type-checking only.
rm -rf .venv/lib/python*/site-packages/trio-stubs

# Interop harnesses: one folder per third-party stack (their versions conflict with each other).
for dir in tests/interop/js/*/; do
  [ -f "$dir/package.json" ] || continue
  lock="$dir/package-lock.json"
  want=$(cat "$dir/package.json" "$lock" 2>/dev/null | sha256sum | cut -c1-16)
  if [ ! -f "$dir/node_modules/.stamp-$want" ]; then
    echo "setup: npm install in $dir"
    if [ -f "$lock" ]; then (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    else (cd "$dir" && npm install --no-audit --no-fund --loglevel=error); fi
    touch "$dir/node_modules/.stamp-$want"
  fi
done
# Go peers (status-go's Waku v1, go-waku): one module per peer under tests/interop/go/ (their
# go-ethereum versions conflict), each built once per change of its go.mod/go.sum/sources. The
# module proxy is the only source; versions are pinned by the committed go.sum (-mod=readonly).
if compgen -G "tests/interop/go/*/go.mod" >/dev/null; then
  command -v go >/dev/null || { echo "setup: Go is needed for the Go interop peers" >&2; exit 1; }
  for mod in tests/interop/go/*/go.mod; do
    dir=$(dirname "$mod"); name=$(basename "$dir")
    want=$(cat "$dir"/go.mod "$dir"/go.sum "$dir"/*.go 2>/dev/null | sha256sum | cut -c1-16)
    if [ ! -x "$dir/bin/$name" ] || [ ! -f "$dir/bin/.stamp-$want" ]; then
      echo "setup: go build in $dir"
      start=$SECONDS
      rm -rf "$dir/bin"
      (cd "$dir" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -tags gowaku_no_rln -o "bin/$name" .)
      touch "$dir/bin/.stamp-$want"
      echo "setup: built $dir in $((SECONDS - start)) s"
    fi
  done
fi
echo "setup: ok"
