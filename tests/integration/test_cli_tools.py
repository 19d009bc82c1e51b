"""The one-command tools end to end: `enforcer block`, `count` and `trace` on the real kernel.

Each test runs the real command as a child process, reads its stdout line by line through a
reader thread (so a silent or hung tool fails the test at a deadline instead of blocking it),
drives real execs on the host and in runc containers, and stops the tool with the signal a
person or a service manager would send.
"""

from __future__ import annotations

import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from runc_helpers import RuncContainer, runc_container

from tests.support.wait import eventually

pytestmark = pytest.mark.root

KILLED = 137  # 128 + SIGKILL, as runc exec reports it
READY_TIMEOUT_S = 60.0  # compiling and loading the BPF program
LINE_TIMEOUT_S = 15.0
# How long one wait for a line lasts before wait_for looks at its deadline.
LINE_SLICE_S = 0.5
STOP_TIMEOUT_S = 15.0
COUNT_LINE = re.compile(r"^execve called (\d+) times$")
# TIME  PID  COMM  CONTAINER  FILE, as quick.trace_execs pads them.
TRACE_LINE = re.compile(
    r"^\d\d:\d\d:\d\d  (?P<pid>[ \d]{7})  .{16}  (?P<container>.{12})  (?P<file>.*)$"
)


