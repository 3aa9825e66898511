"""Stopping a run: SIGTERM stops it as Ctrl-C does (workers killed, temporary folders
removed, one line), and a worker that cannot be started is one line, not a traceback."""

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopvec.cli import app
from loopvec.verify import Candidate, Impl, VerifySettings, verify_candidates

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")

MAP = """import torch


def double(x: torch.Tensor) -> torch.Tensor:
    out = []
    for v in x:
        out.append(v * 2)
    return torch.stack(out)
"""
# importing the module takes a minute: verification is still running when the signal comes;
# the worker's log (in the verifier's temporary folder) says when it has begun
STARTED = "importing m: sleeping"
SLOW = MAP.replace("import torch\n", f"import sys\nimport time\n\nimport torch\n\n"
                                     f"print({STARTED!r}, file=sys.stderr, flush=True)\ntime.sleep(60)\n", 1)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def _running(pid: int) -> bool:
    """Alive and not a zombie (one whose parent is gone may wait a while to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _sleeping(tmpdir: Path) -> bool:
    """A verifier worker is importing the slow module."""
    for log in tmpdir.glob("loopvec-verify-*/**/*.log"):
        try:
            if STARTED in log.read_text(errors="replace"):
                return True
        except OSError:
            pass
    return False


def _wait_for(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _start(args: list[str], cwd: Path, tmpdir: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    # a background shell starts us with Ctrl-C ignored; loopvec must see it as a terminal sends it
    return subprocess.Popen([sys.executable, "-m", "loopvec.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


TERMINATED = "loopvec: terminated (SIGTERM); every file is either fully rewritten or unchanged"
INTERRUPTED = "loopvec: interrupted; every file is either fully rewritten or unchanged"


@pytest.mark.parametrize("args, sig, code, said", [
    (["apply", "--no-cache", "m.py"], signal.SIGTERM, 143, TERMINATED),
    (["apply", "--no-cache", "m.py"], signal.SIGINT, 130, INTERRUPTED),
    (["verify", "m.py::double", "fast.py::double"], signal.SIGTERM, 143, TERMINATED),
], ids=["apply, SIGTERM", "apply, Ctrl-C", "verify, SIGTERM"])
def test_a_signal_during_verification_stops_the_run_cleanly(tmp_path, args, sig, code, said):
    project, tmpdir = tmp_path / "project", tmp_path / "tmp"
    project.mkdir()
    tmpdir.mkdir()
    (project / "m.py").write_text(SLOW)
    (project / "fast.py").write_text("def double(x):\n    return x * 2\n")
    proc = _start(args, project, tmpdir)
    try:
        # verification has started: a worker is running the user's code
        _wait_for(lambda: _sleeping(tmpdir) or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        workers = _children(proc.pid)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code
    assert err.splitlines() == [said] and out == ""
    assert not list(tmpdir.glob("loopvec-verify-*"))
    assert workers
    _wait_for(lambda: not any(_running(w) for w in workers), timeout_s=5)  # not after its minute of sleep
    assert (project / "m.py").read_text() == SLOW


def test_sigterm_while_planning_in_parallel_is_one_line(tmp_path):
    project, tmpdir = tmp_path / "project", tmp_path / "tmp"
    (project / "pkg").mkdir(parents=True)
    tmpdir.mkdir()
    for k in range(40):  # enough planning to still be at it when the signal comes
        (project / "pkg" / f"m{k}.py").write_text(MAP + "".join(MAP.split("\n\n\n", 1)[1].replace(
            "def double", f"def double{j}") for j in range(60)))
    proc = _start(["scan", "--no-cache", "--jobs", "2", "pkg"], project, tmpdir)
    try:
        _wait_for(lambda: len(_children(proc.pid)) >= 2 or proc.poll() is not None)
        assert proc.poll() is None, "planning was over before the signal: make the files longer"
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert err.splitlines() == ["loopvec: terminated (SIGTERM); every file is either fully rewritten or unchanged"]
    _wait_for(lambda: not any(_running(w) for w in workers), timeout_s=10)


@pytest.fixture
def no_process(monkeypatch):
    """Starting a process fails, as when the machine has too many or no memory left; and
    what a thread raises is kept, not printed."""
    def refuse(*args, **kwargs):
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(subprocess, "Popen", refuse)
    raised = []
    monkeypatch.setattr(threading, "excepthook", raised.append)
    return raised


def test_a_worker_that_cannot_be_started_is_a_verdict_not_a_traceback(tmp_path, no_process):
    path = tmp_path / "m.py"
    path.write_text(MAP)
    cand = Candidate(Impl(str(path), "double"), Impl(str(path), "double", "def double(x):\n    return x * 2\n"),
                     key="k")
    [verdict] = verify_candidates([cand], VerifySettings(max_examples=5))
    assert no_process == []
    assert verdict.status == "unverifiable"
    assert verdict.message == f"verifier worker failed to start: {os.strerror(errno.EAGAIN)}"


def test_apply_says_in_one_line_that_a_worker_cannot_be_started(tmp_path, monkeypatch, no_process):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(MAP)
    result = CliRunner().invoke(app, ["apply", "--no-cache", "m.py"])
    assert no_process == []
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        f"m.py:6:5 [elementwise] in double() verifier worker failed to start: {os.strerror(errno.EAGAIN)} "
        f"(unverifiable)"]
    assert (tmp_path / "m.py").read_text() == MAP
