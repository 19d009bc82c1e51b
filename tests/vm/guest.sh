#!/bin/sh
# PID 1 of the test VM once init.sh has switched to the host's / (read-only,
# under a tmpfs overlay): mount what a booted Debian has, run the steps vm.py
# wrote into the results share, record their exit code, and power off.
R=/vm-results
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# The checkout may lie below a directory the next lines mount over (a clone
# in /tmp): /mnt/host keeps the host's whole / in reach for steps.sh.
mkdir -p /mnt/host
mount --bind / /mnt/host
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname enforcer-vm
ip link set lo up 2>/dev/null

echo "vm: kernel $(uname -r), $(nproc) cpus, $(grep MemTotal /proc/meminfo)"
sh "$R/steps.sh"
echo $? > "$R/exit-code"
sync
/bin/busybox poweroff -f
