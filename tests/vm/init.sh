#!/bin/busybox sh
# /init of the test VM's initramfs (tests/vm/vm.py builds it): load the 9p and
# overlay modules, mount the host's / read-only with a tmpfs overlay on top,
# mount the results share, and switch_root into guest.sh.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "vm-init: $*"
    poweroff -f
}

for module in $(cat /modules/order); do
    insmod "/modules/$module" || fail "insmod $module failed"
done

mkdir -p /lower /rw /root /results
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /lower \
    || fail "cannot mount the host's / over 9p"
mount -t tmpfs -o size=75% tmpfs /rw || fail "cannot mount the overlay's tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /root \
    || fail "cannot mount the overlay"
mkdir -p /root/vm-results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 results /root/vm-results \
    || fail "cannot mount the results share"

umount /proc /sys
mount --move /dev /root/dev 2>/dev/null || umount /dev
exec switch_root /root /bin/sh /vm-results/guest.sh
