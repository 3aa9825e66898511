"""A candidate the verifier refutes gives way to the next pattern's rewrite of the same loop."""

import pytest

from loopvec import runner
from loopvec.engine import apply_keys, plan_source
from loopvec.results import VERIFIED
from loopvec.runner import RunOptions
from loopvec.verify.types import Verdict

SOURCE = '''import torch


def f(x: torch.Tensor) -> torch.Tensor:
    out = []
    for row in x:
        out.append(torch.sin(row) * 2)
    return torch.stack(out)
'''


def test_a_rewrite_keeps_the_next_patterns_rewrite_of_its_loop():
    (planned,) = plan_source("m.py", SOURCE).planned
    assert planned.pattern == "elementwise" and planned.alternative is not None
    assert planned.alternative.pattern == "vmap" and "torch.vmap" in planned.alternative.function_source
    new = apply_keys("m.py", SOURCE, {planned.alternative.key})
    assert "torch.vmap(lambda row: torch.sin(row) * 2)(x)" in new and "for row in x" not in new


def test_only_patterns_that_were_asked_for_are_alternatives():
    (planned,) = plan_source("m.py", SOURCE, ("elementwise",)).planned
    assert planned.alternative is None


@pytest.mark.slow
def test_a_refuted_rewrite_gives_way_to_a_verified_alternative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(SOURCE)
    options = RunOptions(paths=("m.py",))
    results, _, _ = runner.plan_all(options)
    (plan,) = results
    (first,) = plan.planned
    # as if the verifier had found a counterexample to the first pattern's rewrite
    verdicts = {first.key: Verdict("failed", "differs on x=tensor([0.5])", key=first.key)}
    (after,) = runner._fall_back([plan], verdicts, options, None)
    (chosen,) = after.planned
    assert chosen.pattern == "vmap" and chosen.key == first.alternative.key
    assert runner._status(chosen, verdicts.get(chosen.key))[0] == VERIFIED
    assert "(the elementwise rewrite was refuted: differs on x=tensor([0.5]))" in chosen.message


def test_a_verified_rewrite_keeps_its_place():
    plan = plan_source("m.py", SOURCE)
    (first,) = plan.planned
    verdicts = {first.key: Verdict("verified", "ok", key=first.key)}
    assert runner._fall_back([plan], verdicts, RunOptions(paths=("m.py",)), None) == [plan]


CALLS_A_PARAMETER = '''import torch


def apply_each(f, X: torch.Tensor) -> torch.Tensor:
    return torch.stack([f(x) for x in X])
'''


@pytest.mark.slow
def test_a_proof_with_a_stand_in_is_reported_as_an_assumption(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(CALLS_A_PARAMETER)
    result = runner.apply(RunOptions(paths=("m.py",), dry_run=True))
    (finding,) = result.findings
    assert finding.status == VERIFIED, finding.message
    assert any("`f` treats each row on its own" in a for a in finding.assumptions), finding.assumptions
