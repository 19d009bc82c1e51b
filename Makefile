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
TEST_PACKAGES := runc busybox-static gcc libc6-dev podman
POLICIES ?= policies

.PHONY: all setup packages headers venv run test unit lint bench clean

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

test: setup lint
	$(PY) -m pytest tests

bench: setup
	$(PY) bench/exec_cost.py

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache
