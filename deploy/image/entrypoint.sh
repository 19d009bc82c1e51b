#!/bin/sh
# The enforcer image's entrypoint: make the node's kernel reachable the way
# `make run` does on a host, then run `enforcer` with the arguments given
# (the DaemonSet passes `run ...`; `kubectl exec` runs `enforcer status` etc.
# directly, not through here).
set -eu

release=$(uname -r)

# bcc compiles against /lib/modules/$(uname -r)/build: the node's own headers
# where it has them (mounted at /host), else the image's Debian headers,
# linked in. The BPF code reads no kernel struct through them (offsets come
# from the node's BTF), so near headers are enough.
if [ ! -e "/lib/modules/$release/build/include" ]; then
    mkdir -p "/lib/modules/$release"
    if [ -e "/host/lib/modules/$release/build/include" ]; then
        build=$(readlink -f "/host/lib/modules/$release/build" || true)
        case "$build" in
            /usr/src/*) build="/host$build" ;;
        esac
        ln -sfn "$build" "/lib/modules/$release/build"
        source=$(readlink -f "/host/lib/modules/$release/source" 2>/dev/null || true)
        case "$source" in
            /usr/src/*) ln -sfn "/host$source" "/lib/modules/$release/source" ;;
        esac
    else
        arch=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)
        ln -sfn "$arch" "/lib/modules/$release/build"
        ln -sfn "${arch%-amd64}-common" "/lib/modules/$release/source"
        echo "enforcer-entrypoint: no headers for kernel $release on the node: using $arch" >&2
    fi
fi

# bpffs and tracefs, where neither the node nor the runtime mounted them. A
# hostPath of the node's empty directory is a mount point with nothing in it:
# the filesystem's type tells.
if [ "$(stat -f -c %T /sys/fs/bpf)" != bpf_fs ]; then
    mount -t bpf bpf /sys/fs/bpf
    echo "enforcer-entrypoint: the node has no bpffs at /sys/fs/bpf: pinned programs" \
         "outlive this pod only where the mount propagates to the node (Bidirectional)" >&2
fi
tracefs=/sys/kernel/tracing
[ "$(stat -f -c %T "$tracefs")" = tracefs ] || mount -t tracefs tracefs "$tracefs" 2>/dev/null || true

# Container cgroup paths as the node sees them: enter the node's cgroup
# namespace where the pod has one of its own (cgroup v2 nodes). init's
# namespaces may be hidden (some VMs), kthreadd's (pid 2) never are.
for pid in 1 2; do
    node_cgroup="/proc/$pid/ns/cgroup"
    [ -r "$node_cgroup" ] && readlink "$node_cgroup" >/dev/null 2>&1 || continue
    if [ "$(readlink "$node_cgroup")" != "$(readlink /proc/self/ns/cgroup)" ]; then
        exec nsenter --cgroup="$node_cgroup" -- /opt/enforcer/venv/bin/enforcer "$@"
    fi
    break
done
exec /opt/enforcer/venv/bin/enforcer "$@"
