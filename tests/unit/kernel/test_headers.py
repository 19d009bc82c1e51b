"""The kernel headers bcc compiles against: made for this kernel, another one, or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from enforcer.kernel import headers
from enforcer.kernel.headers import HeadersState, classify_headers


def test_headers_are_classified_against_the_running_release() -> None:
    assert classify_headers("6.1.0-26-amd64", "6.1.0-26-amd64") is HeadersState.MATCHING
    assert classify_headers("6.18.44-fc-v782", "6.1.0-26-amd64") is HeadersState.MISMATCHED
    assert classify_headers("6.18.44-fc-v782", None) is HeadersState.MISSING


def _header_tree(root: Path, made_for: str) -> Path:
    tree = root / f"linux-headers-{made_for}"
    (tree / "include" / "generated").mkdir(parents=True)
    (tree / "include" / "generated" / "utsrelease.h").write_text(
        f'#define UTS_RELEASE "{made_for}"\n'
    )
    return tree


def test_a_build_link_to_another_kernels_headers_is_mismatched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(headers, "MODULES", tmp_path / "modules")
    monkeypatch.setattr(headers, "KHEADERS", tmp_path / "no-kheaders")
    (tmp_path / "modules" / "6.18.44").mkdir(parents=True)
    (tmp_path / "modules" / "6.18.44" / "build").symlink_to(_header_tree(tmp_path, "6.1.0-26"))
    (tmp_path / "modules" / "6.1.0-26").mkdir(parents=True)
    (tmp_path / "modules" / "6.1.0-26" / "build").symlink_to(_header_tree(tmp_path, "6.1.0-26x"))

    other = headers.probe_headers("6.18.44")
    assert (other.state, other.release) == (HeadersState.MISMATCHED, "6.1.0-26")
    assert other.path == str(tmp_path / "linux-headers-6.1.0-26")
    assert headers.probe_headers("6.1.0-26").state is HeadersState.MISMATCHED
    assert headers.probe_headers("5.10.0").state is HeadersState.MISSING


def test_matching_headers_and_kheaders_count_as_matching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(headers, "MODULES", tmp_path / "modules")
    monkeypatch.setattr(headers, "KHEADERS", tmp_path / "kheaders.tar.xz")
    (tmp_path / "modules" / "6.1.0-26").mkdir(parents=True)
    (tmp_path / "modules" / "6.1.0-26" / "build").symlink_to(_header_tree(tmp_path, "6.1.0-26"))
    assert headers.probe_headers("6.1.0-26").state is HeadersState.MATCHING

    (tmp_path / "kheaders.tar.xz").write_bytes(b"")
    assert headers.probe_headers("6.2.0").state is HeadersState.MATCHING
