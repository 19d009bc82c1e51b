"""Container image references, and the image patterns of `containers.images`.

A reference is `[registry[:port]/]path[:tag][@algorithm:hex]`, e.g. `nginx`,
`docker.io/library/nginx:1.25`, `localhost:5000/app:1` or `nginx@sha256:<64 hex>`. Runtimes
record it in different forms: podman always fully qualified (`docker.io/library/nginx:1.25`,
`localhost/busybox:test`), docker as the user typed it (`nginx:1.25`). A pattern matches any of
the forms in `repository_forms`, so users can write an image the way their tool shows it.

Pure string functions: the policy model validates patterns with `check_image_pattern`, the
compiler matches them with `image_matches`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

DOCKER_HUB = "docker.io/"
DOCKER_OFFICIAL = "docker.io/library/"
PODMAN_LOCAL = "localhost/"
IMPLICIT_TAG = "latest"

# OCI image spec: algorithm ":" encoded; sha256 is the one every runtime uses.
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class ImageRef:
    """A reference (or pattern) split into its parts; `tag` and `digest` are None if absent."""

    repository: str  # registry and path, e.g. "localhost:5000/app"
    tag: str | None
    digest: str | None  # e.g. "sha256:<64 hex>", without the '@'


def split_image(reference: str) -> ImageRef:
    """Split at the digest's '@' and at a tag's ':' (one after the last '/', not a port's)."""
    name, at, digest = reference.partition("@")
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return ImageRef(name[:colon], name[colon + 1 :], digest if at else None)
    return ImageRef(name, None, digest if at else None)


def repository_forms(repository: str) -> tuple[str, ...]:
    """The repository as recorded, then the other form users know it by.

    `docker.io/library/nginx` is shown as `nginx`, `docker.io/team/app` as `team/app` and
    podman's `localhost/busybox` as `busybox`; the other way round, a name without a registry
    (docker records `nginx` as typed) is what docker pulls: `docker.io/library/nginx`.
    """
    for prefix in (DOCKER_OFFICIAL, DOCKER_HUB, PODMAN_LOCAL):
        if repository.startswith(prefix):
            return (repository, repository.removeprefix(prefix))
    first, slash, _ = repository.partition("/")
    if slash and (first == "localhost" or any(c in first for c in ".:")):
        return (repository,)  # names its registry, e.g. registry.example.com/team/app
    return (repository, (DOCKER_HUB if slash else DOCKER_OFFICIAL) + repository)


def image_matches(pattern: str, image: str) -> bool:
    """Whether an image pattern (already valid, see `check_image_pattern`) matches `image`.

    Without a tag, the pattern matches every tag; with one, the tag is a glob too, and an image
    recorded with neither tag nor digest has the tag `latest`. A pattern with a digest matches
    that digest only, and its repository (and tag, if it gives one) exactly, not as a glob.
    """
    if not image:
        return False
    want, have = split_image(pattern), split_image(image)
    if want.digest is not None:
        return (
            want.digest == have.digest
            and want.repository in repository_forms(have.repository)
            and want.tag in (None, have.tag)
        )
    if want.tag is not None:
        tag = have.tag
        if tag is None and have.digest is None:
            tag = IMPLICIT_TAG
        if tag is None or not fnmatchcase(tag, want.tag):
            return False
    return any(fnmatchcase(form, want.repository) for form in repository_forms(have.repository))


def check_image_pattern(pattern: str) -> str:
    """The pattern itself, or ValueError saying what is wrong with it and how to write it."""
    if not pattern or any(c.isspace() or not c.isprintable() for c in pattern):
        raise ValueError(
            f"{pattern!r} is not an image pattern: write the image as `docker ps` or "
            "`podman ps` shows it, e.g. 'nginx', 'nginx:1.25' or 'registry.example.com/team/*'"
        )
    ref = split_image(pattern)
    if not ref.repository or ref.repository.startswith("/") or ref.repository.endswith("/"):
        raise ValueError(
            f"{pattern!r} has no repository name: write it before any tag or digest, "
            "e.g. 'nginx:1.25'"
        )
    if ref.tag == "":
        raise ValueError(
            f"{pattern!r} ends its tag with nothing after ':': give a tag such as "
            f"'{ref.repository}:1.25', or leave out the ':' to match every tag"
        )
    if ref.digest is not None:
        _check_digest(pattern, ref.digest)
    return pattern


def _check_digest(pattern: str, digest: str) -> None:
    if not _DIGEST_RE.fullmatch(digest) or (
        digest.startswith("sha256:") and not _SHA256_RE.fullmatch(digest)
    ):
        raise ValueError(
            f"{pattern!r} has a malformed digest: write '@sha256:' and the 64 lowercase hex "
            "digits `docker images --digests` shows"
        )
    if _GLOB_CHARS.intersection(pattern):
        raise ValueError(
            f"{pattern!r} has a digest, which names one image exactly, and also '*', '?' or "
            "'[': drop the digest to use a glob, or the glob to pin the digest"
        )
