#!/usr/bin/env bash
# What the eBPF backend needs, on Debian/Ubuntu as root: bcc (python3-bpfcc), headers of the
# running kernel for bcc's compiler, and tracefs mounted. A kernel with no headers package of
# its own (a cloud or VM kernel) gets the newest Debian linux-headers-*-amd64, linked in as
# /lib/modules/$(uname -r)/build and .../source: tracepoint programs compile and run with them.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
release=$(uname -r)
need=()
dpkg-query -W -f='${Status}' python3-bpfcc 2>/dev/null | grep -q "install ok installed" \
  || need+=(python3-bpfcc bpfcc-tools)
headers=""
if [ ! -e "/lib/modules/$release/build" ]; then
  apt-get update -qq
  if apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
    need+=("linux-headers-$release")
  else
    headers=$(apt-cache search --names-only '^linux-headers-[0-9.]+-[0-9]+-amd64$' \
      | awk '{print $1}' | sort -V | tail -n1)
    [ -n "$headers" ] || { echo "ebpf.sh: no linux-headers package found" >&2; exit 1; }
    need+=("$headers")
  fi
fi
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -e "/lib/modules/$release/build" ] && [ -n "$headers" ]; then
  version=${headers#linux-headers-}  # e.g. 6.1.0-50-amd64
  mkdir -p "/lib/modules/$release"
  ln -sfn "/usr/src/linux-headers-$version" "/lib/modules/$release/build"
  ln -sfn "/usr/src/linux-headers-${version%-amd64}-common" "/lib/modules/$release/source"
fi
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || true
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug || true
echo "ebpf.sh: bcc ready (headers: $(readlink -f "/lib/modules/$release/build"))" >&2
