"""The shared checks every pattern's fixtures go through.

A pattern's folder `fixtures/<pattern>/` holds rewrite pairs `<case>.py` +
`<case>.expected.py` and noop cases `noop_<reason>.py`. For each pair: running only
that pattern on `<case>.py` gives exactly `<case>.expected.py`, the result parses, a
second run changes nothing, and every rewrite is proved by the verifier. For each noop:
the pattern proposes nothing.

Tests use it like:

    PAIRS, NOOPS = fixture_cases.discover("where")

    @pytest.mark.parametrize("case", PAIRS, ids=str)
    def test_rewrites(case, where_verdicts): fixture_cases.check_pair("where", case, where_verdicts)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import libcst as cst

from loopvec.engine import apply_keys, plan_source
from loopvec.verify.types import Candidate, VerifySettings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SETTINGS = VerifySettings(max_examples=30, timeout_s=60.0, device="all", workers=2)


class Case(str):
    """A fixture's name (its id in the test report), with the paths behind it."""

    pattern: str

    @property
    def path(self) -> Path:
        return FIXTURES / self.pattern / f"{self}.py"

    @property
    def expected(self) -> Path:
        return FIXTURES / self.pattern / f"{self}.expected.py"


def _case(pattern: str, name: str) -> Case:
    c = Case(name)
    c.pattern = pattern
    return c


def discover(pattern: str) -> tuple[list[Case], list[Case]]:
    folder = FIXTURES / pattern
    names = sorted(p.name[:-3] for p in folder.glob("*.py") if not p.name.endswith(".expected.py"))
    pairs = [_case(pattern, n) for n in names if not n.startswith("noop_")]
    noops = [_case(pattern, n) for n in names if n.startswith("noop_")]
    return pairs, noops


def plan(path: Path, pattern: str):
    return plan_source(str(path), path.read_text(encoding="utf-8"), (pattern,))


def rewrite(path: Path, pattern: str) -> str:
    source = path.read_text(encoding="utf-8")
    planned = plan_source(str(path), source, (pattern,)).planned
    return apply_keys(str(path), source, {p.key for p in planned}, (pattern,))


@lru_cache(maxsize=None)
def verdicts(pattern: str) -> dict:
    """Verify every rewrite the pattern proposes on its fixtures, in one batch."""
    from loopvec.verify import verify_candidates

    pairs, _ = discover(pattern)
    cands = []
    for case in pairs:
        for p in plan(case.path, pattern).planned:
            assert p.function_source, p.unverifiable
            cands.append(Candidate(*p.impls(), key=p.key))
    return {v.key: v for v in verify_candidates(cands, SETTINGS)}


def check_pair(pattern: str, case: Case) -> None:
    planned = plan(case.path, pattern).planned
    assert planned, f"{pattern} proposes nothing for {case}"
    new = rewrite(case.path, pattern)
    cst.parse_module(new)
    assert new == case.expected.read_text(encoding="utf-8"), f"rewrite of {case} differs from its .expected.py"
    # idempotent: a second run over the result proposes nothing more
    again = plan_source(str(case.expected), new, (pattern,)).planned
    assert not again, f"second run still rewrites {[p.message for p in again]}"
    results = verdicts(pattern)
    for p in planned:
        v = results[p.key]
        assert v.status == "verified", f"{p.qualname}: {v.status}: {v.message}\n{v.counterexample or ''}"


def check_noop(pattern: str, case: Case) -> None:
    planned = plan(case.path, pattern).planned
    assert not planned, f"{case} must stay unchanged, but {pattern} proposes: {[p.message for p in planned]}"
