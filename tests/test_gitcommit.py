"""`apply --commit`: one commit per pattern of verified rewrites, never over uncommitted edits."""

import signal
import subprocess

import pytest
from typer.testing import CliRunner

from loopvec import gitcommit
from loopvec.cli import app
from loopvec.engine import apply_keys, plan_source
from loopvec.gitcommit import Committer, GitError
from loopvec.results import REWRITTEN, UNVERIFIABLE, FileResult, Finding
from loopvec.runner import RunResult

SOURCE = """import torch


def double(x: torch.Tensor) -> torch.Tensor:
    out = []
    for v in x:
        out.append(v * 2)
    return torch.stack(out)


def total(data: torch.Tensor) -> torch.Tensor:
    s = 0.0
    for v in data:
        s += v
    return s
"""


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git("init", "-q", cwd=tmp_path)
    git("config", "user.email", "dev@example.com", cwd=tmp_path)
    git("config", "user.name", "Dev", cwd=tmp_path)
    (tmp_path / "m.py").write_text(SOURCE)
    (tmp_path / "other.py").write_text("x = 1\n")
    git("add", ".", cwd=tmp_path)
    git("commit", "-qm", "init", cwd=tmp_path)
    return tmp_path


def _rewritten(path: str = "m.py", statuses=(REWRITTEN, REWRITTEN), source: str = SOURCE) -> RunResult:
    """Write what `apply` would, and the RunResult it would return."""
    plan = plan_source(path, source)
    findings = tuple(Finding(p.path, p.line, p.column, p.end_line, p.qualname, p.pattern, status,
                             p.message + "; 12.0x faster (n=4096)", speedup=12.0, key=p.key)
                     for p, status in zip(plan.planned, statuses))
    written = {f.key for f in findings if f.status == REWRITTEN}
    with open(path, "w", newline="") as fh:
        fh.write(apply_keys(path, source, written))
    return RunResult((FileResult(path, findings, changed=True),))


def test_one_commit_per_pattern_each_listing_its_rewrites(repo):
    result = _rewritten()
    lines = Committer.for_paths(["m.py"]).commit(result)
    assert len(lines) == 2
    log = git("log", "--format=%s%n%b%n--", cwd=repo)
    assert "loopvec: elementwise: vectorize 1 loop" in log and "loopvec: reduction: vectorize 1 loop" in log
    assert "- m.py::double (line 6): becomes `return x * 2`; 12.0x faster (n=4096)" in log
    assert git("status", "--porcelain", cwd=repo) == ""
    # the first commit holds the first pattern's rewrite only
    first = git("show", "HEAD~1:m.py", cwd=repo)
    assert "return x * 2" in first and "s += v" in first
    assert git("show", "HEAD:m.py", cwd=repo) == (repo / "m.py").read_text()


def test_nothing_unverified_is_committed(repo):
    result = _rewritten(statuses=(REWRITTEN, UNVERIFIABLE))
    Committer.for_paths(["m.py"]).commit(result)
    assert git("log", "--format=%s", cwd=repo).splitlines() == ["loopvec: elementwise: vectorize 1 loop", "init"]


def test_a_file_with_uncommitted_edits_is_refused(repo):
    (repo / "m.py").write_text(SOURCE + "\n# mine\n")
    committer = Committer.for_paths(["m.py"])
    with pytest.raises(GitError, match="m.py has uncommitted edits"):
        committer.check_clean(("m.py",))
    committer.check_clean(("other.py",))  # clean files pass


def test_an_untracked_file_is_refused(repo):
    (repo / "new.py").write_text(SOURCE)
    with pytest.raises(GitError, match="new.py"):
        Committer.for_paths(["new.py"]).check_clean(("new.py",))


def test_outside_a_repository_it_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(SOURCE)
    with pytest.raises(GitError, match="needs a git repository"):
        Committer.for_paths(["m.py"])


def test_a_repository_without_commits_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git("init", "-q", cwd=tmp_path)
    with pytest.raises(GitError, match="first commit"):
        Committer.for_paths(["."])


def test_commit_cannot_be_a_dry_run(repo):
    result = CliRunner().invoke(app, ["apply", "--commit", "--dry-run", "m.py"])
    assert result.exit_code == 2 and "--dry-run" in result.output


@pytest.mark.slow
def test_apply_commit_end_to_end(repo):
    (repo / "m.py").write_text(SOURCE + "# edited\n")
    refused = CliRunner().invoke(app, ["apply", "--commit", "--min-speedup", "0", "m.py"])
    assert refused.exit_code == 2 and "uncommitted edits" in refused.output
    assert (repo / "m.py").read_text() == SOURCE + "# edited\n"  # nothing written
    git("checkout", "m.py", cwd=repo)
    done = CliRunner().invoke(app, ["apply", "--commit", "--min-speedup", "0", "m.py"])
    assert done.exit_code == 1, done.output
    assert "committed" in done.output
    subjects = git("log", "--format=%s", cwd=repo).splitlines()
    assert subjects[:2] == ["loopvec: reduction: vectorize 1 loop", "loopvec: elementwise: vectorize 1 loop"]
    assert git("status", "--porcelain", cwd=repo) == ""


