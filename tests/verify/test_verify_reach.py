"""Reach: a proof counts only on inputs where the replaced loop ran and the rewrite's code ran.

The probe goes into the verifier's copies of both functions, never into the user's file.
"""

import ast
import textwrap

import pytest

from loopvec.engine import changed_lines
from loopvec.report import finding_line
from loopvec.runner import RunOptions, apply
from loopvec.verify import Candidate, Impl, VerifySettings, verify_candidates
from loopvec.verify.probe import Probe, ProbeError, count_loop, mark_lines

SETTINGS = VerifySettings(max_examples=30, timeout_s=60.0, workers=2)

GUARDED = '''\
import torch


def doubled(x):
    if x.ndim >= 1:
        return x * 2
    out = []
    for v in x:
        out.append(v * 3)
    return torch.stack(out)
'''

REACHABLE = '''\
import torch


def doubled(x: torch.Tensor):
    out = []
    for v in x:
        out.append(v * 3)
    return torch.stack(out)
'''

EARLY_RETURN = '''\
import torch


def doubled(x: torch.Tensor):
    if len(x) < 100000:
        return x * 3
    out = []
    for i in range(len(x)):
        out.append(x[i] * 3)
    return torch.stack(out)
'''


def _run(tmp_path, source: str, **options):
    path = tmp_path / "m.py"
    path.write_text(source)
    result = apply(RunOptions((str(path),), dry_run=True, verify=SETTINGS, **options))
    (finding,) = result.findings
    return finding


@pytest.mark.parametrize("source, line", [(GUARDED, 6), (EARLY_RETURN, 6)],
                         ids=["behind a rank check", "behind an early return for small inputs"])
def test_a_loop_that_never_runs_proves_nothing(tmp_path, source, line):
    finding = _run(tmp_path, source)
    assert finding.status == "unverifiable", finding.message
    assert "the loop never ran" in finding.message
    assert f"returned at line {line}" in finding.message
    assert finding.reached == 0


def test_a_reachable_loop_is_verified_with_its_reach_in_the_report(tmp_path):
    finding = _run(tmp_path, REACHABLE)
    assert finding.status == "verified", finding.message
    assert finding.reached >= SETTINGS.min_reached
    assert finding.iterations >= 2
    assert f"[loop ran on {finding.reached} inputs, median" in finding_line(finding)


def test_reach_is_checked_on_the_rewritten_code_too(tmp_path):
    # The rewrite returns before its new code: the loop ran in the original, the
    # rewritten statement never did.
    path = tmp_path / "m.py"
    path.write_text(REACHABLE)
    rewrite = "def doubled(x: torch.Tensor):\n    return x * 3\n    out = x * 3\n    return out\n"
    cand = Candidate(Impl(str(path), "doubled", loop=(6, 5)),
                     Impl(str(path), "doubled", rewrite, "import torch", span=(3,)))
    (v,) = verify_candidates([cand], SETTINGS)
    assert v.status == "unverifiable", v.message
    assert "rewritten code did not" in v.message


def test_without_probe_targets_no_reach_is_asked():
    # `loopvec verify A.py::f B.py::g` compares two whole functions: nothing to probe.
    assert Impl("a.py", "f").loop is None and Impl("a.py", "f").span is None


def test_the_probe_counts_each_run_of_the_loop():
    probe = Probe()
    for _ in probe.count(range(3)):
        pass
    for _ in probe.count([]):
        pass
    assert probe.runs == [3, 0] and probe.iterations == 3
    probe.reset()
    assert probe.iterations == 0


def _fn(text: str):
    return ast.parse(textwrap.dedent(text)).body[0]


def test_count_loop_wraps_the_loop_at_that_line_only():
    fn = _fn("""\
        def f(xs, ys):
            for x in xs:
                pass
            return [y for y in ys]
        """)
    counted = ast.unparse(count_loop(fn, 4, 12))
    assert "for y in __loopvec_probe__.count(ys)" in counted
    assert "for x in xs" in counted
    with pytest.raises(ProbeError):
        count_loop(fn, 5, 1)


def test_a_comprehension_placed_at_its_collector_call_is_found_below_it():
    fn = _fn("""\
        def f(xs):
            return torch.stack(
                [x * 2
                 for x in xs]
            )
        """)
    assert "for x in __loopvec_probe__.count(xs)" in ast.unparse(count_loop(fn, 2, 12))


