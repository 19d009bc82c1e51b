"""The kernel headers bcc compiles against, and whether they were made for this kernel.

bcc looks in /lib/modules/$(uname -r)/build, else in the kernel's own
compressed copy (CONFIG_IKHEADERS). A build link to another kernel's headers
compiles, but against that kernel's structs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from enforcer.kernel.mounts import exists, is_dir

MODULES = Path("/lib/modules")
KHEADERS = Path("/sys/kernel/kheaders.tar.xz")


class HeadersState(StrEnum):
    MATCHING = "matching"
    MISMATCHED = "mismatched"
    MISSING = "missing"


@dataclass(frozen=True)
class Headers:
    """The kernel headers bcc compiles against: /lib/modules/$(uname -r)/build."""

    state: HeadersState
    path: str  # where bcc finds them ("" when missing)
    release: str  # the kernel they were made for ("" when unknown)


NO_HEADERS = Headers(HeadersState.MISSING, "", "")


def probe_headers(release: str) -> Headers:
    """Whether the headers bcc will compile against were made for this kernel."""
    build = MODULES / release / "build"
    if not is_dir(build / "include"):
        if exists(KHEADERS):
            return Headers(HeadersState.MATCHING, str(KHEADERS), release)
        return NO_HEADERS
    made_for = headers_release(build)
    return Headers(classify_headers(release, made_for), str(build.resolve()), made_for)


def headers_release(build: Path) -> str:
    """The release a header tree was made for ("" if it does not say)."""
    try:
        text = (build / "include" / "generated" / "utsrelease.h").read_text()
    except OSError:
        return ""
    found = re.search(r'UTS_RELEASE\s+"([^"]+)"', text)
    return found[1] if found else ""


def classify_headers(release: str, made_for: str | None) -> HeadersState:
    if made_for is None:
        return HeadersState.MISSING
    return HeadersState.MATCHING if made_for == release else HeadersState.MISMATCHED
