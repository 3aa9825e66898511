"""Warm worker processes, one candidate at a time each, killed and replaced when user
code hangs, crashes the interpreter, calls os._exit or eats memory.

The parent never imports torch: workers pay that once each and keep it for the batch.
Each worker gets its own process group (so a child it spawns dies with it) and a
stderr log, whose last line explains a crash.
"""

from __future__ import annotations

import collections
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from . import confine
from .types import Candidate, Verdict, VerifySettings
from .worker import HEADER, send

STARTUP_TIMEOUT_S = 120.0  # importing torch on a cold, busy machine
# a worker's CPU seconds over its whole life (each candidate has its wall-clock limit; this
# one also binds a child that left the worker's process group)
WORKER_CPU_S = 7200
_POLL_S = 0.05
_GROUP_EXIT_S = 2.0  # how long `kill_group` waits for a killed group to be gone
# every worker started and not yet collected: what a Ctrl-C or SIGTERM must stop (`_stop`)
_STARTED: weakref.WeakSet = weakref.WeakSet()
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerCrashed(Exception):
    pass


class WorkerTimedOut(Exception):
    pass


class Worker:
    """One `python -m loopvec.verify.worker` process."""

    def __init__(self, log_dir: str, memory_mb: int) -> None:
        self.memory_bytes = memory_mb * 1024 * 1024
        fd, self.log_path = tempfile.mkstemp(prefix="worker-", suffix=".log", dir=log_dir)
        os.close(fd)
        # its cwd, HOME and TMPDIR, the only folder it may write to (`confine`)
        folder = confine.make_folder(log_dir)
        env = confine.worker_env(dict(os.environ), folder, confine.Limits(memory_mb, WORKER_CPU_S))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        # hypothesis caches what it reads off the user's modules (and would keep examples)
        # under ./.hypothesis, whatever the settings' database: keep it in the worker's folder
        env["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(folder, "hypothesis")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loopvec.verify.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=folder,
                start_new_session=True,  # its own process group, killed whole at the end
            )
        _STARTED.add(self)
        self.buffer = b""
        self.ready = False
        self.sandboxed = ""  # what the worker's confinement achieved, from its "ready" message

    # ------------------------------------------------------------------ protocol

    def wait_ready(self, timeout_s: float) -> None:
        if not self.ready:
            message = self._read(time.monotonic() + timeout_s)
            self.sandboxed = message[2] if len(message) > 2 else ""
            self.ready = True

    def check(self, cand: Candidate, settings: VerifySettings) -> Verdict:
        os.truncate(self.log_path, 0)  # the log then explains this candidate only
        try:
            send(self.proc.stdin, ("check", _absolute(cand), settings))
        except (BrokenPipeError, OSError):
            raise WorkerCrashed(self.crash_reason()) from None
        _, verdict = self._read(time.monotonic() + settings.timeout_s)
        return replace(verdict, sandboxed=self.sandboxed)

    def _read(self, deadline: float) -> Any:
        """The next message; raises WorkerTimedOut or WorkerCrashed."""
        fd = self.proc.stdout.fileno()
        while True:
            message = self._take()
            if message is not None:
                return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimedOut()
            ready, _, _ = select.select([fd], [], [], min(left, _POLL_S))
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self.proc.wait()
                    raise WorkerCrashed(self.crash_reason())
                self.buffer += chunk
            elif self.rss() > self.memory_bytes:
                self.kill()
                raise WorkerCrashed(f"memory limit exceeded ({self.memory_bytes >> 20} MiB)")

    def _take(self) -> Any:
        if len(self.buffer) < HEADER.size:
            return None
        (size,) = HEADER.unpack(self.buffer[: HEADER.size])
        end = HEADER.size + size
        if len(self.buffer) < end:
            return None
        data, self.buffer = self.buffer[HEADER.size : end], self.buffer[end:]
        return pickle.loads(data)

    # ------------------------------------------------------------------ state

    def rss(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):  # not Linux, or the process is gone
            return 0

    def crash_reason(self) -> str:
        code = self.proc.poll()
        if code is None:
            how = "stopped answering"
        elif code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        last = _last_line(self.log_path)
        return f"{how}: {last}" if last else how

    def kill(self) -> None:
        """Kill the worker and every process left in its group (a child user code forked)."""
        kill_group(self.proc)
        self._close_pipes()

    def close(self) -> None:
        """Let the worker finish on end of input, then kill what is left of its group."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        kill_group(self.proc, grace_s=5.0)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


def kill_group(proc: subprocess.Popen, grace_s: float = 0.0) -> None:
    """Kill `proc`'s whole process group (it leads one: `start_new_session`), and reap it.

    `proc` may first exit by itself for up to `grace_s`; it is reaped only after the group
    is killed. The group's id stays taken while the zombie or any member lives, so the kill
    cannot reach an unrelated process that took that number.
    """
    deadline = time.monotonic() + grace_s
    while proc.returncode is None:
        if not hasattr(os, "waitid"):  # macOS: reap it, then kill what is left of the group
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            break
        try:
            done = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped
            break
        if done is not None or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # also when the leader is gone: its children are not
    except ProcessLookupError:  # nothing left in the group
        pass
    except PermissionError:
        if proc.returncode is None:
            proc.kill()
    proc.wait()
    # SIGKILL takes a moment to end them all: return when none runs any more, so that
    # nothing of the group is left when the batch is over (orphans then wait, dead, for
    # init to reap them, which can take a second or two)
    deadline = time.monotonic() + _GROUP_EXIT_S
    while _group_running(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` is alive (not a zombie waiting to be reaped)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc (not Linux): the group still has members, zombies or not
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()  # after the command name
        except OSError:  # ended meanwhile
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _absolute(cand: Candidate) -> Candidate:
    """Paths as the caller meant them, whatever directory user code moves the worker to."""
    ref, new = cand.reference, cand.candidate
    return replace(
        cand,
        reference=replace(ref, path=os.path.abspath(ref.path)),
        candidate=replace(new, path=os.path.abspath(new.path)),
    )


def _last_line(path: str) -> str:
    """The line of the worker's stderr that says most about a crash."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for line in lines:
        if line.startswith("Fatal Python error"):
            return line
    return lines[-1][:300] if lines else ""


