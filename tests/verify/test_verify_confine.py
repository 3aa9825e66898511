"""User code the verifier and the speed gate run is confined: it cannot write outside its
private folder, leave a child running, reach the network or eat the machine's memory.

Each protection is tested for real on this machine. A user function reports what it could
do through its return value: the original returns `x + 1` when the sandbox stopped it and
`x + 2` when it got through, the rewrite always `x + 1`; so the candidate is verified
exactly when the protection held.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from loopvec.bench import BenchRequest, bench
from loopvec.runner import RunOptions, apply
from loopvec.verify import Candidate, Impl, VerifySettings, verify_candidates
from loopvec.verify import confine

SETTINGS = VerifySettings(max_examples=10, timeout_s=30.0, memory_mb=600, device="cpu")
HELD = "def {name}(x):\n    return x + 1\n"
LANDLOCK = confine.landlock_abi() >= 1


def _module(folder: Path, name: str, body: str) -> str:
    path = folder / f"{name}.py"
    path.write_text("import os\nimport subprocess\nimport torch\n\n\n" + textwrap.dedent(body))
    return str(path)


def _candidate(path: str, name: str, rewrite: str | None = None) -> Candidate:
    new = Impl(path, name, source=rewrite or HELD.format(name=name), prelude="import torch")
    return Candidate(Impl(path, name), new, hints=(("x", "[n]"),), key=name)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One batch of hostile functions (and a well-behaved one after them), verified once."""
    root = tmp_path_factory.mktemp("hostile")
    tree = root / "tree"
    tree.mkdir()
    outside = root / "outside"
    outside.mkdir()
    keep = outside / "precious.txt"
    keep.write_text("keep me")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    path = _module(tree, "hostile", f"""
        IMPORTED = False
        try:  # at import time, before any function runs
            open({str(outside / 'at_import.txt')!r}, "w").write("x")
            IMPORTED = True
        except OSError:
            pass


        def writes_outside(x):
            try:
                with open({str(outside / 'written.txt')!r}, "w") as f:
                    f.write("x")
                return x + 2
            except OSError:
                return x + 1


        def deletes_outside(x):
            try:
                os.remove({str(keep)!r})
                return x + 2
            except OSError:
                return x + 1


        def writes_at_import(x):
            return x + (2 if IMPORTED else 1)


        def connects(x):
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
                return x + 2
            except OSError:
                return x + 1


        def private_folder(x):
            import tempfile
            here = os.getcwd()
            ok = (os.environ["HOME"] == here and tempfile.gettempdir() == here
                  and not here.startswith({str(root)!r}))
            with open("scratch.txt", "w") as f:  # its own folder is writable
                f.write("x")
            return x + (1 if ok else 2)


        def eats_memory(x):
            return x + 1


        def well_behaved(x):
            out = torch.zeros_like(x)
            for i in range(len(x)):
                out[i] = x[i] + 1
            return out
        """)
    names = ["writes_outside", "deletes_outside", "writes_at_import", "connects", "private_folder"]
    cands = [_candidate(path, n) for n in names]
    hog = "def eats_memory(x):\n    big = torch.ones(2**28)  # 1 GiB\n    return x + 1\n"
    cands.append(_candidate(path, "eats_memory", hog))
    cands.append(_candidate(path, "well_behaved"))
    verdicts = {v.key: v for v in verify_candidates(cands, SETTINGS)}
    listener.close()
    return verdicts, outside, keep


