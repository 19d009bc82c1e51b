"""Where a policy applies: containers chosen by what their runtime shows, namespaces, the host."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from enforcer.policy.fields import (
    ContainerId,
    ContainerNamePattern,
    ImagePattern,
    LabelMap,
    Labels,
    NetNamespace,
    PidNamespace,
    check_text,
    located_error,
    reject_duplicates,
)


class ContainerSelector(BaseModel):
    """Containers chosen by what `docker ps`, `podman ps` or `runc list` show about them.

    A container matches when every key given matches it, and a key matches when any one of its
    entries does (`labels` excepted: every label given must be present with that value):

    - `ids`: a full id, or a prefix matching exactly one container (docker's 12-character
      short id); a prefix matching none or several is reported, not guessed.
    - `names`: a glob (`fnmatch`, case-sensitive) on the container's name; a container without
      a name matches none.
    - `images`: a glob on `repository[:tag]`, see `enforcer.policy.images.image_matches`.
      `nginx` matches every tag of `nginx`, recorded as `nginx` or `docker.io/library/nginx`;
      a pattern with `@sha256:...` matches that digest exactly.
    - `labels`: exact values, e.g. `{team: blue}`; extra labels on the container do not matter.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    ids: tuple[ContainerId, ...] = ()
    names: tuple[ContainerNamePattern, ...] = ()
    images: tuple[ImagePattern, ...] = ()
    labels: LabelMap = Labels()

    @field_validator("ids", "names", "images")
    @classmethod
    def _listed(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # Runs only for keys that are given: an absent key is no condition, an empty list is
        # a condition nothing meets, most likely a mistake.
        field = info.field_name or "the list"
        if not value:
            raise ValueError(_EMPTY_CONTAINER_LIST[field])
        reject_duplicates(value, field)
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _label_keys_are_strings(cls, value: object) -> object:
        if isinstance(value, Mapping):
            for key in value:
                if not isinstance(key, str):
                    raise located_error(
                        f"label key {key!r} must be a string; put quotes around it", key
                    )
                try:
                    check_text(key)
                except ValueError as e:
                    raise located_error(f"label key {e}", key) from None
        return value

    @field_validator("labels")
    @classmethod
    def _labels_given(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        if not value:
            raise ValueError(
                "give at least one label, e.g. labels: {team: blue}, or leave out 'labels'"
            )
        for key in value:
            if not key:
                raise ValueError("a label key is empty: give keys such as 'team'")
            if any(c.isspace() or not c.isprintable() for c in key):
                raise located_error(
                    f"{key!r} is not a label key: label keys have no spaces, "
                    "e.g. 'team' or 'app.kubernetes.io/name'",
                    key,
                )
        return value

    @model_validator(mode="after")
    def _selects_by_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError(
                "containers needs at least one of ids, names, images or labels, e.g. "
                "names: [web-*]; to select every container use allContainers: true instead"
            )
        return self


_EMPTY_CONTAINER_LIST = {
    "ids": "list at least one container id or prefix, or use allContainers: true instead",
    "names": "list at least one container name or glob such as 'web-*', or leave out 'names'",
    "images": "list at least one image such as 'nginx' or 'nginx:1.25', or leave out 'images'",
}


class NamespaceSelector(BaseModel):
    """Containers chosen by the namespaces their init process (`Container.pid`) runs in.

    Like `ContainerSelector`, every key given must match and any entry of a key may:

    - `pid`: pid namespace inode numbers (`lsns -t pid`, `ls -Li /proc/PID/ns/pid`).
    - `net`: network namespaces, by name as `ip netns list` shows them or by inode number
      (`lsns -t net`). A name that does not exist when the policy is compiled matches nothing
      and is reported.

    Namespaces only ever select containers, never host processes: a container whose init
    process is unknown matches no namespace key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    pid: tuple[PidNamespace, ...] = ()
    net: tuple[NetNamespace, ...] = ()

    @field_validator("pid", "net")
    @classmethod
    def _listed(cls, value: tuple[int | str, ...], info: ValidationInfo) -> tuple[int | str, ...]:
        field = info.field_name or "the list"
        if not value:
            raise ValueError(
                f"list at least one {field} namespace, e.g. {field}: [4026532198], "
                f"or leave out '{field}'"
            )
        reject_duplicates(value, field)
        return value

    @model_validator(mode="after")
    def _selects_by_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError(
                "namespaces needs pid or net, e.g. net: [blue]; or leave out 'namespaces'"
            )
        return self


class Selector(BaseModel):
    """Where a policy applies: some containers, every container, and/or the host.

    - `containers` and `namespaces` select the containers that match every key they give
      (AND across keys, OR within one key's list): `containers: {images: [nginx]}` with
      `namespaces: {net: [blue]}` selects the nginx containers in network namespace blue.
    - `allContainers: true` selects every container. It cannot be combined with `containers`
      or `namespaces`, which it would make pointless.
    - `host: true` adds the processes outside any container to whatever containers are
      selected. Namespace keys never apply to host processes, so `host` with `namespaces` and
      no `containers` is refused: it would read as "host processes in these namespaces".
    - A selector must select something.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    containers: ContainerSelector | None = None
    namespaces: NamespaceSelector | None = None
    # Strict: pydantic would otherwise take "yes", "on", 1 or "true" (quoted) for true.
    host: StrictBool = False
    all_containers: StrictBool = Field(default=False, alias="allContainers")

    @model_validator(mode="after")
    def _selects_something(self) -> Self:
        narrowed = [
            key
            for key, value in (("containers", self.containers), ("namespaces", self.namespaces))
            if value is not None
        ]
        if self.all_containers and narrowed:
            raise located_error(
                "allContainers: true already selects every container; remove either "
                + " and ".join(f"'{key}'" for key in narrowed)
                + " or 'allContainers'",
                "allContainers",
            )
        if self.host and self.namespaces is not None and self.containers is None:
            raise located_error(
                "namespaces select containers, not host processes: host: true selects every "
                "process outside a container whatever its namespaces. Remove 'namespaces', or "
                "put the containers in these namespaces in a policy of their own",
                "namespaces",
            )
        if not (narrowed or self.host or self.all_containers):
            raise ValueError(
                "the selector selects nothing: set containers.ids, host: true or "
                "allContainers: true (containers can also be chosen by names, images, labels "
                "or namespaces)"
            )
        return self
