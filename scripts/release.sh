#!/usr/bin/env bash
# Builds a release of tug and lays it out as install.sh downloads it: <out>/<version>/tug-<arch>,
# sha256sum-<arch>.txt and install.sh, with <out>/latest a link to <version>. That tree is a mirror for
# INSTALL_TUG_DOWNLOAD_URL; the same files are the assets of a GitHub release.
#
# Usage: scripts/release.sh [--out DIR] [--version VERSION] [--binary PATH] [ARCH...]
#   ARCH       amd64, arm64 or armv7 (default: this machine's). A cross build installs the Debian cross
#              compiler and C library (gcc-<triple>, libc6-dev-<arch>-cross) and the rustup target first.
#   --out      where the release tree goes (default: dist in the repository)
#   --version  the release's name (default: v<the version in Cargo.toml>)
#   --binary   package this already built binary as the one ARCH instead of building
set -euo pipefail
shopt -s inherit_errexit

usage_error() {
  echo "release.sh: $1 (usage at the top of scripts/release.sh)" >&2
  exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/dist
version="v$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)"
binary=
arches=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out | --version | --binary)
      [ $# -ge 2 ] || usage_error "$1 needs a value"
      case "$1" in --out) out=$2 ;; --version) version=$2 ;; --binary) binary=$2 ;; esac
      shift 2
      ;;
    amd64 | arm64 | armv7) arches+=("$1"); shift ;;
    *) usage_error "unknown argument $1" ;;
  esac
done

case "$(uname -m)" in
  x86_64) host=amd64 ;;
  aarch64) host=arm64 ;;
  armv7*) host=armv7 ;;
  *) host=unknown ;;
esac
if [ ${#arches[@]} -eq 0 ]; then
  [ "$host" != unknown ] || usage_error "no release for this machine ($(uname -m)); name an ARCH"
  arches=("$host")
fi
[ -z "$binary" ] || [ ${#arches[@]} -eq 1 ] || usage_error "--binary packages exactly one ARCH"
case "$version" in "" | latest | */* | .*) usage_error "--version must be a plain name, not \"$version\"" ;; esac
# Paths as the caller gave them, before working from the repository's root.
out=$(realpath -m "$out")
[ -z "$binary" ] || binary=$(realpath -e "$binary")
[ ! -e "$out/latest" ] || [ -L "$out/latest" ] || usage_error "$out/latest is not a link; move it away"
cd "$repo"

# ARCH's Rust target, C cross compiler and Debian architecture.
toolchain() {
  case "$1" in
    amd64) echo x86_64-unknown-linux-gnu x86_64-linux-gnu-gcc amd64 ;;
    arm64) echo aarch64-unknown-linux-gnu aarch64-linux-gnu-gcc arm64 ;;
    armv7) echo armv7-unknown-linux-gnueabihf arm-linux-gnueabihf-gcc armhf ;;
  esac
}

# The cross compiler, C library and Rust standard library for a target, and cargo told to use them.
prepare_cross() {
  local target=$1 gcc=$2 debian_arch=$3
  if ! command -v "$gcc" >/dev/null || [ ! -d "/usr/${gcc%-gcc}/include" ]; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "gcc-$(echo "${gcc%-gcc}" | tr _ -)" \
      "libc6-dev-${debian_arch}-cross" >&2
  fi
  rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
  local upper
  upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
  export "CARGO_TARGET_${upper}_LINKER=$gcc" "CC_${target//-/_}=$gcc"
}

# Builds for ARCH; prints the binary's path.
build() {
  local target gcc debian_arch
  read -r target gcc debian_arch <<<"$(toolchain "$1")"
  [ "$1" = "$host" ] || prepare_cross "$target" "$gcc" "$debian_arch"
  cargo build --release --locked --target "$target" >&2
  echo "${CARGO_TARGET_DIR:-target}/$target/release/tug"
}

dir="$out/$version"
mkdir -p "$dir"
for arch in "${arches[@]}"; do
  if [ -n "$binary" ]; then built=$binary; else built=$(build "$arch"); fi
  cp "$built" "$dir/.tug-$arch.partial"
  mv "$dir/.tug-$arch.partial" "$dir/tug-$arch"
  (cd "$dir" && sha256sum "tug-$arch" >"sha256sum-$arch.txt")
  echo "$dir/tug-$arch"
done
cp install.sh "$dir/install.sh"
ln -sfn "$version" "$out/latest"
