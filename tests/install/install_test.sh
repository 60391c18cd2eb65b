#!/usr/bin/env bash
# Installs the built tree into a temporary prefix, builds a separate project
# against it with find_package(sluice), and runs it.
set -euo pipefail
build_dir="$1"; source_dir="$2"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/tests/install/consumer" -B "$work/build" -G Ninja \
      -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" >/dev/null
out=$("$work/build/consumer" "$work/bus")
[ "$out" = "ok" ] || { echo "consumer printed: $out"; exit 1; }
echo "find_package(sluice) consumer built and ran"
