"""The cache: a second run over unchanged files reads plans (and verdicts) instead of recomputing them."""

import pickle
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopvec import cache
from loopvec.cli import app
from loopvec.engine import FilePlan, plan_source
from loopvec.results import FileResult
from loopvec.runner import RunOptions, scan
from loopvec.verify.types import Candidate, Impl, Verdict, VerifySettings

MAP = """import torch


def double(x: torch.Tensor) -> torch.Tensor:
    out = []
    for v in x:
        out.append(v * 2)
    return torch.stack(out)
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(MAP)
    return tmp_path


def test_a_plan_comes_back_as_it_was_stored(tmp_path):
    plan = plan_source("m.py", MAP)
    folder = str(tmp_path / ".loopvec_cache")
    cache.store_plan(folder, "m.py", MAP, (), False, plan)
    assert cache.load_plan(folder, "m.py", MAP, (), False) == plan


@pytest.mark.parametrize("change", ["text", "path", "patterns", "show_declined"])
def test_anything_the_plan_depends_on_is_in_its_key(tmp_path, change):
    folder = str(tmp_path / "c")
    cache.store_plan(folder, "m.py", MAP, (), False, plan_source("m.py", MAP))
    args = {"path": "m.py", "text": MAP, "patterns": (), "show_declined": False}
    args[change] = {"text": MAP + "\n", "path": "n.py", "patterns": ("where",), "show_declined": True}[change]
    assert cache.load_plan(folder, args["path"], args["text"], args["patterns"], args["show_declined"]) is None


def test_an_error_is_cached_too(tmp_path):
    folder = str(tmp_path / "c")
    error = FileResult("m.py", error="syntax error at line 1, column 1: left unchanged")
    cache.store_plan(folder, "m.py", "def (", (), False, error)
    assert cache.load_plan(folder, "m.py", "def (", (), False) == error


def test_an_unreadable_entry_is_a_miss(tmp_path):
    folder = str(tmp_path / "c")
    cache.store_plan(folder, "m.py", MAP, (), False, plan_source("m.py", MAP))
    for entry in Path(folder).rglob("*.pickle"):
        entry.write_bytes(b"not a pickle")
    assert cache.load_plan(folder, "m.py", MAP, (), False) is None


def test_the_cache_folder_ignores_itself_for_git(tmp_path):
    folder = tmp_path / ".loopvec_cache"
    cache.store_plan(str(folder), "m.py", MAP, (), False, plan_source("m.py", MAP))
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"


def test_a_second_scan_reads_the_cache_instead_of_planning(project, monkeypatch):
    options = RunOptions(paths=("m.py",), cache=True)
    first = scan(options)

    def fail(*args, **kwargs):
        raise AssertionError("planned again although the file did not change")

    monkeypatch.setattr("loopvec.runner.plan_source", fail)
    assert scan(options) == first
    (project / "m.py").write_text(MAP.replace("v * 2", "v * 3"))
    assert "planned again" in scan(options).files[0].error  # an edited file is planned again


def test_no_cache_writes_nothing(project):
    result = CliRunner().invoke(app, ["scan", "--no-cache", "m.py"])
    assert result.exit_code == 1
    assert not (project / ".loopvec_cache").exists()
    CliRunner().invoke(app, ["scan", "m.py"])
    assert (project / ".loopvec_cache").is_dir()


def _candidate(tmp_path) -> Candidate:
    path = str(tmp_path / "m.py")
    return Candidate(Impl(path, "double"), Impl(path, "double", "def double(x):\n    return x * 2\n"), key="k")


def test_a_verdict_is_reused_only_with_the_same_tree_settings_and_sources(tmp_path):
    folder = str(tmp_path / "c")
    settings = VerifySettings()
    cand = _candidate(tmp_path)
    store = cache.Verdicts(folder, "tree-1", settings)
    store.put(cand, Verdict("verified", "verified on 30 examples", key="k"))
    assert store.get(replace(cand, key="other")).key == "other"
    assert cache.Verdicts(folder, "tree-1", replace(settings, workers=4)).get(cand) is not None
    assert cache.Verdicts(folder, "tree-2", settings).get(cand) is None
    assert cache.Verdicts(folder, "tree-1", replace(settings, max_examples=5)).get(cand) is None
    changed = replace(cand, candidate=replace(cand.candidate, source="def double(x):\n    return x + x\n"))
    assert store.get(changed) is None


@pytest.mark.parametrize("message", ["timed out after 20 s (the original or the rewrite did not return)",
                                     "verifier worker failed to start: no answer",
                                     "worker crashed: killed by SIGKILL"])
def test_a_verdict_that_depends_on_the_machine_is_not_kept(tmp_path, message):
    store = cache.Verdicts(str(tmp_path / "c"), "tree", VerifySettings())
    store.put(_candidate(tmp_path), Verdict("failed", message))
    assert store.get(_candidate(tmp_path)) is None


def test_the_tree_hash_follows_every_file():
    a = cache.tree_hash([("a.py", "x = 1\n"), ("b.py", "y = 2\n")])
    assert a == cache.tree_hash([("b.py", "y = 2\n"), ("a.py", "x = 1\n")])
    assert a != cache.tree_hash([("a.py", "x = 1\n"), ("b.py", "y = 3\n")])


def test_the_plan_cache_survives_a_read_only_folder(tmp_path):
    blocker = tmp_path / "c"
    blocker.write_text("a file where the folder would go")
    cache.store_plan(str(blocker), "m.py", MAP, (), False, plan_source("m.py", MAP))  # no exception
    assert cache.load_plan(str(blocker), "m.py", MAP, (), False) is None


def test_cached_plan_has_the_current_text(tmp_path):
    folder = str(tmp_path / "c")
    cache.store_plan(folder, "m.py", MAP, (), False, plan_source("m.py", MAP))
    loaded = cache.load_plan(folder, "m.py", MAP, (), False)
    assert isinstance(loaded, FilePlan) and loaded.source == MAP


def _old(cls, **values):
    """An instance as a pickle of an older version of `cls` holds it: only some fields set."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


