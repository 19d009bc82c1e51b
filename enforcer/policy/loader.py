"""Reading ExecPolicy YAML files and directories into validated policies.

Loading never stops at the first mistake: every problem found is collected, each naming the
file, the line and the field path as the user wrote it (`spec.rules[0].match.names[1]`), so one
run of `enforcer check` lists everything to fix.

Reading a file's YAML is `enforcer.policy.yaml_reader`'s part (it bounds what a file may cost),
locating and wording what is wrong is `enforcer.policy.problems`'; this module reads files and
directories, and decides which policy keeps a name used twice.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import Node

from enforcer.errors import PolicyError
from enforcer.policy.model import ExecPolicy
from enforcer.policy.permissions import unsafe_reason
from enforcer.policy.problems import (
    Loc,
    PolicyProblem,
    locate,
    problem_at,
    validation_problem,
    yaml_type_name,
)
from enforcer.policy.yaml_reader import (
    MAX_FILE_BYTES,
    BadNodeError,
    plain,
    read_documents,
    yaml_problem,
)

POLICY_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy and where it came from."""

    policy: ExecPolicy
    source: Path
    line: int  # 1-based line where the policy's document starts
    name_line: int | None = None  # 1-based line of metadata.name, where a reused name is blamed


@dataclass(frozen=True)
class LoadResult:
    """Every valid policy found, and every problem found; policies with problems are left out.

    A policy name used by several policies is kept by the first one read; every other one is
    left out with a problem naming both files. `keeping_names_in_force` decides again for a
    daemon, whose policies in force keep their names against newcomers.
    """

    policies: tuple[LoadedPolicy, ...]
    problems: tuple[PolicyProblem, ...]
    # What `keeping_names_in_force` decides from: every valid policy read, in load order (those
    # left out for a reused name too), and the problems other than reused names. None when the
    # result was not made by the loader.
    candidates: tuple[LoadedPolicy, ...] | None = field(default=None, repr=False, compare=False)
    file_problems: tuple[PolicyProblem, ...] = field(default=(), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when nothing was wrong, i.e. `policies` is the complete policy set."""
        return not self.problems

    def keeping_names_in_force(self, in_force: Iterable[LoadedPolicy]) -> LoadResult:
        """This result, with each reused policy name left to the file that holds it in force.

        `in_force` are the policies enforced now. When a file read now defines a name that
        another file holds in force, the newcomer is refused, whichever file sorts first; so is
        a newcomer taking the name of a policy whose file now has problems, since the daemon
        keeps that policy's last good version (see `Engine.reload`). A name no longer defined
        by the file that held it is free for the first file that defines it.
        """
        if self.candidates is None:
            return self
        holders = {loaded.policy.name: loaded.source for loaded in in_force}
        return _decide_names(self.candidates, self.file_problems, holders)


@dataclass(frozen=True)
class SetProblem:
    """Something wrong with a set of valid policies together, blamed on one of them.

    `index` is the blamed policy's position in the sequence checked, `loc` the field in it
    (pydantic's location, e.g. ("spec", "rules", 3, "match", "names")).
    """

    index: int
    loc: Loc
    message: str


# Checks a set of valid policies as a whole, e.g. enforcer.policy.capacity.set_problems.
SetCheck = Callable[[Sequence[ExecPolicy]], Iterable[SetProblem]]


def load_policies(paths: Iterable[Path], *, check_set: SetCheck | None = None) -> LoadResult:
    """Load policy files, and the `*.yaml`/`*.yml` files directly inside policy directories.

    `check_set`, if given, checks the valid policies together once they are read; a policy it
    blames is left out, with a problem on its file.
    """
    loader = _Loader()
    for path in paths:
        loader.add_path(Path(path))
    return loader.result(check_set)


def load_policy_text(text: str, source: Path) -> LoadResult:
    """Load policies from YAML text; `source` is the name problems are reported against."""
    loader = _Loader()
    loader.add_text(text, source)
    return loader.result()


def load_policies_or_raise(paths: Iterable[Path]) -> tuple[LoadedPolicy, ...]:
    """Like `load_policies`, but raise `PolicyError` listing every problem if there is any."""
    result = load_policies(paths)
    if not result.ok:
        problems: list[object] = list(result.problems)
        raise PolicyError(problems)
    return result.policies


def is_policy_file_name(name: str) -> bool:
    """Whether a directory entry with this name is read as a policy file.

    Hidden entries are skipped, so a Kubernetes ConfigMap volume (whose files also appear under
    `..data/` and `..<timestamp>/`) is read once; so are editor leftovers (`x.yaml~`, `#x#`,
    `.x.yaml.swp`).
    """
    if name.startswith(".") or name.endswith("~") or (name.startswith("#") and name.endswith("#")):
        return False
    return name.lower().endswith(POLICY_SUFFIXES)


@dataclass
class _Loader:
    """Accumulates policies and problems across files; decides reused names once all are read."""

    # Valid policies in load order, each with its YAML document (to locate set problems).
    candidates: list[LoadedPolicy] = field(default_factory=list)
    documents: list[CommentedMap] = field(default_factory=list)
    problems: list[PolicyProblem] = field(default_factory=list)
    files_read: set[Path] = field(default_factory=set)

    def result(self, check_set: SetCheck | None = None) -> LoadResult:
        decided = _decide_names(tuple(self.candidates), tuple(self.problems), {})
        if check_set is None:
            return decided
        pairs = zip(self.candidates, self.documents, strict=True)
        documents = {id(loaded): document for loaded, document in pairs}
        blamed: set[int] = set()
        set_problems = []
        for found in check_set([loaded.policy for loaded in decided.policies]):
            loaded = decided.policies[found.index]
            blamed.add(id(loaded))
            document = documents[id(loaded)]
            set_problems.append(problem_at(document, loaded.source, found.loc, found.message))
        # The names stay decided as they were: a policy refused here gives its name to no one.
        return LoadResult(
            policies=tuple(p for p in decided.policies if id(p) not in blamed),
            problems=(*decided.problems, *set_problems),
            candidates=tuple(c for c in self.candidates if id(c) not in blamed),
            file_problems=(*self.problems, *set_problems),
        )

    def add_path(self, path: Path) -> None:
        try:
            if path.is_dir():
                if (reason := unsafe_reason(path)) is not None:
                    self._problem(path, None, reason)
                    return
                for file in self._policy_files_in(path):
                    self.add_file(file)
            elif path.exists():
                self.add_file(path)
            else:
                self._problem(path, None, "no such file or directory")
        except OSError as e:
            self._problem(path, None, f"cannot read: {e.strerror or e}")

    def _policy_files_in(self, directory: Path) -> Iterator[Path]:
        # Not recursive: a policy directory is flat, and ConfigMap volumes nest copies in it.
        for entry in sorted(directory.iterdir()):
            if is_policy_file_name(entry.name) and entry.is_file():
                yield entry

    def add_file(self, file: Path) -> None:
        # The same file named twice (directly and through its directory) is read once;
        # reading it again would report each of its policies as a duplicate of itself.
        resolved = file.resolve()
        if resolved in self.files_read:
            return
        self.files_read.add(resolved)
        try:
            if not stat.S_ISREG(os.stat(file).st_mode):
                # A FIFO or a device would block or never end: only regular files are read.
                self._problem(file, None, "not a regular file: name a policy file or directory")
                return
            if (reason := unsafe_reason(file)) is not None:
                self._problem(file, None, reason)
                return
            with file.open("rb") as stream:
                data = stream.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            self._problem(file, None, f"cannot read: {e.strerror or e}")
            return
        if len(data) > MAX_FILE_BYTES:
            self._problem(file, None, _TOO_LARGE)
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            self._problem(file, line, f"not valid UTF-8 (byte {e.start}); save the file as UTF-8")
            return
        self.add_text(text, file)

    def add_text(self, text: str, source: Path) -> None:
        if len(text) > MAX_FILE_BYTES:  # characters: never more than the file's bytes
            self._problem(source, None, _TOO_LARGE)
            return
        try:
            for document, node in read_documents(text):
                self._add_document(document, node, source)
        except BadNodeError as e:
            self.problems.append(e.problem(source))
        except YAMLError as e:
            self.problems.append(yaml_problem(e, source, text))

    def _add_document(self, document: object, node: Node, source: Path) -> None:
        if document is None:  # an empty document, e.g. a trailing '---'
            return
        if not isinstance(document, CommentedMap):
            self._problem(
                source,
                node.start_mark.line + 1,
                f"a policy document must be a mapping with apiVersion, kind, metadata and spec, "
                f"not {yaml_type_name(document)}",
            )
            return
        try:
            policy = ExecPolicy.model_validate(plain(document))
        except ValidationError as e:
            found = [validation_problem(err, document, source) for err in e.errors()]
            self.problems.extend(sorted(found, key=lambda p: p.line or 0))
            return
        name_line, _ = locate(document, ("metadata", "name"))
        self.candidates.append(LoadedPolicy(policy, source, document.lc.line + 1, name_line))
        self.documents.append(document)

    def _problem(self, file: Path, line: int | None, message: str, path: str = "") -> None:
        self.problems.append(PolicyProblem(file, line, path, message))


_TOO_LARGE = (
    f"larger than {MAX_FILE_BYTES} bytes (1 MiB), the most a policy file may hold; "
    "split its policies into several files"
)


def _decide_names(
    candidates: tuple[LoadedPolicy, ...],
    file_problems: tuple[PolicyProblem, ...],
    holders: Mapping[str, Path],
) -> LoadResult:
    """The result where each policy name is kept by one policy and reused names are problems.

    The name goes to the policy from `holders[name]` (the file holding it in force) if that file
    still defines it, else to no one if that file now has problems (its last good version stays
    in force), else to the first policy read that defines it.
    """
    broken = {problem.file for problem in file_problems}
    by_name: dict[str, list[LoadedPolicy]] = {}
    for loaded in candidates:
        by_name.setdefault(loaded.policy.name, []).append(loaded)
    winners: set[int] = set()
    clashes: list[PolicyProblem] = []
    for name, contenders in by_name.items():
        holder = holders.get(name)
        winner = next((c for c in contenders if c.source == holder), None)
        held_elsewhere = holder is not None and (holder in broken or holder.parent in broken)
        if winner is None and not held_elsewhere:
            winner = contenders[0]
        if winner is not None:
            winners.add(id(winner))
        for loser in contenders:
            if loser is not winner:
                clashes.append(_reused_name(loser, winner, holder))
    return LoadResult(
        policies=tuple(c for c in candidates if id(c) in winners),
        problems=(*file_problems, *clashes),
        candidates=candidates,
        file_problems=file_problems,
    )


def _reused_name(
    loser: LoadedPolicy, winner: LoadedPolicy | None, holder: Path | None
) -> PolicyProblem:
    name = loser.policy.name
    rule = "policy names must be unique across all policy files: rename one of them"
    if winner is None:
        message = (
            f"policy name {name!r} is held by the policy in force from {holder}, kept while "
            f"that file has problems; {rule}, or fix {holder} first"
        )
    else:
        where = f"{winner.source}:{winner.name_line or winner.line}"
        in_force = " (the one in force)" if winner.source == holder else ""
        message = f"policy name {name!r} is already defined at {where}{in_force}; {rule}"
    return PolicyProblem(loser.source, loser.name_line, "metadata.name", message)