class CliTool:
    """An `enforcer` subcommand running as a child; stdout is read by a thread into a queue."""

    def __init__(self, args: list[str], stderr_log: Path) -> None:
        self.args = args
        self.stderr_log = stderr_log
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        with stderr_log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "enforcer", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output: the process closed stdout

    def diagnostics(self) -> str:
        return (
            f"`enforcer {' '.join(self.args)}` (exit {self.process.poll()})\n"
            f"stdout so far:\n" + "\n".join(self.seen) + "\n"
            f"stderr:\n{self.stderr_log.read_text(errors='replace')}"
        )

    def next_line(self, timeout: float = LINE_TIMEOUT_S) -> str:
        """The next stdout line; fails the test at the deadline or at end of output."""
        try:
            line = self._take(timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics()}") from None
        if line is None:
            raise AssertionError(f"no output for {timeout} s\n{self.diagnostics()}")
        return line

    def wait_for(self, wanted: Callable[[str], bool], timeout: float = LINE_TIMEOUT_S) -> str:
        """Reads lines until one is `wanted`; fails the test if none is before the deadline."""
        try:
            line = eventually(
                lambda: self._take(LINE_SLICE_S),
                timeout,
                what="a wanted line",
                until=lambda taken: taken is not None and wanted(taken),
                interval=0,  # _take waits for the next line itself
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics()}") from None
        assert line is not None
        return line

    def _take(self, timeout: float) -> str | None:
        """The next line, None if none came within `timeout`; AssertionError at end of output."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            self._lines.put(None)  # stay at end of output for later calls
            raise AssertionError("output ended")
        self.seen.append(line)
        return line

    def drain(self) -> None:
        """Consumes the lines already printed, so the next one is printed from now on."""
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self._lines.put(None)
                return
            self.seen.append(line)

    def stop(self, signum: signal.Signals) -> int:
        """Sends `signum` and returns the exit code; fails the test if the tool lingers."""
        self.process.send_signal(signum)
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {STOP_TIMEOUT_S} s after {signum.name}\n{self.diagnostics()}"
            ) from None
        self._reader.join(STOP_TIMEOUT_S)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(STOP_TIMEOUT_S)


@contextmanager
def cli_tool(tmp_path: Path, *args: str) -> Iterator[CliTool]:
    """Runs `enforcer *args`; whatever happens, the process is gone when the block ends."""
    tool = CliTool(list(args), tmp_path / f"{args[0]}-{secrets.token_hex(4)}.stderr")
    try:
        yield tool
    finally:
        tool.kill()


@pytest.mark.runc
def test_block_kills_named_program_in_one_container_until_ctrl_c(tmp_path: Path) -> None:
    with runc_container(tmp_path) as a, runc_container(tmp_path) as b:
        short_id = a.id[:12]
        with cli_tool(tmp_path, "block", "--container", short_id, "whoami") as block:
            ready = block.wait_for(lambda line: line.startswith("blocking"), READY_TIMEOUT_S)
            assert "whoami" in ready
            assert short_id in ready

            killed = a.exec(["whoami"])
            assert (killed.returncode, killed.stdout) == (KILLED, "")
            kill_line = block.wait_for(lambda line: "killed" in line)
            assert "whoami" in kill_line
            assert short_id in kill_line

            other_program = a.exec(["id", "-u"])
            assert (other_program.returncode, other_program.stdout) == (0, "0\n")
            other_container = b.exec(["whoami"])
            assert (other_container.returncode, other_container.stdout) == (0, "root\n")

            assert block.stop(signal.SIGINT) == 0, block.diagnostics()
            assert not [line for line in block.seen if "killed" in line and line != kill_line]

        after = a.exec(["whoami"])
        assert (after.returncode, after.stdout) == (0, "root\n")


def test_block_unknown_container_fails_naming_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "enforcer", "block", "--container", "nonexistent", "whoami"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT_S,
        check=False,
    )
    assert result.returncode != 0
    assert "'nonexistent'" in result.stderr
    assert "blocking" not in result.stdout


def test_count_grows_by_the_execs_run_and_stops_on_sigterm(tmp_path: Path) -> None:
    execs = 20
    with cli_tool(tmp_path, "count", "--interval", "0.5") as count:

        def total(line: str) -> int:
            match = COUNT_LINE.match(line)
            assert match is not None, f"unexpected line {line!r}\n{count.diagnostics()}"
            return int(match.group(1))

        first = total(count.next_line(READY_TIMEOUT_S))
        count.drain()
        before = total(count.next_line())
        assert before >= first
        for _ in range(execs):
            subprocess.run(["/bin/true"], check=True, timeout=LINE_TIMEOUT_S)
        count.wait_for(lambda line: total(line) >= before + execs)

        assert count.stop(signal.SIGTERM) == 0, count.diagnostics()
        count.drain()
        totals = [total(line) for line in count.seen]
        assert len(totals) >= 3
        assert totals == sorted(totals), "the count is a running total: it never goes down"


def test_trace_shows_host_exec_with_its_pid(tmp_path: Path) -> None:
    program = tmp_path / f"enforcer-trace-{secrets.token_hex(6)}"
    shutil.copy2("/bin/true", program)
    with cli_tool(tmp_path, "trace") as trace:
        header = trace.wait_for(lambda line: line.startswith("TIME"), READY_TIMEOUT_S)
        assert header.split() == ["TIME", "PID", "COMM", "CONTAINER", "FILE"]

        child = subprocess.Popen([str(program)])
        try:
            assert child.wait(LINE_TIMEOUT_S) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        line = trace.wait_for(lambda line: line.endswith(str(program)))
        fields = TRACE_LINE.match(line)
        assert fields is not None, line
        assert int(fields["pid"]) == child.pid
        assert fields["container"].strip() == "host"
        assert fields["file"] == str(program)

        assert trace.stop(signal.SIGINT) == 0, trace.diagnostics()


def unique_true_in(container: RuncContainer) -> str:
    """A uniquely named path in `container` running busybox's `true` (it goes by the basename)."""
    path = f"/enforcer-trace-{secrets.token_hex(6)}/true"
    link = container.bundle / "rootfs" / path.lstrip("/")
    link.parent.mkdir()
    link.symlink_to("/bin/busybox")
    return path


def traced_exec_in(container: RuncContainer, trace: CliTool) -> re.Match[str]:
    """Runs a uniquely named program in `container` and returns the trace line for it."""
    program = unique_true_in(container)
    ran = container.exec([program])
    assert ran.returncode == 0, ran.stderr
    # The file that runs, and the symlink it was invoked by.
    shown = f"/bin/busybox (invoked as {program})"
    line = trace.wait_for(lambda line: line.endswith(shown))
    fields = TRACE_LINE.match(line)
    assert fields is not None, line
    assert fields["file"] == shown
    return fields


