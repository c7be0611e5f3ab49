#!/usr/bin/env bash
# Builds the images tug needs without a registry, from the machine's own packages, as OCI image-layout
# tars ready for `<data-dir>/agent/images/`:
#   pause.tar    tug.local/pause:1    the pod sandbox (pause.c, compiled statically)
#   busybox.tar  tug.local/busybox:1  a test image: busybox-static with every applet linked, sh as command
# Usage: build.sh OUT_DIR. Needs gcc with a static libc (build-essential) and busybox-static.
# The output is reproducible: fixed mtimes, owners and ordering.
set -euo pipefail

out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
  amd64 | x86_64) arch=amd64 variant= ;;
  arm64 | aarch64) arch=arm64 variant= ;;
  armhf | armv7l) arch=arm variant=v7 ;;
  *) echo "build.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

sha() { sha256sum "$1" | cut -d' ' -f1; }

# blob FILE: stores FILE under blobs/sha256 of the layout being built; prints its digest.
blob() {
  local digest
  digest=$(sha "$1")
  cp "$1" "$layout/blobs/sha256/$digest"
  echo "$digest"
}

# image NAME ROOTFS CONFIG_JSON OUTPUT: writes an OCI image-layout tar of one uncompressed layer.
image() {
  local name=$1 rootfs=$2 config=$3 output=$4
  layout=$work/layout-$(basename "$output" .tar)
  mkdir -p "$layout/blobs/sha256"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$work/layer.tar" .
  local layer layer_size
  layer=$(blob "$work/layer.tar")
  layer_size=$(stat -c %s "$work/layer.tar")
  local platform="\"architecture\":\"$arch\",\"os\":\"linux\"${variant:+,\"variant\":\"$variant\"}"
  printf '{%s,"created":"1970-01-01T00:00:00Z","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$platform" "$config" "$layer" > "$work/config.json"
  local cfg cfg_size
  cfg=$(blob "$work/config.json")
  cfg_size=$(stat -c %s "$work/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cfg" "$cfg_size" "$layer" "$layer_size" > "$work/manifest.json"
  local manifest manifest_size
  manifest=$(blob "$work/manifest.json")
  manifest_size=$(stat -c %s "$work/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{%s},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$platform" "$name" "${name##*:}" > "$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$layout" -cf "$output" oci-layout index.json blobs
  echo "build.sh: $name -> $output"
}

# pause
mkdir -p "$work/pause"
gcc -static -Os -s -Wall -Wextra -o "$work/pause/pause" "$here/pause.c"
image tug.local/pause:1 "$work/pause" '{"Entrypoint":["/pause"],"User":"65535:65535"}' "$out/pause.tar"

# busybox
busybox=/bin/busybox
if [ ! -x "$busybox" ] || readelf -l "$busybox" | grep -q INTERP; then
  echo "build.sh: $busybox must be the static busybox (apt-get install busybox-static)" >&2
  exit 1
fi
root=$work/busybox
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/var/www"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$root/etc/group"
image tug.local/busybox:1 "$root" '{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}' "$out/busybox.tar"
