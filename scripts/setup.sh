#!/usr/bin/env bash
# Installs what tug needs to build, run and test on Debian/Ubuntu: build tools, kubectl (where the
# machine's package sources carry it), etcd (the benchmark's reference), the runtime pieces (containerd,
# runc, CNI plugins, iptables, ipset for NetworkPolicies), a registry for the pull tests
# (docker-registry, apache2-utils for its htpasswd file), dnsmasq as the networking test's upstream DNS
# and iperf3 for the network benchmark. Safe to run again.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive

packages=(build-essential pkg-config ca-certificates curl iproute2 iptables protobuf-compiler libprotobuf-dev
          containerd runc containernetworking-plugins busybox-static etcd-server etcd-client procps
          docker-registry apache2-utils ipset iperf3 dnsmasq-base shellcheck openssl wget)
need=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
kubectl_missing=0
command -v kubectl >/dev/null 2>&1 || kubectl_missing=1
if [ ${#need[@]} -gt 0 ] || [ $kubectl_missing -eq 1 ]; then
  apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ $kubectl_missing -eq 1 ]; then
  if apt-cache show kubectl >/dev/null 2>&1; then
    apt-get install -y -qq kubectl
  else
    echo "setup: no kubectl package in this machine's apt sources; install kubectl to run the tests" >&2
  fi
fi
# The packaged etcd must not keep running as a service: the benchmark starts its own on loopback.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (1.85 or newer, e.g. with rustup)" >&2
  exit 1
fi
echo "setup: done"
