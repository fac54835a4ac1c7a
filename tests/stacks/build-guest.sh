#!/usr/bin/env bash
# Builds a tiny real guest for the tests from Debian packages: Debian's cloud
# kernel plus a busybox initramfs whose /init reads 4 KiB with O_DIRECT from
# every block device once per blk-mq queue (pinned to a CPU of that queue),
# prints AIOHOOK-GUEST-READ-ALL-DONE on the serial console, then idles.
# It is what opens QEMU's per-iothread AIO contexts, which only guest I/O does.
# Idempotent (stamp file). Usage: build-guest.sh OUTDIR   (needs apt-get, cpio, xz)
set -euo pipefail
OUT=${1:?usage: build-guest.sh OUTDIR}
RECIPE=2
if [ -f "$OUT/stamp" ] && grep -qx "recipe=$RECIPE" "$OUT/stamp"; then
  echo "guest: reusing $OUT ($(grep ^kernel= "$OUT/stamp"))"; exit 0
fi
for tool in apt-get dpkg cpio xz; do
  command -v $tool >/dev/null || { echo "build-guest.sh: $tool missing" >&2; exit 1; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
kernel_pkg() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
kpkg=$(kernel_pkg)
if [ -z "$kpkg" ]; then apt-get update -qq >/dev/null && kpkg=$(kernel_pkg); fi
[ -n "$kpkg" ] || { echo "build-guest.sh: no linux-image-cloud-amd64 (apt-get update?)" >&2; exit 1; }
chmod 777 . && apt-get download -qq "$kpkg" busybox-static >/dev/null 2>&1
mkdir k bb
dpkg -x ./linux-image-*.deb k
dpkg -x ./busybox-static_*.deb bb
kver=$(ls k/lib/modules)
BB=bb/bin/busybox

root=initramfs
mkdir -p $root/bin $root/proc $root/sys $root/dev "$root/lib/modules/$kver"
cp $BB $root/bin/busybox
# The modules the guest needs and what they depend on; compressed ones unpacked.
mods="virtio_pci virtio_blk virtio_scsi sd_mod sr_mod ata_piix ahci"
cp -a "k/lib/modules/$kver/modules.builtin" "$root/lib/modules/$kver/" 2>/dev/null || true
mkdir -p depwork/lib/modules && cp -a "k/lib/modules/$kver" depwork/lib/modules/
find depwork -name '*.ko.xz' -exec xz -d {} +
$BB depmod -b depwork "$kver" 2>/dev/null || true
dep="depwork/lib/modules/$kver/modules.dep"
[ -s "$dep" ] || { echo "build-guest.sh: depmod made no modules.dep" >&2; exit 1; }
need=""
for m in $mods; do
  line=$(grep -E "(^|/)${m//_/[_-]}\.ko:" "$dep" || true)
  [ -n "$line" ] && need="$need ${line%%:*} ${line#*:}"
done
for f in $need; do
  mkdir -p "$root/lib/modules/$kver/$(dirname "$f")"
  cp "depwork/lib/modules/$kver/$f" "$root/lib/modules/$kver/$f"
done
$BB depmod -b "$root" "$kver" 2>/dev/null || cp "$dep" "$root/lib/modules/$kver/"

cat >$root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_pci virtio_blk virtio_scsi sd_mod sr_mod ata_piix ahci; do modprobe $m 2>/dev/null; done
sleep 1
for b in /sys/block/*; do
  name=${b##*/}
  case $name in loop*|ram*|zram*) continue;; esac
  n=0
  if [ -d "$b/mq" ]; then
    for q in "$b"/mq/*; do
      cpu=$(cut -d, -f1 "$q/cpu_list" | cut -d- -f1)
      taskset -c "$cpu" dd if=/dev/$name of=/dev/null bs=4096 count=1 skip=$n iflag=direct 2>/dev/null \
        || taskset -c "$cpu" dd if=/dev/$name of=/dev/null bs=4096 count=1 skip=$n 2>/dev/null
      echo "AIOHOOK-GUEST-READ $name queue ${q##*/} cpu $cpu"
      n=$((n + 1))
    done
  else
    dd if=/dev/$name of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null \
      || dd if=/dev/$name of=/dev/null bs=4096 count=1 2>/dev/null
    echo "AIOHOOK-GUEST-READ $name"
  fi
done
echo AIOHOOK-GUEST-READ-ALL-DONE
while :; do sleep 3600; done
INIT
chmod 755 $root/init
mkdir -p "$OUT.partial"
(cd $root && find . | cpio -o -H newc --quiet | gzip -1) >"$OUT.partial/initrd.img"
cp "k/boot/vmlinuz-$kver" "$OUT.partial/vmlinuz"
printf 'recipe=%s\nkernel=%s\n' "$RECIPE" "$kver" >"$OUT.partial/stamp"
chmod -R a+rX "$OUT.partial"
rm -rf "$OUT"; mv "$OUT.partial" "$OUT"
echo "guest: built $OUT (kernel $kver)"
