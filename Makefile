# `make run` and `make test` set up everything they need on a Debian 12 host,
# as root: system packages, kernel headers (or Debian's nearest ones, linked
# where bcc looks), and the virtualenv. Each step is skipped when done.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
KVER := $(shell uname -r)
# Debian packages enforcer needs at run time, and those its tests use.
RUN_PACKAGES := python3-bpfcc python3-venv python3-pip bpftool
# kubectl (for `kubectl kustomize`) from Debian, unless one is installed already
# (another vendor's package of it would conflict).
KUBECTL_PACKAGE := $(if $(shell command -v kubectl),,kubernetes-client)
TEST_PACKAGES := runc busybox-static gcc libc6-dev podman debootstrap mmdebstrap catatonit $(KUBECTL_PACKAGE)
# And those only the benchmarks use: bcc's execsnoop to compare with, matplotlib for the plot.
BENCH_PACKAGES := bpfcc-tools bpftrace python3-matplotlib time
POLICIES ?= policies

.PHONY: all setup packages headers venv run test test-image image unit lint bench bench-smoke clean

all: test

setup: packages headers venv

packages:
	@missing=""; \
	for p in $(RUN_PACKAGES) $(TEST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# bcc compiles against /lib/modules/$(uname -r)/build. Use the running
# kernel's own headers when Debian has them; otherwise Debian's current
# headers, linked in: helpers and tracepoint arguments stay right, and the
# BPF code reads no kernel struct through them.
headers:
	@if [ ! -e /lib/modules/$(KVER)/build/include ]; then \
	  if apt-cache show linux-headers-$(KVER) >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-headers-$(KVER); \
	  else \
	    dpkg-query -W -f='$${Status}' linux-headers-amd64 2>/dev/null | grep -q "ok installed" || \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-headers-amd64; \
	    arch=$$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -n 1); \
	    common=$${arch%-amd64}-common; \
	    mkdir -p /lib/modules/$(KVER); \
	    ln -sfn "$$arch" /lib/modules/$(KVER)/build; \
	    ln -sfn "$$common" /lib/modules/$(KVER)/source; \
	    echo "no headers for kernel $(KVER): using $$arch"; \
	  fi; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@$(PY) -c 'import bcc' || { echo "bcc does not import in $(VENV): is python3-bpfcc installed?"; exit 1; }
	@touch $@

run: setup
	$(VENV)/bin/enforcer run --policies $(POLICIES)

lint: venv
	$(VENV)/bin/ruff check enforcer tests bench
	$(VENV)/bin/ruff format --check enforcer tests bench
	$(VENV)/bin/mypy enforcer bench

unit: venv
	$(PY) -m pytest -q tests/unit

# test-vm first: the VM tests (about 35 minutes) then have both cores.
# test-image before them: a build that fails (no mirror) stops the run at once,
# not after those 35 minutes.
test: setup lint test-image image test-vm
	$(PY) -m pytest tests

# The Debian 12 root filesystem the integration tests run as a podman image,
# built with debootstrap from Debian's packages (about a minute, 160 MB) into
# $ENFORCER_IMAGE_CACHE, /var/cache/enforcer-tests by default: outside the
# checkout, so `make clean` and a fresh clone keep it. Reused once built.
test-image: packages
	tests/images/debian_rootfs.sh

# The agent's container image, localhost/enforcer:<version> (deploy/image/):
# a Debian bookworm root filesystem made by mmdebstrap from Debian's packages,
# the package installed in it, imported into podman. No registry is needed;
# rebuilt only when its sources change (110 to 200 s here).
image: venv packages
	deploy/image/build.sh

# The benchmark suite (bench/README.md): `make bench` measures and rewrites
# bench/README.md, results.json and results.png; `make bench-smoke` only checks
# that every benchmark starts. BENCH_ARGS passes options, e.g. --quick.
BENCH_FLAGS_bench = $(BENCH_ARGS)
BENCH_FLAGS_bench-smoke = --smoke

bench bench-smoke: setup
	@$(MAKE) --no-print-directory packages RUN_PACKAGES="$(BENCH_PACKAGES)" TEST_PACKAGES=
	$(PY) -m bench $(BENCH_FLAGS_$@)

# The VM tests (tests/vm/vm.py) boot Debian 12's own kernels, 6.1 and 6.12,
# which have kprobes and BPF LSM, under qemu, and run the integration tests in
# each with every backend: a matrix of kernel x backend. KERNELS and BACKENDS
# run a part of it, e.g. `make test-vm KERNELS=6.12 BACKENDS="lsm tracepoint"`.
# The VM shares this host's /, so the kernels' images and modules, their
# matching headers and qemu are installed here.
VM_PACKAGES := qemu-system-x86 linux-image-amd64 linux-headers-amd64 \
  linux-image-6.12-amd64 linux-headers-6.12-amd64 busybox-static
KERNELS ?= 6.1 6.12
BACKENDS ?= lsm kprobe tracepoint
VM_ARGS ?=

