"""Odd file systems: links out of the tree, read-only and other users' files, an edit made
while loopvec writes, FIFOs, devices, huge files and file names that are not UTF-8.
Each refused file is one line and the run goes on with the others."""

import fcntl
import json
import os
import resource
import signal
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopvec import runner as runner_module
from loopvec.cli import app
from loopvec.engine import MAX_FILE_BYTES, SourceError, read
from loopvec.files import OUTSIDE, discover, printable
from loopvec.runner import write_atomic

cli = CliRunner()

MAP = """import torch


def double(x: torch.Tensor) -> torch.Tensor:
    out = []
    for v in x:
        out.append(v * 2)
    return torch.stack(out)
"""

OLD = b"x = 1\n"
NEW = b"x = 2\n"
LATIN_NAME = os.fsdecode(b"caf\xe9.py")  # a name that is not UTF-8: kept as a surrogate


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO blocks an unguarded open forever)."""
    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proj").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path


# --------------------------------------------------------------------------- discovery


def test_a_link_out_of_the_given_folder_is_skipped_with_one_line(project):
    (project / "outside" / "target.py").write_text(MAP)
    (project / "proj" / "link.py").symlink_to(project / "outside" / "target.py")
    (project / "proj" / "m.py").write_text(MAP)
    files, missing, skipped = discover(["proj"])
    assert files == [str(project / "proj" / "m.py")]
    assert skipped == [("proj/link.py", OUTSIDE)] and missing == []


def test_a_link_named_on_the_command_line_is_not_followed_out_either(project):
    (project / "outside" / "target.py").write_text(MAP)
    (project / "proj" / "link.py").symlink_to(project / "outside" / "target.py")
    files, _, skipped = discover(["proj/link.py", "proj"])
    assert files == [] and skipped == [("proj/link.py", OUTSIDE)]  # once, though named and found


def test_a_link_inside_the_given_folder_leads_to_its_target_once(project):
    (project / "proj" / "real.py").write_text(MAP)
    (project / "proj" / "alias.py").symlink_to("real.py")
    (project / "proj" / "alias2.py").symlink_to(project / "proj" / "real.py")
    files, _, skipped = discover(["proj", "proj/alias.py"])
    assert files == [str(project / "proj" / "real.py")] and skipped == []


def test_a_link_to_a_device_is_skipped_without_reading_it(project):
    (project / "proj" / "x.py").symlink_to("/dev/zero")
    files, _, skipped = discover(["proj"])
    assert files == [] and skipped == [("proj/x.py", OUTSIDE)]


def test_a_file_name_that_is_not_utf8_is_found_and_prints(project):
    if os.uname().sysname == "Darwin":
        pytest.skip("macOS file systems refuse names that are not UTF-8")
    (project / "proj" / LATIN_NAME).write_text(MAP)
    files, _, _ = discover(["proj"])
    assert files == [str(project / "proj" / LATIN_NAME)]
    assert printable(files[0]).endswith("proj/caf\\xe9.py")
    json.dumps(printable(files[0]), ensure_ascii=False).encode("utf-8")  # a lone surrogate would raise


def test_a_fifo_named_explicitly_is_a_file_not_missing(project):
    os.mkfifo(project / "proj" / "pipe.py")
    files, missing, _ = discover(["proj/pipe.py"])
    assert files == [str(project / "proj" / "pipe.py")] and missing == []


# --------------------------------------------------------------------------- reading


def read_in_child(path: str) -> str:
    """`read(path)` in a child with a memory cap and a time limit, so a read that never
    ends fails this test instead of taking the machine: what it raised, or 'read'."""
    code = ("import sys\nfrom loopvec.engine import SourceError, read\n"
            "try:\n    read(sys.argv[1])\n    print('read')\n"
            "except SourceError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30)))
    return proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]


def test_reading_a_fifo_says_what_it_is_and_does_not_wait(project):
    os.mkfifo(project / "proj" / "pipe.py")
    assert read_in_child(str(project / "proj" / "pipe.py")) == "not a regular file (a FIFO): skipped"


def test_reading_a_device_says_what_it_is_and_does_not_read_it():
    assert read_in_child("/dev/zero") == "not a regular file (a character device): skipped"


def test_a_file_over_the_size_limit_is_refused_in_one_line(project):
    big = project / "proj" / "big.py"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(SourceError, match=r"^larger than 16 MB, the most loopvec reads: left unchanged$"):
        read(str(big))
    small = project / "proj" / "small.py"
    small.write_bytes(b"#" * 100)
    with pytest.raises(SourceError, match="larger than"):
        read(str(small), limit=99)
    assert read(str(small), limit=100).text == "#" * 100


# --------------------------------------------------------------------------- writing


def test_a_read_only_file_is_refused_and_left_as_it_was(project):
    f = project / "proj" / "ro.py"
    f.write_bytes(OLD)
    f.chmod(0o444)
    with pytest.raises(SourceError, match="^read-only file: left unchanged$"):
        write_atomic(str(f), NEW, sha(OLD))
    assert f.read_bytes() == OLD and stat.S_IMODE(f.stat().st_mode) == 0o444
    assert [p.name for p in f.parent.iterdir()] == ["ro.py"]  # no temporary file left


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_another_users_file_keeps_its_owner_group_and_mode(project):
    f = project / "proj" / "theirs.py"
    f.write_bytes(OLD)
    os.chown(f, 12345, 23456)
    f.chmod(0o664)
    write_atomic(str(f), NEW, sha(OLD))
    st = f.stat()
    assert f.read_bytes() == NEW
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, 0o664)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_owner_that_cannot_be_kept_is_refused_and_the_file_left_as_it_was(project, monkeypatch):
    f = project / "proj" / "theirs.py"
    f.write_bytes(OLD)
    os.chown(f, 12345, 12345)

    def not_root(*args):  # what a user who is not root gets for another user's group-writable file
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(runner_module.os, "fchown", not_root)
    with pytest.raises(SourceError, match=r"^cannot keep its owner and group \(12345:12345\): left unchanged$"):
        write_atomic(str(f), NEW, sha(OLD))
    assert f.read_bytes() == OLD and f.stat().st_uid == 12345
    assert [p.name for p in f.parent.iterdir()] == ["theirs.py"]


def test_an_edit_made_before_the_rename_is_kept_and_the_write_refused(project, monkeypatch):
    f = project / "proj" / "m.py"
    f.write_bytes(OLD)
    real_mkstemp = runner_module.tempfile.mkstemp

    def edit_then_mkstemp(*args, **kwargs):  # the user saves while loopvec writes its copy
        f.write_bytes(b"x = 'edited'\n")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(runner_module.tempfile, "mkstemp", edit_then_mkstemp)
    with pytest.raises(SourceError, match="^the file changed while loopvec was working on it: left unchanged$"):
        write_atomic(str(f), NEW, sha(OLD))
    assert f.read_bytes() == b"x = 'edited'\n"
    assert [p.name for p in f.parent.iterdir()] == ["m.py"]


def test_a_file_replaced_while_loopvec_waits_for_its_lock_is_refused(project, monkeypatch):
    f = project / "proj" / "m.py"
    f.write_bytes(OLD)
    real_mkstemp = runner_module.tempfile.mkstemp

    def other_run_writes_same_bytes(*args, **kwargs):  # another loopvec (or an editor) saved a new file
        (project / "proj" / "new").write_bytes(OLD)
        os.replace(project / "proj" / "new", f)
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(runner_module.tempfile, "mkstemp", other_run_writes_same_bytes)
    with pytest.raises(SourceError, match="changed while loopvec was working on it"):
        write_atomic(str(f), NEW, sha(OLD))
    assert f.read_bytes() == OLD


def test_a_file_locked_by_another_program_is_refused_not_waited_for(project, monkeypatch):
    f = project / "proj" / "m.py"
    f.write_bytes(OLD)
    monkeypatch.setattr(runner_module, "_LOCK_WAIT_S", 0.2)
    with open(f, "rb") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with deadline(10), pytest.raises(SourceError, match="^locked by another program: left unchanged$"):
            write_atomic(str(f), NEW, sha(OLD))
    assert f.read_bytes() == OLD


def test_a_plain_write_keeps_the_mode_and_leaves_no_temporary_file(project):
    f = project / "proj" / "m.py"
    f.write_bytes(OLD)
    f.chmod(0o750)
    write_atomic(str(f), NEW, sha(OLD))
    assert f.read_bytes() == NEW and stat.S_IMODE(f.stat().st_mode) == 0o750
    assert [p.name for p in f.parent.iterdir()] == ["m.py"]


# --------------------------------------------------------------------------- whole runs


def loopvec_child(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command line in a child whose stdout is strict UTF-8 (a lone surrogate raises),
    with a memory cap and a time limit, so a run that never ends fails instead."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-c", "from loopvec.cli import app; app()", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, errors="surrogateescape", timeout=120,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30)))


def test_scan_goes_on_past_every_odd_file_in_text_and_json(project):
    proj = project / "proj"
    (project / "outside" / "target.py").write_text(MAP)
    (proj / "link.py").symlink_to(project / "outside" / "target.py")
    (proj / "zero.py").symlink_to("/dev/zero")
    os.mkfifo(proj / "pipe.py")
    (proj / LATIN_NAME).write_text(MAP)
    (proj / "good.py").write_text(MAP)
    text = loopvec_child("scan", "--no-cache", "proj", cwd=project)
    data = loopvec_child("scan", "--no-cache", "--format", "json", "proj", cwd=project)
    assert text.returncode == 2, text.stderr
    lines = text.stdout.splitlines()
    assert f"proj/link.py: error: {OUTSIDE}" in lines
    assert f"proj/zero.py: error: {OUTSIDE}" in lines
    assert "proj/pipe.py: error: not a regular file (a FIFO): skipped" in lines
    assert any(ln.startswith("proj/good.py:6:5 [elementwise]") for ln in lines)
    assert any(ln.startswith("proj/caf\\xe9.py:6:5 [elementwise]") for ln in lines)
    assert data.returncode == 2, data.stderr
    report = json.loads(data.stdout)
    assert sorted(f["path"] for f in report["findings"]) == ["proj/caf\\xe9.py", "proj/good.py"]
    assert {e["path"] for e in report["errors"]} == {"proj/link.py", "proj/zero.py", "proj/pipe.py"}


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_apply_refuses_each_odd_file_in_one_line_and_rewrites_the_rest(project, monkeypatch):
    proj = project / "proj"
    target = project / "outside" / "target.py"
    target.write_text(MAP)
    (proj / "link.py").symlink_to(target)
    (proj / "ro.py").write_text(MAP)
    (proj / "ro.py").chmod(0o444)
    (proj / "theirs.py").write_text(MAP)
    os.chown(proj / "theirs.py", 12345, 12345)
    (proj / "edited.py").write_text(MAP)
    (proj / "good.py").write_text(MAP)
    (proj / "alias.py").symlink_to("good.py")
    edited = (proj / "edited.py").stat().st_ino
    real_lock = runner_module._lock

    def edit_after_the_check(fd):  # the user saves edited.py after loopvec compared it, before the rename
        if os.fstat(fd).st_ino == edited:
            (proj / "edited.py").write_text("# mine\n" + MAP)
        real_lock(fd)

    monkeypatch.setattr(runner_module, "_lock", edit_after_the_check)
    result = cli.invoke(app, ["apply", "--no-cache", "proj"])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert f"proj/link.py: error: {OUTSIDE}" in lines
    assert "proj/ro.py: error: read-only file: left unchanged" in lines
    assert "proj/edited.py: error: the file changed while loopvec was working on it: left unchanged" in lines
    assert target.read_text() == MAP
    assert (proj / "ro.py").read_text() == MAP
    assert (proj / "edited.py").read_text() == "# mine\n" + MAP
    for name in ("good.py", "theirs.py"):
        assert "return x * 2" in (proj / name).read_text(), name
    assert (proj / "theirs.py").stat().st_uid == 12345
    assert (proj / "alias.py").is_symlink() and os.readlink(proj / "alias.py") == "good.py"
    assert sum("(rewritten)" in ln and "good.py" in ln for ln in lines) == 1  # the link's target, once
    assert sorted(p.name for p in proj.iterdir()) == ["alias.py", "edited.py", "good.py", "link.py", "ro.py",
                                                       "theirs.py"]