def test_marks_go_before_the_innermost_statement_of_each_line():
    fn = _fn("""\
        def f(x, c):
            if c:
                y = (x +
                     1)
            return y
        """)
    marked, n = mark_lines(fn, (4, 5, 1))
    text = ast.unparse(marked)
    assert n == 2  # line 1 is the def itself: it runs whenever f is called
    assert "if c:\n        __loopvec_probe__.mark(0)\n        y = x + 1" in text
    assert "__loopvec_probe__.mark(1)\n    return y" in text


def test_changed_lines_are_the_first_new_line_of_each_changed_block():
    old = "def f(x):\n    out = []\n    for v in x:\n        out.append(v)\n    return torch.stack(out)\n"
    new = "def f(x):\n    return x.clone()\n"
    assert changed_lines(old, new) == (2,)
    assert changed_lines(old, old) == ()


# ------------------------------------------------------------------ past the guard

from loopvec.verify.reach import Need, guard_needs, past_guards  # noqa: E402
from loopvec.verify.plan import Dim, Plan, TensorArg  # noqa: E402


def _needs(source: str, line: int):
    return guard_needs(_fn(source), line)


@pytest.mark.parametrize("test, need", [
    ("len(x) < 64", Need("x", "size", 0, 64, None)),
    ("x.shape[1] <= 3", Need("x", "size", 1, 4, None)),
    ("x.size(0) > 10", Need("x", "size", 0, None, 10)),
    ("x.ndim == 1", Need("x", "rank", 0, 2, None)),
    ("x.dim() != 2", Need("x", "rank", 0, 2, 2)),
    ("64 > x.numel()", Need("x", "numel", 0, 64, None)),
    ("not len(x) >= 5", Need("x", "size", 0, 5, None)),
], ids=["a size below a threshold", "a size of the second axis", "a size above a threshold",
        "a rank", "a rank that must be exact", "a number of elements, mirrored", "a negated test"])
def test_the_guard_a_return_sits_behind_says_what_gets_past_it(test, need):
    source = f"""\
        def f(x):
            if {test}:
                return x
            for v in x:
                pass
        """
    assert _needs(source, 3) == [need]


def test_a_return_in_the_else_branch_needs_the_test_true():
    source = """\
        def f(x):
            if len(x) > 8:
                pass
            else:
                return x
        """
    assert _needs(source, 5) == [Need("x", "size", 0, 9, None)]


def test_tests_it_cannot_read_give_no_need():
    source = """\
        def f(x, flag):
            if x[0] > 0 or flag:
                return x
        """
    assert _needs(source, 3) == []


def test_the_plan_is_changed_to_meet_the_needs():
    plan = Plan(args=(("x", TensorArg(("n",))),), dims=(Dim("n", 0, 8),))
    past = past_guards(plan, [Need("x", "size", 0, 64, None), Need("x", "rank", 0, 2, None)])
    (name, arg), = past.args
    assert len(arg.dims) == 2
    dims = {d.name: d for d in past.dims}
    assert dims["n"].low == 64 and dims["n"].high >= 64
    assert past_guards(plan, [Need("x", "size", 0, 10**9, None)]) is None  # too large to chase


def test_an_isinstance_guard_sends_a_list_of_tensors_past_it():
    source = """\
        def f(xs):
            if isinstance(xs, torch.Tensor):
                return xs
            for x in xs:
                pass
        """
    (need,) = _needs(source, 3)
    assert need == Need("xs", "kind", 0, 0, 0)
    plan = Plan(args=(("xs", TensorArg(("n",))),), dims=(Dim("n", 0, 8),))
    (_, arg), = past_guards(plan, [need]).args
    assert type(arg).__name__ == "ListArg" and arg.length == "n"


ISINSTANCE_ELSE = '''\
import torch


def norms(xs):
    if isinstance(xs, torch.Tensor):
        return xs.abs()
    out = []
    for x in xs:
        out.append(x.abs().sum())
    return torch.stack(out)
'''


def test_a_rewrite_proved_on_tensors_is_refuted_on_the_lists_the_else_branch_gets(tmp_path):
    finding = _run(tmp_path, ISINSTANCE_ELSE)
    assert finding.status == "failed-verification", finding.message
    assert "list" in finding.message