def _running(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (dead ones wait for init to reap them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state = (entry / "stat").read_bytes().rpartition(b")")[2].split()[0]
                if marker.encode() in (entry / "cmdline").read_bytes() and state not in (b"Z", b"X"):
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


@pytest.mark.skipif(not LANDLOCK, reason="this kernel has no Landlock: writes outside the folder are not blocked")
def test_a_function_cannot_write_a_file_outside_its_folder(hostile):
    verdicts, outside, _ = hostile
    assert verdicts["writes_outside"].status == "verified", verdicts["writes_outside"].message
    assert not (outside / "written.txt").exists()


@pytest.mark.skipif(not LANDLOCK, reason="this kernel has no Landlock: writes outside the folder are not blocked")
def test_a_function_cannot_delete_a_file_outside_its_folder(hostile):
    verdicts, _, keep = hostile
    assert verdicts["deletes_outside"].status == "verified", verdicts["deletes_outside"].message
    assert keep.read_text() == "keep me"


@pytest.mark.skipif(not LANDLOCK, reason="this kernel has no Landlock: writes outside the folder are not blocked")
def test_a_module_cannot_write_outside_while_it_is_imported(hostile):
    verdicts, outside, _ = hostile
    assert verdicts["writes_at_import"].status == "verified", verdicts["writes_at_import"].message
    assert not (outside / "at_import.txt").exists()


def test_a_child_user_code_forks_does_not_outlive_the_run(tmp_path):
    # a batch of its own: no crash in it, so its worker ends the ordinary way
    marker = f"60.{uuid.uuid4().int % 10**6:06d}"  # a `sleep` argument no other process has
    path = _module(tmp_path, "forks", f"""
        def forks_a_child(x):
            subprocess.Popen(["sleep", {marker!r}])  # left running on purpose
            subprocess.Popen(["sh", "-c", "sleep {marker} &"])  # an orphan, adopted by init
            return x + 1
        """)
    [verdict] = verify_candidates([_candidate(path, "forks_a_child")], SETTINGS)
    assert verdict.status == "verified", verdict.message
    assert _running(marker) == []


def test_a_function_cannot_connect_to_the_network(hostile):
    verdicts, _, _ = hostile
    if "network open" in verdicts["connects"].sandboxed:
        pytest.skip("neither Landlock network rules (ABI 4) nor a network namespace here")
    assert verdicts["connects"].status == "verified", verdicts["connects"].message


def test_user_code_runs_in_a_private_folder_that_is_its_cwd_home_and_tmpdir(hostile):
    verdicts, _, _ = hostile
    assert verdicts["private_folder"].status == "verified", verdicts["private_folder"].message


def test_a_rewrite_that_allocates_past_the_memory_limit_fails_and_the_run_goes_on(hostile):
    verdicts, _, _ = hostile
    v = verdicts["eats_memory"]
    assert v.status == "failed" and "memory limit exceeded (600 MiB)" in v.message, v.message
    assert verdicts["well_behaved"].status == "verified", verdicts["well_behaved"].message


def test_each_verdict_says_how_its_worker_was_confined(hostile):
    verdicts, _, _ = hostile
    expected = confine.FS_LANDLOCK if LANDLOCK else confine.FS_OPEN
    assert {v.sandboxed.split(",")[0].split(" (")[0] for v in verdicts.values()} == {expected}


# --------------------------------------------------------------------------- the limits themselves


def _confined(limits: confine.Limits, code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter after `confine()` with `limits`."""
    folder = confine.make_folder(str(tmp_path))
    env = confine.worker_env(dict(os.environ), folder, limits)
    script = "from loopvec.verify.confine import confine\nprint(confine(), flush=True)\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)


def test_a_file_past_the_size_limit_cannot_be_written(tmp_path):
    run = _confined(confine.Limits(memory_mb=600, cpu_s=60, file_mb=1), """
        try:
            with open("big", "wb") as f:
                f.write(b"x" * (2 << 20))
            print("written")
        except OSError as e:
            print("refused", e.errno)
        """, tmp_path)
    assert run.stdout.splitlines()[1] == "refused 27", run.stdout + run.stderr  # EFBIG


def test_a_process_past_its_cpu_seconds_is_killed(tmp_path):
    run = _confined(confine.Limits(memory_mb=600, cpu_s=1), "while True:\n    pass\n", tmp_path)
    assert run.returncode in (-24, -9), run  # SIGXCPU at the soft limit, SIGKILL at the hard one


def test_an_allocation_past_the_memory_limit_fails(tmp_path):
    if confine._has_cuda_device():
        pytest.skip("where a CUDA device is present only the parent's watch on resident memory holds")
    run = _confined(confine.Limits(memory_mb=300, cpu_s=60), """
        try:
            block = bytearray(400 << 20)
            print("allocated")
        except MemoryError:
            print("refused")
        """, tmp_path)
    assert run.stdout.splitlines()[1] == "refused", run.stdout + run.stderr


def test_the_process_count_is_limited_where_the_kernel_applies_it(tmp_path):
    if os.getuid() == 0:
        pytest.skip("the kernel does not apply RLIMIT_NPROC to root: the process count is not limited here")
    run = _confined(confine.Limits(memory_mb=600, cpu_s=60, processes=8), """
        import subprocess
        children = []
        try:
            for _ in range(50):
                children.append(subprocess.Popen(["sleep", "5"]))
            print("spawned")
        except OSError:
            print("refused")
        for c in children:
            c.kill()
        """, tmp_path)
    assert run.stdout.splitlines()[1] == "refused", run.stdout + run.stderr


def test_as_root_the_worker_says_the_process_count_is_not_limited(tmp_path):
    if os.getuid() != 0:
        pytest.skip("not root: the process count is limited")
    run = _confined(confine.Limits(memory_mb=600, cpu_s=60), "", tmp_path)
    assert "process count not limited" in run.stdout.splitlines()[0]


@pytest.mark.skipif(not LANDLOCK, reason="this kernel has no Landlock")
def test_a_confined_process_cannot_signal_processes_outside_it(tmp_path):
    if confine.landlock_abi() < 6:
        pytest.skip("Landlock's signal scope needs ABI 6")
    run = _confined(confine.Limits(memory_mb=600, cpu_s=60), """
        import os
        try:
            os.kill(os.getppid(), 0)
            print("reached")
        except PermissionError:
            print("refused")
        """, tmp_path)
    assert run.stdout.splitlines()[1] == "refused", run.stdout + run.stderr


def test_without_its_environment_variable_confine_does_nothing(monkeypatch):
    monkeypatch.delenv(confine.ENV, raising=False)
    assert confine.confine() == ""


# --------------------------------------------------------------------------- the speed gate


def test_the_speed_gates_worker_is_confined_and_has_a_memory_limit(tmp_path):
    outside = tmp_path / "outside.txt"
    marker = f"61.{uuid.uuid4().int % 10**6:06d}"
    path = _module(tmp_path, "gated", f"""
        def f(x):
            try:
                open({str(outside)!r}, "w").write("x")
            except OSError:
                pass
            subprocess.Popen(["sleep", {marker!r}])
            out = torch.zeros_like(x)
            for i in range(len(x)):
                out[i] = x[i] + 1
            return out
        """)
    hog = "def f(x):\n    big = torch.ones(2**28)\n    return x + 1\n"
    req = BenchRequest("hog", Impl(path, "f"), Impl(path, "f", source=hog, prelude="import torch"),
                       hints=(("x", "[n]"),), max_loop_s=0.02, budget_s=0.5)
    [timing] = bench([req], timeout_s=60.0, memory_mb=600)
    assert timing.status in ("failed", "not-measured") and "can't allocate memory" in timing.message, timing
    if LANDLOCK:
        assert not outside.exists()
    time.sleep(0.2)
    assert _running(marker) == []


# --------------------------------------------------------------------------- --no-exec


def test_no_exec_runs_nothing_and_writes_nothing(tmp_path):
    target = tmp_path / "loop.py"
    ran = tmp_path / "ran.txt"
    source = textwrap.dedent(f"""\
        import torch


        def add_one(x: torch.Tensor):
            open({str(ran)!r}, "w").write("ran")
            out = torch.zeros_like(x)
            for i in range(len(x)):
                out[i] = x[i] + 1
            return out
        """)
    target.write_text(source)
    result = apply(RunOptions(paths=(str(target),), no_exec=True, verify=SETTINGS))
    findings = [f for f in result.findings if f.pattern]
    assert findings and {(f.status, f.message, f.sandboxed) for f in findings} == {
        ("unverifiable", "not run: --no-exec", "")}
    assert target.read_text() == source and not ran.exists()


def test_the_json_finding_says_whether_its_candidate_ran_sandboxed(tmp_path):
    target = tmp_path / "loop.py"
    target.write_text(textwrap.dedent("""\
        import torch


        def add_one(x: torch.Tensor):
            out = torch.zeros_like(x)
            for i in range(len(x)):
                out[i] = x[i] + 1
            return out
        """))
    result = apply(RunOptions(paths=(str(target),), dry_run=True, verify=SETTINGS))
    [finding] = [f for f in result.findings if f.pattern]
    assert finding.status == "verified", finding.message
    data = json.loads(json.dumps(finding.to_json()))
    assert data["sandboxed"].startswith(confine.FS_LANDLOCK if LANDLOCK else confine.FS_OPEN)


def test_apply_no_exec_on_the_command_line_reports_every_candidate_not_run(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loopvec.cli import app

    ran = tmp_path / "imported.txt"
    target = tmp_path / "loop.py"
    source = textwrap.dedent(f"""\
        import torch

        open({str(ran)!r}, "w").write("imported")


        def add_one(x: torch.Tensor):
            out = torch.zeros_like(x)
            for i in range(len(x)):
                out[i] = x[i] + 1
            return out
        """)
    target.write_text(source)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["apply", "--no-exec", "--format", "json", "loop.py"])
    report = json.loads(result.stdout)
    assert [(f["status"], f["message"], f["sandboxed"]) for f in report["findings"]] == [
        ("unverifiable", "not run: --no-exec", "")]
    assert target.read_text() == source and not ran.exists()


def test_verify_no_exec_runs_neither_function(tmp_path):
    from typer.testing import CliRunner

    from loopvec.cli import app

    ran = tmp_path / "imported.txt"
    path = tmp_path / "pair.py"
    path.write_text(f"open({str(ran)!r}, 'w').write('imported')\n\n\n"
                    "def f(x):\n    return x\n\n\ndef g(x):\n    return x\n")
    result = CliRunner().invoke(app, ["verify", "--no-exec", f"{path}::f", f"{path}::g"])
    assert result.exit_code == 2
    assert "unverifiable: not run: --no-exec" in result.stdout
    assert not ran.exists()
