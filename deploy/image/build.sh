#!/usr/bin/env bash
# Builds the enforcer image, localhost/enforcer:<version>, with no registry:
# a Debian bookworm root filesystem made by mmdebstrap from Debian's packages
# (python3-bpfcc, bpftool, Debian's kernel headers), the package installed
# with pip in a venv that sees bcc, imported into podman. Skipped when an
# image of the same sources is there already. Prints the image's name and size.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml")
tag="localhost/enforcer:$version"
packages=python3,python3-venv,python3-bpfcc,bpftool,linux-headers-amd64,mount

work=$(mktemp -d /var/tmp/enforcer-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

# What goes into the image: the package's sources and this directory.
tar -C "$repo" -cf "$work/src.tar" --sort=name --mtime=@0 --owner=0 --group=0 \
    pyproject.toml README.md enforcer bpf deploy/image
digest=$( { sha256sum "$work/src.tar"; echo "$packages $mirror"; } | sha256sum | cut -c1-16)
if [ "$(podman image inspect --format '{{index .Labels "enforcer.sources"}}' "$tag" 2>/dev/null)" = "$digest" ]; then
    echo "$tag is up to date ($(podman image inspect --format '{{.Size}}' "$tag") bytes)"
    exit 0
fi

# The kernel headers come with GCC (for building modules), which bcc never
# runs: it compiles with LLVM. Its compilers and sanitizer runtimes go.
trim='rm -rf "$1"/usr/lib/gcc "$1"/usr/libexec/gcc "$1"/usr/lib/x86_64-linux-gnu/lib[atlu]san.so* "$1"/usr/lib/x86_64-linux-gnu/libhwasan.so* "$1"/usr/bin/x86_64-linux-gnu-gcc-12 "$1"/usr/bin/x86_64-linux-gnu-cpp-12 "$1"/usr/bin/x86_64-linux-gnu-lto-dump-12'

started=$(date +%s)
# The wheels are fetched here, with this host's pip and its index settings
# (a proxy's CA, a mirror), and installed in the image from disk only.
python=${PYTHON:-$repo/.venv/bin/python}
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$work/wheels" \
    "$work/src.tar" 2>/dev/null || {
    mkdir -p "$work/src" && tar -C "$work/src" -xf "$work/src.tar"
    "$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$work/wheels" "$work/src"
}
mmdebstrap --quiet --variant=essential --include="$packages" \
    --customize-hook="mkdir -p \"\$1/opt/src\" && tar -C \"\$1/opt/src\" -xf '$work/src.tar' && cp -r '$work/wheels' \"\$1/opt/wheels\"" \
    --customize-hook='chroot "$1" python3 -m venv --system-site-packages /opt/enforcer/venv' \
    --customize-hook='chroot "$1" /opt/enforcer/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-index --find-links /opt/wheels enforcer' \
    --customize-hook='install -m 0755 "$1/opt/src/deploy/image/entrypoint.sh" "$1/usr/local/bin/enforcer-entrypoint"' \
    --customize-hook='ln -sf /opt/enforcer/venv/bin/enforcer "$1/usr/local/bin/enforcer"' \
    --customize-hook='rm -rf "$1/opt/src" "$1/opt/wheels" "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/locale/* "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    --customize-hook="$trim" \
    bookworm "$work/rootfs.tar" "$mirror"

replaced=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
podman import --quiet \
    --change 'ENTRYPOINT ["/usr/local/bin/enforcer-entrypoint"]' \
    --change 'CMD ["run"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL enforcer.sources=$digest" \
    --change "LABEL org.opencontainers.image.version=$version" \
    "$work/rootfs.tar" "$tag" >/dev/null
# The image this one replaced, untagged now: 500 MB a build otherwise (kept
# while a container still uses it).
if [ -n "$replaced" ]; then
    podman image rm "$replaced" >/dev/null 2>&1 || true
fi
echo "built $tag in $(( $(date +%s) - started )) s: $(podman image inspect --format '{{.Size}}' "$tag") bytes"
