"""Vacuous-proof traps: a proof counts only on values that really reach the loop.

`fixtures/vacuous/noop_<why>.py` holds a real function whose loop a pattern proposes to
rewrite, but whose rewrite is unproved or wrong for the values that reach the loop in
real use: the loop sits behind a rank check, an isinstance branch, an early return or a
flag, or it walks a ragged list of tensors, a torch.Size, an nn.ModuleList, *args, a
numpy array or a list of numbers, or its per-item helper calls a data-dependent op.
Each module's docstring says which value reaches the loop and why the rewrite is wrong
there. `loopvec apply --unsafe` must leave every one of them byte for byte as it was.

`fixtures/vacuous/<why>.py` is its twin: the same computation with its loop reachable by
tensors (annotated, no guard in front of it), which a plain `loopvec apply` rewrites into
exactly `<why>.expected.py`.

Every trap and every twin is applied in one run each (one verifier batch per run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import libcst as cst
import pytest

from loopvec.engine import plan_source
from loopvec.results import REWRITTEN
from loopvec.runner import RunOptions, apply
from loopvec.verify.types import VerifySettings

FOLDER = Path(__file__).resolve().parent.parent / "fixtures" / "vacuous"
SETTINGS = VerifySettings(timeout_s=60.0, workers=2)

TRAPS = sorted(p.stem for p in FOLDER.glob("noop_*.py"))
TWINS = sorted(p.stem for p in FOLDER.glob("*.py") if not p.name.startswith("noop_")
               and not p.name.endswith(".expected.py"))

def _param(name: str):
    return pytest.param(name, id=name.removeprefix("noop_").replace("_", " "))


def _applied(folder: Path, names: list[str], unsafe: bool) -> dict[str, list]:
    """Copy `names` into `folder`, apply once, and return the findings by file stem."""
    for name in names:
        shutil.copyfile(FOLDER / f"{name}.py", folder / f"{name}.py")
    result = apply(RunOptions(paths=(str(folder),), unsafe=unsafe, verify=SETTINGS))
    assert not result.errors, [(r.path, r.error) for r in result.errors]
    by_file: dict[str, list] = {name: [] for name in names}
    for finding in result.findings:
        by_file[Path(finding.path).stem].append(finding)
    return by_file


@pytest.fixture(scope="module")
def traps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traps")
    return folder, _applied(folder, TRAPS, unsafe=True)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("twins")
    return folder, _applied(folder, TWINS, unsafe=False)


def test_the_folder_holds_a_dozen_traps_each_with_its_twin():
    assert len(TRAPS) >= 12, TRAPS
    assert sorted(f"noop_{t}" for t in TWINS) == TRAPS
    for twin in TWINS:
        assert (FOLDER / f"{twin}.expected.py").is_file(), f"{twin} has no .expected.py"


@pytest.mark.parametrize("name", [_param(n) for n in TRAPS])
def test_a_trap_is_never_written_even_with_unsafe(traps, name):
    folder, by_file = traps
    findings = by_file[name]
    # a trap no pattern proposes to rewrite would test nothing
    assert any(f.pattern for f in findings), f"no pattern proposes a rewrite in {name}"
    written = [f"{f.line}: {f.message}" for f in findings if f.status == REWRITTEN]
    assert not written, f"{name} was rewritten: {written}"
    assert (folder / f"{name}.py").read_bytes() == (FOLDER / f"{name}.py").read_bytes()


@pytest.mark.parametrize("name", TWINS, ids=lambda n: n.replace("_", " "))
def test_the_reachable_twin_is_rewritten(twins, name):
    folder, by_file = twins
    findings = by_file[name]
    assert findings and all(f.status == REWRITTEN for f in findings), \
        [f"{f.line}: {f.status}: {f.message}" for f in findings]
    new = (folder / f"{name}.py").read_text(encoding="utf-8")
    assert new == (FOLDER / f"{name}.expected.py").read_text(encoding="utf-8")
    cst.parse_module(new)
    # idempotent: the rewritten file proposes nothing more
    again = plan_source(f"{name}.py", new).planned
    assert not again, [p.message for p in again]
