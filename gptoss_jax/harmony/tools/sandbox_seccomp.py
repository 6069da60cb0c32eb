"""The seccomp policy of the python sandbox, compiled to a BPF program by libseccomp (through ``pyseccomp``).

bubblewrap loads the program (``--seccomp FD``) after it has set up the namespaces, just before it runs the
interpreter (the only process in the sandbox), so the policy binds everything the model's code does.
Everything is allowed except what could leave or attack the sandbox; those calls fail with EPERM (clone3 with
ENOSYS, so that the C library falls back to clone, whose flags can be checked). The code is one process: threads
are allowed (clone with CLONE_THREAD, counted by RLIMIT_NPROC), new processes are not (fork, vfork, clone without
CLONE_THREAD), so no fork bomb, no orphan and no second address space exists, and RLIMIT_AS bounds all of the
code's memory. Honest code lost nothing: the interpreter's audit hook already refused subprocesses. Calls made
through another architecture's ABI (x32, i386 ``int 0x80``) kill the process: libseccomp checks the architecture of
every call.
"""
from __future__ import annotations

import errno
import functools
import os

from .sandbox_command import SandboxUnavailable

# Namespaces, mounts, tracing and other processes' memory: the issue's list, and what an attacker reaches for next.
REFUSED_SYSCALLS = (
    # new processes (clone without CLONE_THREAD is refused below) and namespaces (clone with CLONE_NEW* flags too)
    "fork", "vfork", "unshare", "setns",
    # mounts and the root
    "mount", "umount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick",
    # tracing and other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    # kernel attack surface a Python program has no business with
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl",
    "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "iopl", "ioperm", "uselib",
    "name_to_handle_at", "open_by_handle_at", "lookup_dcookie", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "sethostname", "setdomainname", "fanotify_init", "nfsservctl", "vhangup", "move_pages",
    "migrate_pages",
)
CLONE_THREAD = 0x00010000
# Every CLONE_NEW* flag (time, cgroup, uts, ipc, user, pid, net, mount).
CLONE_NAMESPACE_FLAGS = (0x00000080, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
                         0x00020000)
# Must be refused: if libseccomp cannot name one of these on this machine, the policy is not built at all.
ESSENTIAL = frozenset({"unshare", "setns", "mount", "umount2", "pivot_root", "ptrace", "process_vm_readv",
                       "process_vm_writev", "clone"})


def _pyseccomp():
    try:
        import pyseccomp  # noqa: PLC0415 - loads libseccomp through ctypes; only the sandbox needs it
    except (ImportError, RuntimeError, OSError) as e:
        raise SandboxUnavailable(
            f"the python sandbox needs libseccomp and its Python binding to build its syscall filter ({e}); "
            "install them with `pip install pyseccomp` (part of this project's setup) and "
            "`apt-get install libseccomp2`") from e
    return pyseccomp


@functools.cache
def policy_bpf(allow_processes: bool = False) -> bytes:
    """The compiled BPF program (bytes, as ``bwrap --seccomp`` reads it). Built once per process.
    ``allow_processes`` lifts the single-process rule; only tests use it, to check the walls behind it."""
    sc = _pyseccomp()
    flt = sc.SyscallFilter(sc.ALLOW)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    refuse = sc.ERRNO(errno.EPERM)
    for name in REFUSED_SYSCALLS:
        if allow_processes and name in ("fork", "vfork"):
            continue
        if sc.resolve_syscall(sc.Arch.NATIVE, name) == -1:  # unknown to this libseccomp: not on this kernel ABI
            if name in ESSENTIAL:
                raise SandboxUnavailable(f"libseccomp cannot name the syscall {name!r}; upgrade libseccomp2")
            continue
        flt.add_rule(refuse, name)
    if not allow_processes:
        flt.add_rule(refuse, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))  # a process, not a thread
    for flag in CLONE_NAMESPACE_FLAGS:
        flt.add_rule(refuse, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    if sc.resolve_syscall(sc.Arch.NATIVE, "clone3") != -1:
        flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    fd = os.memfd_create("gptoss-sandbox-seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as buf:
        flt.export_bpf(buf)
        buf.seek(0)
        return buf.read()