@pytest.mark.runc
def test_trace_shows_container_short_id(tmp_path: Path) -> None:
    with runc_container(tmp_path) as before, cli_tool(tmp_path, "trace") as trace:
        trace.wait_for(lambda line: line.startswith("TIME"), READY_TIMEOUT_S)
        assert traced_exec_in(before, trace)["container"] == before.id[:12]

        # A container started after the trace is named too, not shown as the host.
        with runc_container(tmp_path) as during:
            assert traced_exec_in(during, trace)["container"] == during.id[:12]

        assert trace.stop(signal.SIGINT) == 0, trace.diagnostics()


@dataclass
class Piped:
    """`enforcer ... | head -n N` once head exited: the tool, what head printed, its stderr."""

    tool: subprocess.Popen[bytes]
    printed: str
    stderr_log: Path

    def exit_code(self) -> int:
        """Waits for the tool to notice its reader is gone; fails the test if it does not."""
        try:
            return self.tool.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stderr = self.stderr_log.read_text(errors="replace")
            raise AssertionError(
                f"still running {STOP_TIMEOUT_S} s after its reader exited; stderr:\n{stderr}"
            ) from None


@contextmanager
def piped_into_head(tmp_path: Path, lines: int, *args: str) -> Iterator[Piped]:
    """Runs `enforcer *args | head -n lines` and yields once head has exited."""
    stderr_log = tmp_path / f"{args[0]}-{secrets.token_hex(4)}.stderr"
    with stderr_log.open("wb") as stderr:
        tool = subprocess.Popen(
            [sys.executable, "-m", "enforcer", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    head: subprocess.Popen[bytes] | None = None
    try:
        assert tool.stdout is not None
        head = subprocess.Popen(
            ["head", "-n", str(lines)], stdin=tool.stdout, stdout=subprocess.PIPE
        )
        tool.stdout.close()  # head holds the only read end now, as in a shell pipeline
        printed, _ = head.communicate(timeout=READY_TIMEOUT_S)
        yield Piped(tool, printed.decode(), stderr_log)
    finally:
        for process in (tool, head):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_trace_piped_into_head_stops_when_head_exits(tmp_path: Path) -> None:
    with piped_into_head(tmp_path, 1, "trace") as piped:
        assert piped.printed.startswith("TIME")
        # The next exec's line has nowhere to go.
        subprocess.run(["/bin/true"], check=True, timeout=LINE_TIMEOUT_S)
        assert piped.exit_code() == 0
        assert "Traceback" not in piped.stderr_log.read_text(errors="replace")


def test_count_piped_into_head_stops_when_head_exits(tmp_path: Path) -> None:
    with piped_into_head(tmp_path, 2, "count", "--interval", "0.2") as piped:
        assert len(piped.printed.splitlines()) == 2
        assert all(COUNT_LINE.match(line) for line in piped.printed.splitlines())
        assert piped.exit_code() == 0
        assert "Traceback" not in piped.stderr_log.read_text(errors="replace")


@pytest.mark.parametrize("interval", ["0", "-1"])
def test_count_rejects_a_non_positive_interval(interval: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "enforcer", "count", "--interval", interval],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=LINE_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 2  # click's usage error, before any BPF is loaded
    assert "--interval" in result.stderr
    assert result.stdout == ""


def test_run_in_a_pid_namespace_of_its_own_refuses_and_says_how(tmp_path: Path) -> None:
    """From a nested pid namespace the held execs could never be signalled: no start."""
    pin_dir = Path(f"/sys/fs/bpf/enforcer-test-{secrets.token_hex(4)}")
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
         sys.executable, "-m", "enforcer", "run", "--policies", str(tmp_path),
         f"--pin-dir={pin_dir}", "--socket", str(tmp_path / "s")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=READY_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "pid namespace of its own" in result.stderr
    assert "hostPID: true" in result.stderr
    assert not pin_dir.exists()  # nothing loaded, nothing pinned
