#!/usr/bin/env bash
# Installs what is missing, builds the release tree and runs `sluice demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/bootstrap.sh
cmake --preset release >/dev/null
cmake --build --preset release --target sluice_cli
exec build/release/tools/sluice demo "$@"
