"""The sandbox a worker process puts itself in before it imports user code.

`apply` and `verify` run the functions they rewrite (the verifier's workers and the speed
gate's). The parent chooses, per worker, a private temporary folder (its cwd, `HOME` and
`TMPDIR`) and the limits, and passes them in the environment (`worker_env`); the worker
calls `confine()` first thing, while it is still one thread, and reports what held.

What `confine()` enforces, each where the platform offers it:
- `resource` limits: data segment (`RLIMIT_DATA`, which on Linux counts every private
  writable mapping: what torch's allocator takes) at the verifier's memory limit, CPU
  seconds, largest file written, no core files, and the number of processes;
- no writes outside the private folder (and `/dev/null`): Linux Landlock, read-only
  everywhere else. Landlock ABI >= 4 also refuses TCP bind/connect, ABI >= 6 signals to
  processes outside the sandbox (the user's shell, loopvec itself);
- no network: a network namespace of its own (only loopback, down), where `unshare` is
  permitted;
- as root, the capabilities that would let user code ignore the process limit
  (`CAP_SYS_RESOURCE`, `CAP_SYS_ADMIN`) or reach past the sandbox are dropped, from the
  bounding set too, so a child that executes a program does not get them back.
The parent puts each worker in a session of its own and kills that whole process group
at the end, so a child user code forks does not outlive the run. Landlock is called
directly (three system calls through `ctypes`): the `landlock` package on PyPI is a
pre-release that knows neither the network rules nor the signal scope.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import resource
import sys
import tempfile
from dataclasses import asdict, dataclass

ENV = "LOOPVEC_CONFINE"
FS_LANDLOCK = "landlock"
FS_OPEN = "limits only"

# Landlock (linux/landlock.h): system call numbers are the same on every architecture
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_CLONE_NEWNET, _CLONE_NEWUSER = 0x40000000, 0x10000000
# file rights that change the file system (reading and executing stay unrestricted)
_WRITE_FILE, _TRUNCATE = 1 << 1, 1 << 14
_FILE_WRITES = _WRITE_FILE | _TRUNCATE
_DIR_WRITES = sum(1 << b for b in (4, 5, 6, 7, 8, 9, 10, 11, 12, 13))  # remove/make/refer
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
# capabilities root gives up (linux/capability.h): the process limit's two exemptions
# (SYS_ADMIN, SYS_RESOURCE), and those that reach past the sandbox (SYS_MODULE, SYS_RAWIO,
# SYS_PTRACE, NET_ADMIN, MKNOD, SYS_BOOT, SYS_TIME)
_CAPS_DROPPED = (21, 24, 16, 17, 19, 12, 27, 22, 25)


@dataclass(frozen=True)
class Limits:
    """What one worker may use. `processes`: tasks (threads count) beyond those its user
    already runs, since the kernel counts `RLIMIT_NPROC` per user."""

    memory_mb: int
    cpu_s: int
    file_mb: int = 1024
    processes: int = 256


def make_folder(parent: str) -> str:
    """A fresh private folder for one worker, under the batch's temporary folder."""
    return tempfile.mkdtemp(prefix="sandbox-", dir=parent)


def worker_env(base: dict[str, str], folder: str, limits: Limits) -> dict[str, str]:
    """`base` with the worker's private folder as `HOME` and `TMPDIR`, and its limits."""
    env = dict(base)
    for name in ("HOME", "TMPDIR", "TMP", "TEMP"):
        env[name] = folder
    env.pop("XDG_CACHE_HOME", None)  # would send torch's and triton's caches outside
    env.pop("XDG_CONFIG_HOME", None)
    env[ENV] = json.dumps({"folder": folder, **asdict(limits)})
    return env


@dataclass(frozen=True)
class Held:
    """What `confine()` achieved, for the verdicts' `sandboxed` field."""

    files: str  # FS_LANDLOCK, or FS_OPEN with why
    network: str
    processes: bool  # the process limit applies (it does not to root with CAP_SYS_RESOURCE)

    def text(self) -> str:
        parts = [self.files, self.network]
        if not self.processes:
            parts.append("process count not limited")
        return ", ".join(parts)


