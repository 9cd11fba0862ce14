#!/usr/bin/env bash
# Regenerate every *_pb2.py next to its .proto (Debian protoc 3.21; gencode that old imports cleanly
# with the pinned protobuf runtime). Generated files are committed; CI does not need protoc.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "install protobuf-compiler"; exit 1; }
find v2 -name '*.proto' | while read -r p; do
  protoc -I "$(dirname "$p")" --python_out="$(dirname "$p")" --pyi_out="$(dirname "$p")" "$p"
done
