#!/usr/bin/env bash
# Builds the second test stack: Debian bookworm with libvirt and QEMU from
# bookworm-backports (libvirt 11.x, QEMU 10.x), as a chroot beside the host's
# libvirt 9.0 / QEMU 7.2. Idempotent: a finished build leaves ROOT/.aiohook-stack,
# and a build with that stamp (same recipe version) is reused.
# Usage: build-modern.sh ROOT      (as root; needs debootstrap)
set -euo pipefail
ROOT=${1:?usage: build-modern.sh ROOT}
RECIPE=3  # bump when this recipe changes: cached chroots are rebuilt
STAMP="$ROOT/.aiohook-stack"
MIRROR=${AIOHOOK_STACK_MIRROR:-http://deb.debian.org/debian}

if [ -f "$STAMP" ] && grep -qx "recipe=$RECIPE" "$STAMP"; then
  echo "modern stack: reusing $ROOT ($(grep -E '^(libvirt|qemu)=' "$STAMP" | tr '\n' ' '))"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build-modern.sh: needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build-modern.sh: debootstrap missing" >&2; exit 1; }

# A half-built or stale chroot: nothing may still be mounted in it before removal.
if [ -e "$ROOT" ]; then
  if grep -q " $ROOT/" /proc/self/mounts; then
    echo "build-modern.sh: $ROOT has mounts; stop the stack first" >&2; exit 1
  fi
  rm -rf --one-file-system "$ROOT"
fi
work="$ROOT.partial"
if grep -q " $work/" /proc/self/mounts; then
  echo "build-modern.sh: $work has mounts" >&2; exit 1
fi
rm -rf --one-file-system "$work"
mkdir -p "$(dirname "$ROOT")"

start=$(date +%s)
debootstrap --variant=minbase \
  --include=ca-certificates,python3,python3-lxml,python3-yaml,python3-jsonschema,python3-xmlschema,acl,procps,util-linux \
  bookworm "$work" "$MIRROR" >"$work.log" 2>&1 || { tail -20 "$work.log" >&2; exit 1; }

cat >"$work/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $MIRROR bookworm-backports main
SRC
# No init system in the chroot: package scripts must not start services.
printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d"
chmod 755 "$work/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$work/etc/resolv.conf" 2>/dev/null || true

mount -t proc proc "$work/proc"
trap 'umount "$work/proc" 2>/dev/null || true' EXIT
chroot "$work" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$work.log" 2>&1
chroot "$work" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -t bookworm-backports libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu \
  qemu-system-x86 qemu-utils >>"$work.log" 2>&1 || { tail -20 "$work.log" >&2; exit 1; }
chroot "$work" apt-get clean
umount "$work/proc"
trap - EXIT

# libvirt's per-domain mount namespace needs / to be a mount point: off here.
echo 'namespaces = [ ]' >>"$work/etc/libvirt/qemu.conf"
# libvirt refuses to migrate to a host with the same UUID as the source.
echo 'host_uuid = "a10b0c00-0000-4000-8000-00000000a10b"' >>"$work/etc/libvirt/libvirtd.conf"

libvirt=$(chroot "$work" dpkg-query -W -f='${Version}' libvirt-daemon-system)
qemu=$(chroot "$work" dpkg-query -W -f='${Version}' qemu-system-x86)
printf 'recipe=%s\nlibvirt=%s\nqemu=%s\nbuilt=%s\n' "$RECIPE" "$libvirt" "$qemu" "$(date -u +%FT%TZ)" >"$work/.aiohook-stack"
mv "$work" "$ROOT"
echo "modern stack: built $ROOT in $(( $(date +%s) - start )) s (libvirt $libvirt, qemu $qemu)"