def confine() -> str:
    """Confine this process as `$LOOPVEC_CONFINE` says; what holds, in words ("" if unset).

    Call it while the process has one thread (before importing torch): `unshare` of a user
    namespace and Landlock's restriction both act on the calling thread only.
    """
    raw = os.environ.pop(ENV, None)
    if not raw:
        return ""
    spec = json.loads(raw)
    folder = spec.pop("folder")
    limits = Limits(**spec)
    os.chdir(folder)
    _set_limits(limits)
    # the rest is Linux's (its system call numbers, /proc): elsewhere only the limits hold
    if not sys.platform.startswith("linux"):
        return Held(f"{FS_OPEN} (not Linux)", "network open", False).text()
    # before a user namespace gives it capabilities there, which do not exempt it
    processes = _limit_processes(limits.processes)
    network = _own_network()
    if os.geteuid() == 0:
        _drop_root_powers()
    files, tcp = _landlock(folder)
    if network != "no network":
        network = "no TCP (landlock)" if tcp else network
    return Held(files, network, processes).text()


# --------------------------------------------------------------------------- limits


def _set_limits(limits: Limits) -> None:
    mib = 1 << 20
    # the CUDA driver reserves address space that would count against the data limit:
    # there only the parent's watch on resident memory holds
    if not _has_cuda_device():
        _limit(resource.RLIMIT_DATA, limits.memory_mb * mib)
    _limit(resource.RLIMIT_CPU, limits.cpu_s)
    _limit(resource.RLIMIT_FSIZE, limits.file_mb * mib)
    _limit(resource.RLIMIT_CORE, 0)


def _limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):  # below what the process already uses: keep the old one
        pass


def _has_cuda_device() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def _limit_processes(allowance: int) -> bool:
    """Cap this user's tasks at those running now plus `allowance`; whether it applies."""
    # the kernel does not count against the limit for root, nor for CAP_SYS_RESOURCE or
    # CAP_SYS_ADMIN holders
    if os.getuid() == 0 or _has_capability(24) or _has_capability(21):
        return False
    _limit(resource.RLIMIT_NPROC, _user_tasks(os.getuid()) + allowance)
    return True


def _user_tasks(uid: int) -> int:
    count = 0
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            with open(status) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields.get("Threads", "1"))
        except (OSError, ValueError, KeyError):  # the process ended meanwhile
            continue
    return count


def _has_capability(cap: int) -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError):
        pass
    return False


# --------------------------------------------------------------------------- system calls


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _own_network() -> str:
    """A network namespace of its own: only a loopback interface, which is down."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWNET) == 0:
        return "no network"
    uid, gid = os.getuid(), os.getgid()
    # without CAP_SYS_ADMIN: a user namespace first, mapping the user to itself
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return "network open"
    try:
        for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"{uid} {uid} 1"),
                           ("/proc/self/gid_map", f"{gid} {gid} 1")):
            with open(path, "w") as f:
                f.write(text)
    except OSError:  # the namespace holds, its ids show as the overflow user
        pass
    return "no network"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_root_powers() -> None:
    libc = _libc()
    for cap in _CAPS_DROPPED:
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return
    for cap in _CAPS_DROPPED:
        word, bit = divmod(cap, 32)
        mask = ~(1 << bit) & 0xFFFFFFFF
        data[word].effective &= mask
        data[word].permitted &= mask
        data[word].inheritable &= mask
    libc.capset(ctypes.byref(header), data)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in linux/landlock.h
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none."""
    libc = _libc()
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(0, version)


def _landlock(folder: str) -> tuple[str, bool]:
    """Writes only under `folder` and to /dev/null; (what holds, whether TCP is refused)."""
    abi = landlock_abi()
    if abi < 1:
        return f"{FS_OPEN} (no Landlock in this kernel)", False
    libc = _libc()
    dirs = _DIR_WRITES if abi >= 2 else _DIR_WRITES & ~(1 << 13)  # REFER came with ABI 2
    files = _FILE_WRITES if abi >= 3 else _WRITE_FILE  # TRUNCATE with ABI 3
    attr = _RulesetAttr(dirs | files, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # older kernels refuse fields they do not know
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return f"{FS_OPEN} (Landlock refused: {os.strerror(ctypes.get_errno())})", False
    try:
        rules = [(folder, dirs | files), (os.devnull, files)]
        rules += [(dev, files) for dev in glob.glob("/dev/nvidia*")]  # CUDA opens its devices read-write
        for path, allowed in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rule = _PathBeneath(allowed if os.path.isdir(path) else allowed & files, fd)
                if libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    return f"{FS_OPEN} (Landlock refused a rule: {os.strerror(ctypes.get_errno())})", False
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"{FS_OPEN} (no_new_privs refused)", False
        if libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            why = "disabled at boot" if err == errno.EOPNOTSUPP else os.strerror(err)
            return f"{FS_OPEN} (Landlock: {why})", False
    finally:
        os.close(ruleset)
    return FS_LANDLOCK, abi >= 4
