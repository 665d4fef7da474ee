#!/bin/bash
# Builds the IPVS test VM: Debian's own kernel (linux-image-amd64, which has the ip_vs modules)
# plus a small busybox initramfs with the real ipvsadm, iproute2 and a command agent.
# Nothing is installed on the host: the kernel and kmod packages are only downloaded and unpacked.
#
# Usage: build.sh [CACHE_DIR]     (default: $LVSFLOW_VM_CACHE or /var/cache/lvsflow/ipvs-vm)
# Needs: apt sources (apt-get download), dpkg-deb, xz, gzip, busybox-static, ipvsadm, iproute2, bash.
# Env:   KPKG=linux-image-<abi>-amd64 to pin the kernel (default: what linux-image-amd64 depends on).
# Output (stdout, last line): the directory holding vmlinux, initrd.img and kernel.txt.
# Cached: the .debs, the unpacked kernel and the uncompressed vmlinux are reused; the initramfs is
# rebuilt only when this script, init or agent.sh change. Takes ~10 s cold (+ a 70 MB download),
# ~0.1 s when nothing changed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
C=${1:-${LVSFLOW_VM_CACHE:-/var/cache/lvsflow/ipvs-vm}}
mkdir -p "$C/dl" "$C/out"
cd "$C"
exec 9>"$C/.lock"; flock 9          # two test runs may build at once

KPKG=${KPKG:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')}
if [ -z "$KPKG" ]; then
  # apt lists not there yet (fresh machine): fetch them once.
  apt-get update -qq >&2
  KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
fi
[ -n "$KPKG" ] || { echo "build.sh: cannot resolve linux-image-amd64 from the apt sources" >&2; exit 1; }

# Key of everything that goes into the image: rebuild when the kernel or our guest files change.
KEY="$KPKG $(cat "$HERE/build.sh" "$HERE/init" "$HERE/agent.sh" | sha256sum | cut -c1-16)"
if [ -s out/vmlinux ] && [ -s out/initrd.img ] && [ "$(cat out/.key 2>/dev/null)" = "$KEY" ]; then
  echo "$C/out"; exit 0
fi

# ---- 1. download (not install) the kernel and kmod packages -------------------------------
fetch() { ls dl/"$1"_*.deb >/dev/null 2>&1 || (cd dl && apt-get download "$1" >&2) || { apt-get update -qq >&2; (cd dl && apt-get download "$1" >&2); }; }
fetch "$KPKG"
fetch kmod
if [ "$(cat kpkg/.done 2>/dev/null)" != "$KPKG" ]; then
  rm -rf kpkg out/vmlinux && mkdir kpkg
  # Only what the VM needs (the whole package unpacks to ~400 MB).
  dpkg-deb --fsys-tarfile dl/"${KPKG}"_*.deb | tar -x -C kpkg --wildcards \
    './boot/vmlinuz-*' './lib/modules/*/modules.*' './lib/modules/*/kernel/net/*' \
    './lib/modules/*/kernel/lib/*' './lib/modules/*/kernel/crypto/*' './lib/modules/*/kernel/arch/*' \
    './lib/modules/*/kernel/drivers/net/*' './lib/modules/*/kernel/drivers/virtio/*' \
    './lib/modules/*/kernel/drivers/char/*'
  echo "$KPKG" > kpkg/.done
fi
if [ ! -f kmod/.done ]; then rm -rf kmod && mkdir kmod && dpkg-deb -x dl/kmod_*.deb kmod && touch kmod/.done; fi
mkdir -p tools && for t in depmod modprobe; do ln -sf "$C/kmod/bin/kmod" "tools/$t"; done
KV=$(ls kpkg/lib/modules)

# ---- 2. uncompressed vmlinux: qemu boots it directly (PVH), no in-guest XZ decompression ------
if [ ! -s out/vmlinux ]; then
  z=kpkg/boot/vmlinuz-$KV
  off=$(LC_ALL=C grep -obUaP -m1 '\xfd7zXZ\x00' "$z" | awk -F: 'NR==1{print $1}')
  [ -n "$off" ] || { echo "build.sh: no XZ payload in $z" >&2; exit 1; }
  # xz stops at the end of the stream; tail may then die of SIGPIPE, which is fine.
  tail -c +$((off + 1)) "$z" | xz -dc --single-stream > out/vmlinux.tmp || [ "${PIPESTATUS[1]}" = 0 ]
  mv out/vmlinux.tmp out/vmlinux
fi
[ -f kpkg/lib/modules/$KV/modules.dep ] || tools/depmod -b "$C/kpkg" "$KV"

# ---- 3. modules: IPVS with every scheduler the kernel has, virtio, veth, bridge, dummy ---------
MODS=(ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_lblc ip_vs_lblcr ip_vs_dh ip_vs_sh
      ip_vs_sed ip_vs_nq ip_vs_mh ip_vs_fo ip_vs_ovf
      virtio_pci virtio_net virtio_console veth bridge dummy)
AVAIL=()
for m in "${MODS[@]}"; do
  if tools/modprobe -d "$C/kpkg" -S "$KV" --show-depends "$m" >/dev/null 2>&1; then AVAIL+=("$m")
  else echo "build.sh: note: module $m not in $KPKG" >&2; fi
done
tools/modprobe -d "$C/kpkg" -S "$KV" --show-depends -a "${AVAIL[@]}" \
  | awk '$1=="insmod"{print $2}' | awk '!seen[$0]++' > out/modlist

R=$C/rootfs
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,proc,sys,dev,tmp,run,etc,root,var/run,srv}
: > "$R/etc/modules.load"
while read -r ko; do
  rel=${ko#"$C"/kpkg/}
  mkdir -p "$R/$(dirname "$rel")"; cp "$ko" "$R/$rel"; echo "/$rel" >> "$R/etc/modules.load"
done < out/modlist
# depmod over the subset: the kernel's request_module() (-> /sbin/modprobe) then works too.
cp kpkg/lib/modules/$KV/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KV/"
tools/depmod -b "$R" "$KV"

# ---- 4. userland: busybox, the host's ipvsadm (+save/restore scripts), iproute2, bash ----------
cp /bin/busybox "$R/bin/busybox"
copy_bin() {
  cp -L "$1" "$R$2"
  ldd "$1" | awk '/=>/{print $3} $1 ~ /^\/lib64\//{print $1}' | while read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$R$(dirname "$lib")"; [ -e "$R$lib" ] || cp -L "$lib" "$R$lib"
  done
}
copy_bin "$(command -v ipvsadm)" /sbin/ipvsadm
copy_bin "$(command -v ip)" /sbin/ip
copy_bin /bin/bash /bin/bash
cp "$(command -v ipvsadm-save)" "$(command -v ipvsadm-restore)" "$R/sbin/"
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"; echo 'root:x:0:' > "$R/etc/group"
printf '127.0.0.1 localhost\n' > "$R/etc/hosts"
echo "$KPKG $KV" > "$R/etc/lvsflow-kernel"
install -m 0755 "$HERE/init" "$R/init"
install -m 0755 "$HERE/agent.sh" "$R/agent.sh"

(cd "$R" && find . | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null) | gzip -1 > out/initrd.img.tmp
mv out/initrd.img.tmp out/initrd.img
echo "$KPKG $KV" > out/kernel.txt
echo "$KEY" > out/.key
echo "$C/out"