.PHONY: test-vm
test-vm: setup
	@$(MAKE) --no-print-directory packages RUN_PACKAGES="$(VM_PACKAGES)" TEST_PACKAGES=
	$(PY) tests/vm/vm.py --kernels $(KERNELS) --backends $(BACKENDS) $(VM_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache

# `make install` makes enforcer a systemd service on this host, as root: the
# package (not editable) in its own virtualenv, the unit, a config file, the
# policy directory and group `enforcer`. Each step keeps what is there: an
# edited config file, policies, the group. `make uninstall` removes what it
# installed but the policies and the group; `make uninstall PURGE=1` removes
# those too, and the state directory. It always removes the maps pinned in
# bpffs: without a daemon they would go on counting, or enforcing. The paths
# can be moved (the tests do): the unit and the config file are rewritten to
# match.
PREFIX ?= /opt/enforcer
CONFDIR ?= /etc/enforcer
UNITDIR ?= /etc/systemd/system
STATEDIR ?= /var/lib/enforcer
PINDIR ?= /sys/fs/bpf/enforcer
SERVICE_GROUP ?= enforcer
INSTALL_VENV := $(PREFIX)/venv
# systemd runs as PID 1 (sd_booted(3)): only then is there a manager to tell.
SYSTEMD_BOOTED := $(shell test -d /run/systemd/system && echo yes)
# The install puts its own paths into the unit and the config file.
REWRITE_PATHS := sed -e 's|/opt/enforcer|$(PREFIX)|g' -e 's|/etc/enforcer|$(CONFDIR)|g'

.PHONY: install uninstall

install: headers
	@test "$$(id -u)" = 0 || { echo "make install must run as root"; exit 1; }
	@missing=""; \
	for p in $(RUN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@test -x $(INSTALL_VENV)/bin/python || /usr/bin/python3 -m venv --system-site-packages $(INSTALL_VENV)
	$(INSTALL_VENV)/bin/python -m pip install -q --upgrade '$(CURDIR)'
	@$(INSTALL_VENV)/bin/python -c 'import bcc' || { echo "bcc does not import in $(INSTALL_VENV): is python3-bpfcc installed?"; exit 1; }
	install -d -o root -g root -m 0755 $(CONFDIR) $(CONFDIR)/policies
	@if [ -e $(CONFDIR)/enforcer.env ]; then \
	  echo "keeping $(CONFDIR)/enforcer.env"; \
	else \
	  $(REWRITE_PATHS) systemd/enforcer.env > $(CONFDIR)/enforcer.env.new; \
	  chmod 0644 $(CONFDIR)/enforcer.env.new; \
	  mv $(CONFDIR)/enforcer.env.new $(CONFDIR)/enforcer.env; \
	  echo "installed $(CONFDIR)/enforcer.env"; \
	fi
	@if [ -z "$$(ls -A $(CONFDIR)/policies)" ]; then \
	  install -o root -g root -m 0644 policies/*.yaml policies/*.example $(CONFDIR)/policies/; \
	  echo "installed the example policies in $(CONFDIR)/policies"; \
	else \
	  echo "keeping the policies in $(CONFDIR)/policies"; \
	fi
	install -d -m 0755 $(UNITDIR)
	$(REWRITE_PATHS) systemd/enforcer.service > $(UNITDIR)/enforcer.service.new
	chmod 0644 $(UNITDIR)/enforcer.service.new
	mv $(UNITDIR)/enforcer.service.new $(UNITDIR)/enforcer.service
	@getent group $(SERVICE_GROUP) >/dev/null || groupadd --system $(SERVICE_GROUP)
	@if [ "$(SYSTEMD_BOOTED)" = yes ]; then \
	  systemctl daemon-reload; \
	  echo "installed. Start it with: systemctl enable --now enforcer"; \
	  if systemctl -q is-active enforcer.service; then \
	    echo "enforcer is running an older version: systemctl restart enforcer"; \
	  fi; \
	else \
	  echo "installed. systemd is not PID 1 here: run $(INSTALL_VENV)/bin/enforcer run yourself"; \
	fi

uninstall:
	@test "$$(id -u)" = 0 || { echo "make uninstall must run as root"; exit 1; }
	@if [ "$(SYSTEMD_BOOTED)" = yes ] && [ -e $(UNITDIR)/enforcer.service ]; then \
	  systemctl disable --now enforcer.service; \
	fi
	rm -f $(UNITDIR)/enforcer.service
	@if [ "$(SYSTEMD_BOOTED)" = yes ]; then systemctl daemon-reload; fi
	@# The programs a daemon left enforcing (--keep-on-exit) go, held execs go on.
	@if [ -d $(PINDIR) ] && [ -x $(INSTALL_VENV)/bin/enforcer ]; then \
	  $(INSTALL_VENV)/bin/enforcer unload --pin-dir $(PINDIR); \
	fi
	rm -rf $(INSTALL_VENV)
	@rmdir $(PREFIX) 2>/dev/null || true
	rm -f $(CONFDIR)/enforcer.env
	rm -rf $(PINDIR) /var/cache/enforcer
	@if [ -n "$(PURGE)" ]; then \
	  rm -rf $(CONFDIR)/policies $(STATEDIR); \
	  if getent group $(SERVICE_GROUP) >/dev/null; then groupdel $(SERVICE_GROUP); fi; \
	  echo "removed the policies, the state and group $(SERVICE_GROUP)"; \
	else \
	  echo "kept $(CONFDIR)/policies and group $(SERVICE_GROUP) (PURGE=1 removes them)"; \
	fi
	@rmdir $(CONFDIR) 2>/dev/null || true