_PLANNED = plan_source("m.py", MAP).planned
UNEXPECTED_PLANS = {
    "a dict": {"plan": _PLANNED},
    "None": None,
    "an empty tuple": (),
    "a tuple too short": ("plan",),
    "a tuple with numbers for findings": ("plan", 1, 2, 3, 4),
    "an error that is not a file result": ("result", 5),
    "a plan of an old class": ("plan", (_old(type(_PLANNED[0]), key="k", path="m.py"),), (), 1, 8),
    "a plan whose alternative is of an old class": (
        "plan", (replace(_PLANNED[0], alternative=_old(type(_PLANNED[0]), key="k")),), (), 1, 8),
    "a list for the planned rewrites": ("plan", list(_PLANNED), (), 1, 8),
}


@pytest.mark.parametrize("entry", UNEXPECTED_PLANS.values(), ids=UNEXPECTED_PLANS.keys())
def test_a_plan_entry_of_an_unexpected_shape_is_a_miss(project, entry):
    folder = str(project / ".loopvec_cache")
    cache.store_plan(folder, "m.py", MAP, (), False, plan_source("m.py", MAP))
    [stored] = Path(folder).rglob("*.pickle")
    stored.write_bytes(pickle.dumps(entry))
    assert cache.load_plan(folder, "m.py", MAP, (), False) is None
    # and a run over it plans the file again instead of crashing
    result = scan(RunOptions(paths=("m.py",), cache=True))
    assert [f.pattern for f in result.findings] == ["elementwise"] and not result.errors


UNEXPECTED_VERDICTS = {
    "a dict": {"status": "verified", "message": "verified on 30 examples"},
    "a tuple": ("verified", "verified on 30 examples"),
    "None": None,
    "a verdict of an old class": _old(Verdict, status="verified", message="verified on 30 examples"),
}


@pytest.mark.parametrize("entry", UNEXPECTED_VERDICTS.values(), ids=UNEXPECTED_VERDICTS.keys())
def test_a_verdict_entry_of_an_unexpected_shape_is_a_miss(tmp_path, entry):
    folder = tmp_path / "c"
    store = cache.Verdicts(str(folder), "tree", VerifySettings())
    store.put(_candidate(tmp_path), Verdict("verified", "verified on 30 examples", key="k"))
    [stored] = folder.rglob("*.pickle")
    stored.write_bytes(pickle.dumps(entry))
    assert store.get(_candidate(tmp_path)) is None
