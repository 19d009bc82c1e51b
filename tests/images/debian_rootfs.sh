#!/bin/bash
# Builds, once, the Debian 12 (bookworm) root filesystem that the integration
# tests import as a podman image (podman_helpers.debian_image()): debootstrap's
# minbase variant plus python3, procps, busybox and curl, from Debian's own packages,
# nothing added. It is a tarball in the cache directory, outside the checkout:
#
#   ${ENFORCER_IMAGE_CACHE:-/var/cache/enforcer-tests}/debian-bookworm-minbase-curl.tar
#
# When the tarball is there this does nothing. Otherwise it builds in a
# directory beside it and renames the finished tarball into place, so a build
# that is interrupted never leaves half a tarball; the next run removes what
# it left. Run as root (debootstrap chroots and makes device nodes); `make
# test-image` does, after installing debootstrap.
#
# The mirror is the one apt on this host uses for bookworm's main component
# (read with `apt-get indextargets`, which parses sources.list and
# sources.list.d as apt does); ENFORCER_DEBIAN_MIRROR names another.
set -euo pipefail

SUITE=bookworm
INCLUDE=python3,procps,busybox,curl
CACHE=${ENFORCER_IMAGE_CACHE:-/var/cache/enforcer-tests}
# The name changes with INCLUDE, so a tarball cached with fewer packages is not reused.
TARBALL=$CACHE/debian-$SUITE-minbase-curl.tar

die() {
    echo "debian_rootfs.sh: $*" >&2
    exit 1
}

reused() {
    echo "reused $TARBALL ($(du -h "$TARBALL" | cut -f1))"
    exit 0
}

# The first bookworm main archive apt knows, as a URL for debootstrap.
apt_mirror() {
    apt-get indextargets --format '$(REPO_URI)' 'Identifier: Packages' \
        'Origin: Debian' "Codename: $SUITE" 'Component: main' | head -n 1
}

find_mirror() {
    if [[ -n ${ENFORCER_DEBIAN_MIRROR:-} ]]; then
        echo "$ENFORCER_DEBIAN_MIRROR"
        return
    fi
    local mirror
    mirror=$(apt_mirror)
    if [[ -z $mirror ]]; then
        # apt only describes sources whose lists it has fetched.
        apt-get update -qq >&2
        mirror=$(apt_mirror)
    fi
    [[ -n $mirror ]] || die "apt has no Debian $SUITE main source: add one to /etc/apt/sources.list.d/, or set ENFORCER_DEBIAN_MIRROR"
    echo "$mirror"
}

# Removes a build directory. A debootstrap that was killed can leave proc and
# sys mounted in its chroot: unmount them (deepest first) and never let rm
# cross into a mount.
remove_tree() {
    local dir=$1 mount
    awk -v prefix="$dir/" 'index($5, prefix) == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r mount; do umount --lazy "$mount"; done
    rm -rf --one-file-system "$dir"
}

if [[ -s $TARBALL ]]; then reused; fi
[[ $(id -u) == 0 ]] || die "needs root to run debootstrap"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap, or make packages)"

mkdir -p "$CACHE"
# One build at a time: a second run waits here for the first, then reuses.
exec 9<"$CACHE"
flock 9
if [[ -s $TARBALL ]]; then reused; fi

# Holding the lock, no build is running: whatever is left was interrupted.
for stale in "$CACHE"/.build.*; do
    if [[ -e $stale ]]; then remove_tree "$stale"; fi
done

work=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'remove_tree "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mirror=$(find_mirror)
started=$SECONDS
if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$work/rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap $SUITE from $mirror failed (its log's end is above)"
fi
# debootstrap keeps the .debs it installed and the mirror's package lists, more
# than a third of the tree: drop them as Debian's own container images do
# (`apt-get update` inside brings the lists back).
chroot "$work/rootfs" apt-get clean
rm -rf "$work/rootfs"/var/lib/apt/lists/*
tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
# The same filesystem: the rename is atomic.
mv -f "$work/rootfs.tar" "$TARBALL"
echo "built $TARBALL ($(du -h "$TARBALL" | cut -f1)) from $mirror in $((SECONDS - started)) s"