def run_batch(cands: Sequence[Candidate], settings: VerifySettings) -> list[Verdict]:
    """Verdicts for `cands`, in order, from `settings.workers` warm workers."""
    results: list[Verdict | None] = [None] * len(cands)
    queue = collections.deque(enumerate(cands))
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="loopvec-verify-") as log_dir:

        def next_job() -> tuple[int, Candidate] | None:
            with lock:
                return queue.popleft() if queue else None

        def slot() -> None:
            worker: Worker | None = None  # started by `_run_one`, which says when it cannot be
            try:
                while (job := next_job()) is not None:
                    i, cand = job
                    results[i], worker = _run_one(worker, cand, settings, log_dir)
            finally:
                if worker is not None:
                    worker.close()
                with lock:
                    running[0] -= 1

        threads = [threading.Thread(target=slot, daemon=True) for _ in range(max(1, min(settings.workers, len(cands))))]
        # slots not finished yet: after a join a signal interrupted, `is_alive` may say no for a
        # thread that still runs (Python 3.11 marks it stopped)
        running = [len(threads)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        except BaseException:  # Ctrl-C or SIGTERM (raised here): stop every worker before log_dir goes
            _stop(queue, lock, running)
            raise
    return [v if v is not None else Verdict("unverifiable", "not checked", key=c.key) for v, c in zip(results, cands)]


def _stop(queue: collections.deque, lock: threading.Lock, running: list[int]) -> None:
    """Stop a batch now: no job is started, and every worker is killed until the threads
    that drive them are done (one may start a worker again, once, after a crash), so none
    outlives the run or writes into the batch's folder once it is removed."""
    with lock:
        queue.clear()
    deadline = time.monotonic() + 10.0
    while running[0] and time.monotonic() < deadline:
        for worker in list(_STARTED):
            # only a worker not yet reaped: a reaped one's number may be another process's now
            if worker.proc.returncode is None:
                try:
                    os.killpg(worker.proc.pid, signal.SIGKILL)  # its thread sees the end of its output
                except OSError:
                    pass
        time.sleep(_POLL_S)


def _run_one(
    worker: Worker | None, cand: Candidate, settings: VerifySettings, log_dir: str
) -> tuple[Verdict, Worker | None]:
    """One candidate's verdict, and the worker to use next (None: start a new one)."""
    for attempt in (1, 2):
        if worker is None:
            try:
                worker = Worker(log_dir, settings.memory_mb)
            except OSError as e:  # no process to be had (too many, no memory): a verdict, not a thread's traceback
                return Verdict("unverifiable", f"verifier worker failed to start: {e.strerror or e}",
                               key=cand.key), None
        try:
            worker.wait_ready(STARTUP_TIMEOUT_S)
            break
        except (WorkerCrashed, WorkerTimedOut) as e:
            reason = str(e) or "no answer"
            worker.kill()
            worker = None
            if attempt == 2:
                return Verdict("unverifiable", f"verifier worker failed to start: {reason}", key=cand.key), None
    try:
        return worker.check(cand, settings), worker
    except WorkerTimedOut:
        worker.kill()
        return Verdict(
            "failed",
            f"timed out after {settings.timeout_s:g} s (the original or the rewrite did not return)",
            key=cand.key, sandboxed=worker.sandboxed,
        ), None
    except WorkerCrashed as e:
        worker.kill()
        return Verdict("failed", f"worker crashed: {e}", key=cand.key, sandboxed=worker.sandboxed), None