def _stop_at(monkeypatch, command: str, nth: int, stop) -> None:
    """Call `stop()` when git is asked to run `command` for the `nth` time (1: the first)."""
    real, seen = gitcommit._git, []

    def git_(args, *rest, **kw):
        if args[0] == command:
            seen.append(args)
            if len(seen) == nth:
                stop()
        return real(args, *rest, **kw)

    monkeypatch.setattr(gitcommit, "_git", git_)


def _interrupt():
    raise KeyboardInterrupt


def test_an_interrupt_after_the_first_commit_says_it_and_stages_nothing_stale(repo, monkeypatch):
    result = _rewritten()
    _stop_at(monkeypatch, "commit-tree", 2, _interrupt)
    said = []
    with pytest.raises(KeyboardInterrupt):
        Committer.for_paths(["m.py"]).commit(result, say=said.append)
    assert git("log", "--format=%s", cwd=repo).splitlines() == ["loopvec: elementwise: vectorize 1 loop", "init"]
    assert len(said) == 2 and said[0].startswith("loopvec: committed ") and "elementwise" in said[0]
    assert said[1] == ("loopvec: --commit stopped after 1 of 2 commits: the rewrites of reduction are written "
                       "but not committed")
    # the index holds the committed content: the reduction rewrite is an unstaged change, nothing is staged
    assert git("diff", "--cached", "--name-only", cwd=repo) == ""
    assert git("status", "--porcelain", cwd=repo) == " M m.py\n"
    assert "+    s = 0.0 + data.sum(0)" in git("diff", cwd=repo)


def test_an_interrupt_before_the_first_commit_leaves_the_index_as_it_was(repo, monkeypatch):
    result = _rewritten()
    _stop_at(monkeypatch, "commit-tree", 1, _interrupt)
    said = []
    with pytest.raises(KeyboardInterrupt):
        Committer.for_paths(["m.py"]).commit(result, say=said.append)
    assert git("log", "--format=%s", cwd=repo).splitlines() == ["init"]
    assert said == ["loopvec: --commit stopped after 0 of 2 commits: the rewrites of elementwise, reduction are "
                    "written but not committed"]
    assert git("diff", "--cached", "--name-only", cwd=repo) == ""


def test_a_git_command_failing_after_the_first_commit_stages_nothing_stale(repo, monkeypatch):
    result = _rewritten()

    def fail():
        raise GitError("`git commit-tree` failed: out of disk space")

    _stop_at(monkeypatch, "commit-tree", 2, fail)
    said = []
    with pytest.raises(GitError, match="out of disk space"):
        Committer.for_paths(["m.py"]).commit(result, say=said.append)
    assert len(git("log", "--format=%s", cwd=repo).splitlines()) == 2
    assert said[-1].startswith("loopvec: --commit stopped after 1 of 2 commits")
    assert git("diff", "--cached", "--name-only", cwd=repo) == ""


def test_ctrl_c_during_a_commit_lets_it_finish_and_stops_before_the_next(repo, monkeypatch):
    result = _rewritten()
    # Ctrl-C raises KeyboardInterrupt, also when the tests were started with it ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # the key is pressed while git moves HEAD to the first commit
        _stop_at(monkeypatch, "update-ref", 1, lambda: signal.raise_signal(signal.SIGINT))
        said = []
        with pytest.raises(KeyboardInterrupt):
            Committer.for_paths(["m.py"]).commit(result, say=said.append)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert git("log", "--format=%s", cwd=repo).splitlines() == ["loopvec: elementwise: vectorize 1 loop", "init"]
    assert [line.split()[1] for line in said] == ["committed", "--commit"]
    assert git("diff", "--cached", "--name-only", cwd=repo) == ""
    assert git("status", "--porcelain", cwd=repo) == " M m.py\n"


def test_a_crlf_file_under_autocrlf_is_committed_as_git_add_would(repo):
    git("config", "core.autocrlf", "true", cwd=repo)
    crlf = SOURCE.replace("\n", "\r\n")
    (repo / "c.py").write_bytes(crlf.encode())
    git("add", "c.py", cwd=repo)
    git("commit", "-qm", "crlf", cwd=repo)
    assert git("status", "--porcelain", cwd=repo) == ""
    result = _rewritten("c.py", source=crlf)
    assert b"\r\n    return x * 2\r\n" in (repo / "c.py").read_bytes()
    lines = Committer.for_paths(["c.py"]).commit(result)
    assert len(lines) == 2
    assert git("status", "--porcelain", cwd=repo) == ""
    assert git("diff", "--cached", "--name-only", cwd=repo) == ""
    # the blob is the normalised text, as `git add` stores it
    assert git("show", "HEAD:c.py", cwd=repo) == apply_keys("c.py", SOURCE, {f.key for f in result.findings})


def test_apply_commit_interrupted_says_each_commit_and_exits_130(repo, monkeypatch):
    monkeypatch.setattr("loopvec.cli.run_apply", lambda options, progress=None: _rewritten())
    _stop_at(monkeypatch, "commit-tree", 2, _interrupt)
    result = CliRunner().invoke(app, ["apply", "--commit", "m.py"])
    assert result.exit_code == 130, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("loopvec: committed ") and lines[0].endswith("loopvec: elementwise: vectorize 1 loop")
    assert lines[1].startswith("loopvec: --commit stopped after 1 of 2 commits")
    assert lines[2] == "loopvec: interrupted; every file is either fully rewritten or unchanged"
    assert git("diff", "--cached", "--name-only", cwd=repo) == ""
