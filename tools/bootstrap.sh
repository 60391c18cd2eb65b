#!/usr/bin/env bash
# Installs the Debian packages sluice builds with. Idempotent: when every
# package is present it prints nothing and returns in well under a second.
set -euo pipefail
packages=(
  g++ cmake ninja-build pkg-config
  libboost-dev            # Boost.Interprocess (header-only)
  libconcurrentqueue-dev  # moodycamel ConcurrentQueue: the async producer's hand-off
  libxxhash-dev           # XXH3: record checksums and key hashing
  libbenchmark-dev        # Google Benchmark: bench/
  libgtest-dev libgmock-dev
  libcli11-dev            # CLI11: the sluice command line's parser and --help
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "bootstrap: installing ${missing[*]}" >&2
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
