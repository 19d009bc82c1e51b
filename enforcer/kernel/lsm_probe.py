"""Whether the kernel runs BPF LSM programs: one empty program, loaded and attached.

A kernel may list `bpf` among its active LSMs and still refuse every LSM
program (lockdown, a missing config option), so listing is not enough: the
probe makes the bpf() system calls the lsm backend would make.
"""

from __future__ import annotations

import errno
import os

from enforcer.bpf import syscall
from enforcer.kernel.btf import Btf, Kind

LSM_HOOK = "bprm_check_security"
# r0 = 0; exit: allow every exec.
_RETURN_ZERO = bytes.fromhex("b7000000000000009500000000000000")


def lsm_load_error(*, root: bool, lsm_active: tuple[str, ...], btf: Btf | None) -> str | None:
    """Why BPF LSM programs cannot run here, or None when one loaded and attached."""
    if not root:
        return "not tried: needs root"
    if "bpf" not in lsm_active:
        return "not tried: bpf is not an active LSM"
    if btf is None:
        return "not tried: the kernel has no BTF"
    return try_lsm_program(btf)


def try_lsm_program(btf: Btf) -> str | None:
    """Loads and attaches an empty LSM program on bprm_check_security, then removes it.

    Returns None when both worked, else what failed, e.g.
    "BPF_PROG_LOAD: EPERM (Operation not permitted)". The program allows
    every exec and lives for microseconds. A refusal is not loaded again for
    the verifier's log: only its errno is reported.
    """
    hook_id = btf.find(Kind.FUNC, f"bpf_lsm_{LSM_HOOK}")
    if hook_id is None:
        return f"the kernel's BTF has no bpf_lsm_{LSM_HOOK}"
    try:
        prog_fd = syscall.prog_load(
            syscall.PROG_TYPE_LSM, _RETURN_ZERO, "enforcer_probe",
            expected_attach_type=syscall.ATTACH_LSM_MAC, attach_btf_id=hook_id, explain=False,
        )  # fmt: skip
    except syscall.ProgramRejectedError as e:
        return f"BPF_PROG_LOAD: {_errno_text(e.errno)}"
    except syscall.UnsupportedArchitectureError as e:
        return str(e)
    try:
        os.close(syscall.raw_tracepoint_open(None, prog_fd))
        return None
    except OSError as e:
        return f"attaching to {LSM_HOOK}: {_errno_text(e.errno or 0)}"
    finally:
        os.close(prog_fd)


def _errno_text(number: int) -> str:
    return f"{errno.errorcode.get(number, str(number))} ({os.strerror(number)})"
