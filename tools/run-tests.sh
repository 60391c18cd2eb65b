#!/usr/bin/env bash
# Installs what is missing, then builds and runs the whole suite three times:
# release, ASan+UBSan, and TSan (the in-process thread tests, label "threads").
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh
export SLUICE_TEST_TMP="${SLUICE_TEST_TMP:-/dev/shm}"
for preset in release asan tsan; do
  echo "== $preset =="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
  ctest --preset "$preset"
done
