"""The command line end to end: scan, apply (dry run, write, second run), errors, JSON."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopvec.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

MAP = """import torch


def double(x: torch.Tensor) -> torch.Tensor:
    # keep me
    out = []
    for v in x:
        out.append(v * 2)
    return torch.stack(out)
"""


def run(*args, cwd=None):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_patterns_lists_elementwise():
    result = run("patterns")
    assert result.exit_code == 0
    assert "elementwise" in result.output


def test_scan_lists_candidates_and_writes_nothing(project):
    (project / "m.py").write_text(MAP)
    result = run("scan", "m.py")
    assert result.exit_code == 1
    assert "m.py:7:5 [elementwise] in double() becomes `return x * 2` (candidate)" in result.output
    assert (project / "m.py").read_text() == MAP


def test_scan_with_nothing_to_do_exits_zero(project):
    (project / "m.py").write_text("import torch\n\ndef f(x):\n    return x + 1\n")
    assert run("scan", "m.py").exit_code == 0


def test_unknown_pattern_is_a_one_line_error(project):
    (project / "m.py").write_text(MAP)
    result = runner.invoke(app, ["scan", "--pattern", "nope", "m.py"])
    assert result.exit_code == 2
    assert "unknown pattern 'nope'" in result.output


@pytest.mark.slow
def test_dry_run_then_apply_then_nothing_to_do(project):
    (project / "m.py").write_text(MAP)
    dry = run("apply", "--dry-run", "m.py")
    assert dry.exit_code == 1, dry.output
    assert "+    return x * 2" in dry.output
    assert "(verified)" in dry.output
    assert (project / "m.py").read_text() == MAP
    done = run("apply", "m.py")
    assert done.exit_code == 1, done.output
    assert "(rewritten)" in done.output
    text = (project / "m.py").read_text()
    assert "return x * 2" in text and "# keep me" in text
    again = run("apply", "m.py")
    assert again.exit_code == 0, again.output
    assert (project / "m.py").read_text() == text


@pytest.mark.slow
def test_bad_files_are_reported_and_left_alone_while_the_rest_is_processed(project):
    pkg = project / "pkg"
    pkg.mkdir()
    (pkg / "good.py").write_text(MAP)
    broken = b"import torch\ndef f(x:\n    for v in x: pass\n"
    latin = "import torch\n# caf\xe9\ndef f(x):\n    return torch.stack([v for v in x])\n".encode("latin-1")
    (pkg / "broken.py").write_bytes(broken)
    (pkg / "latin.py").write_bytes(latin)
    result = run("apply", "pkg")
    assert result.exit_code == 2
    assert "broken.py: error: syntax error at line" in result.output
    assert "latin.py: error: not UTF-8" in result.output
    assert (pkg / "broken.py").read_bytes() == broken
    assert (pkg / "latin.py").read_bytes() == latin
    assert "return x * 2" in (pkg / "good.py").read_text()


@pytest.mark.slow
def test_crlf_bom_and_comments_survive_a_write(project):
    text = "\ufeff" + MAP.replace("\n", "\r\n").replace("# keep me", "# keep me too")
    (project / "m.py").write_bytes(text.encode("utf-8"))
    assert run("apply", "m.py").exit_code == 1
    data = (project / "m.py").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"# keep me too" in data and b"return x * 2" in data


@pytest.mark.slow
def test_json_output_has_one_object_per_finding(project):
    (project / "m.py").write_text(MAP)
    result = run("apply", "--dry-run", "--format", "json", "m.py")
    data = json.loads(result.output)
    [finding] = data["findings"]
    assert {"path", "line", "end_line", "function", "pattern", "status", "message", "diff"} <= set(finding)
    assert finding["status"] == "verified" and finding["function"] == "double"
    assert finding["diff"].startswith("--- a/m.py")
    assert data["summary"]["verified"] == 1


def test_show_declined_says_why(project):
    src = MAP.replace("out.append(v * 2)", "out.append(v * 2)\n        print(v)")
    (project / "m.py").write_text(src)
    result = run("scan", "--show-declined", "m.py")
    assert "side effect: calls `print`" in result.output
    assert "(declined)" in result.output


def test_gitignored_and_excluded_files_are_skipped(project):
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / ".gitignore").write_text("ignored/\n")
    for d in ("ignored", "legacy", "src", ".venv"):
        (project / d).mkdir()
        (project / d / "m.py").write_text(MAP)
    (project / ".venv" / "pyvenv.cfg").write_text("")
    (project / "pyproject.toml").write_text('[tool.loopvec]\nexclude = ["legacy/*"]\n')
    result = run("scan", ".")
    assert "src/m.py" in result.output
    for d in ("ignored", "legacy", ".venv"):
        assert f"{d}/m.py" not in result.output


def test_skip_comment_suppresses_a_loop(project):
    (project / "m.py").write_text(MAP.replace("for v in x:", "for v in x:  # loopvec: skip"))
    assert run("scan", "m.py").exit_code == 0


@pytest.mark.slow
def test_bundled_demo_dry_run_shows_diffs_and_changes_nothing(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "demo", tmp_path / "demo")
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / "demo").rglob("*.py")}
    result = run("apply", "--dry-run", "demo")
    assert result.exit_code == 1, result.output
    assert "+    result = data ** 2 + 3 * data + 1 if len(data) else torch.tensor([])" in result.output
    assert "(failed-verification)" not in result.output
    assert {p: p.read_bytes() for p in before} == before


USAGE_ERRORS = {
    "an unknown pattern": (["scan", "--pattern", "nope", "m.py"], "unknown pattern 'nope'"),
    "a config file that is not TOML": (["scan", "m.py"], "cannot read [tool.loopvec]"),
    "an unknown config key": (["scan", "m.py"], "unknown [tool.loopvec] key"),
    "a --max-memory that is not a size": (["apply", "--max-memory", "3XB", "m.py"], "--max-memory: cannot read size"),
    "a path that does not exist": (["scan", "nope.py"], "no such file or folder"),
    "an unknown option": (["scan", "--bogus", "m.py"], "No such option: --bogus"),
    "--jobs 0": (["apply", "--jobs", "0", "m.py"], "--jobs"),
    "no path": (["scan"], "Missing argument"),
    "--commit with --dry-run": (["apply", "--commit", "--dry-run", "m.py"], "cannot be combined with --dry-run"),
    "--commit outside a repository": (["apply", "--commit", "m.py"], "needs a git repository"),
}
CONFIGS = {"a config file that is not TOML": "[tool.loopvec\n", "an unknown config key": "[tool.loopvec]\nfoo = 1\n"}


@pytest.mark.parametrize("case", USAGE_ERRORS, ids=USAGE_ERRORS)
@pytest.mark.parametrize("flag", [["--format", "json"], ["--format=json"]], ids=["--format json", "--format=json"])
def test_a_usage_or_configuration_error_with_json_output_is_a_json_object(project, case, flag):
    (project / "m.py").write_text(MAP)
    if case in CONFIGS:
        (project / "pyproject.toml").write_text(CONFIGS[case])
    args, said = USAGE_ERRORS[case]
    result = runner.invoke(app, [args[0], *flag, *args[1:]])
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["version"] == 1 and data["findings"] == []
    assert len(data["errors"]) == 1 and said in data["errors"][0]["error"]
    assert data["summary"]["errors"] == 1
    assert (project / "m.py").read_text() == MAP


def test_a_usage_error_with_text_output_prints_nothing_on_stdout(project):
    (project / "m.py").write_text(MAP)
    result = runner.invoke(app, ["scan", "--format", "json", "--format", "text", "--pattern", "nope", "m.py"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "unknown pattern 'nope'" in result.stderr
