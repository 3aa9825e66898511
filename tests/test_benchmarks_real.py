"""The pure parts of the real-code check (`benchmarks/real.py`): how an unverifiable
finding's message is classed, how a finding's diff is applied to the module text and the
rewritten function rebuilt, and how a rewrite is judged on realistic inputs, on a tiny
module written here. No library is installed and nothing is fetched."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import real, real_inputs  # noqa: E402
from benchmarks.real import DiffError, apply_diff, reason_class, rewritten  # noqa: E402
from loopvec.engine import unified_diff  # noqa: E402


@pytest.mark.parametrize(
    "message, expected",
    [
        ("the loop never ran on the 78 inputs the original accepted: the function returned at line 94 on every "
         "input; a hint may help", "loop never ran"),
        ("module failed to import: ModuleNotFoundError: No module named 'pandas'", "module failed to import"),
        ("only 0 of 201 generated inputs ran without error in the original (most often: IndexError: tuple index "
         "out of range); a hint may help", "too few inputs ran"),
        ("BoxCoder() needs arguments (weights); cannot build an instance to call BoxCoder.decode on",
         "needs arguments to build instance"),
        ("cannot probe the original: no loop at line 390", "cannot probe the loop"),
        ("nested function: it cannot be called on its own to verify it", "nested function"),
        ("timed out after 20 s", "other"),
        ("", "other"),
    ],
    ids=["the function returned before the loop", "an import error", "the original raised on most inputs",
         "a class whose constructor needs arguments", "the probe cannot find the loop", "a nested function",
         "a time-out is another reason", "an empty message"],
)
def test_unverifiable_messages_fall_into_reason_classes(message, expected):
    assert reason_class(message) == expected


MODULE = '''import torch


class Scale:
    def __init__(self, factor):
        self.factor = factor

    def apply(self, xs):
        out = []
        for x in xs:
            out.append(x * self.factor)
        return torch.stack(out)


def total(xs):
    s = 0
    for x in xs:
        s += x
    return s
'''

APPLY_REWRITE = MODULE.replace('''        out = []
        for x in xs:
            out.append(x * self.factor)
        return torch.stack(out)''', '''        return xs * self.factor''')

# Right on a tensor; raises on the list of tensors the library really passes.
TOTAL_REWRITE = "import math\n" + MODULE.replace('''    s = 0
    for x in xs:
        s += x
    return s''', '''    return xs.sum(0)''')


def udiff(old: str, new: str, path: str = "m.py") -> str:
    """The diff as `loopvec apply --format json` reports it."""
    return unified_diff(path, old, new)


def test_a_diff_applied_to_the_module_text_gives_the_rewritten_text():
    assert apply_diff(MODULE, udiff(MODULE, APPLY_REWRITE)) == APPLY_REWRITE


def test_two_hunks_and_an_added_import_apply_together():
    both = "import math\n" + APPLY_REWRITE.replace("    s = 0\n    for x in xs:\n        s += x\n    return s",
                                                   "    return xs.sum(0)")
    assert apply_diff(MODULE, udiff(MODULE, both)) == both


def test_a_diff_whose_context_does_not_match_is_refused():
    changed = MODULE.replace("self.factor = factor", "self.factor = 2 * factor")
    with pytest.raises(DiffError):
        apply_diff(changed, udiff(MODULE, APPLY_REWRITE))


def test_a_file_without_a_final_newline_keeps_it_missing():
    old, new = "x = 1\ny = 2", "x = 1\ny = 3"
    assert apply_diff(old, udiff(old, new)) == new


def test_the_rewritten_method_and_its_new_imports_are_rebuilt_from_the_diff():
    source, prelude, span = rewritten(MODULE, udiff(MODULE, APPLY_REWRITE), "Scale.apply")
    assert source == "def apply(self, xs):\n    return xs * self.factor\n"
    assert prelude == ""
    assert span == (2,)  # the line the reach probe watches
    source, prelude, span = rewritten(MODULE, udiff(MODULE, TOTAL_REWRITE), "total")
    assert "xs.sum(0)" in source and prelude == "import math"


def test_a_diff_that_leaves_the_function_alone_is_refused():
    with pytest.raises(DiffError):
        rewritten(MODULE, udiff(MODULE, APPLY_REWRITE), "total")


def test_pins_are_read_from_the_requirement_lines(tmp_path):
    pins = tmp_path / "pins.txt"
    pins.write_text("# a comment\nkornia==0.9.0  # the library\n\npackaging>=20\nmonai == 1.6.1\n")
    assert real.read_pins(pins) == {"kornia": "0.9.0", "monai": "1.6.1"}


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A tiny package `realpkg.ops` holding MODULE, imported from tmp_path."""
    root = tmp_path / "realpkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    path = root / "ops.py"
    path.write_text(MODULE)
    monkeypatch.setattr(real_inputs, "INPUTS", {})
    yield path
    for name in [m for m in sys.modules if m == "realpkg" or m.startswith("realpkg.")]:
        del sys.modules[name]


def finding(path: Path, qualname: str, new: str, line: int, column: int) -> dict:
    return {"path": str(path), "function": qualname, "pattern": "vmap", "safety": "safe", "line": line,
            "column": column, "diff": udiff(MODULE, new, str(path))}


def test_the_input_key_names_the_library_module_and_function(package):
    assert real.input_key("mylib", str(package), "Scale.apply") == "mylib:realpkg.ops.Scale.apply"


def test_a_rewrite_that_agrees_on_the_realistic_inputs_is_correct_with_self_built_by_the_entry(package):
    import torch

    real_inputs.INPUTS["mylib:realpkg.ops.Scale.apply"] = lambda: [
        real_inputs.Call((torch.rand(4, 3),), instance=lambda: __import__("realpkg.ops").ops.Scale(3.0)),
    ]
    result = real.check_finding("mylib", finding(package, "Scale.apply", APPLY_REWRITE, 10, 9))
    assert result["status"] == "correct", result
    assert result["calls"][0]["iterations"] == 4 and result["calls"][0]["span_ran"] is True


def test_a_rewrite_that_raises_on_the_kind_of_value_callers_pass_is_wrong(package):
    import torch

    real_inputs.INPUTS["mylib:realpkg.ops.total"] = lambda: [
        real_inputs.Call(([torch.rand(3), torch.rand(3)],), label="a list of tensors"),
    ]
    result = real.check_finding("mylib", finding(package, "total", TOTAL_REWRITE, 17, 5))
    assert result["status"] == "WRONG"
    assert result["why"].startswith("a list of tensors: the rewrite: raised AttributeError")


def test_a_rewrite_checked_through_the_library_api_is_swapped_in_for_each_side(package):
    import torch

    def through():
        from realpkg import ops

        return ops.total(list(torch.ones(3, 2)))

    real_inputs.INPUTS["mylib:realpkg.ops.total"] = lambda: [real_inputs.Call(through=through, label="api")]
    result = real.check_finding("mylib", finding(package, "total", TOTAL_REWRITE, 17, 5))
    assert result["status"] == "WRONG" and "api" in result["why"]
    from realpkg import ops

    assert ops.total([torch.ones(2)] * 2).tolist() == [2.0, 2.0]  # the original is back


def test_inputs_that_never_reach_the_loop_leave_the_rewrite_unchecked(package):
    import torch

    real_inputs.INPUTS["mylib:realpkg.ops.total"] = lambda: [real_inputs.Call((torch.rand(1, 3),))]
    result = real.check_finding("mylib", finding(package, "total", TOTAL_REWRITE, 17, 5))
    assert result["status"] == "unchecked" and "reached" in result["why"]


def test_a_rewrite_without_an_input_entry_is_unchecked(package):
    result = real.check_finding("mylib", finding(package, "total", TOTAL_REWRITE, 17, 5))
    assert result == {**result, "status": "unchecked", "why": "no realistic-input entry"}


def test_a_report_is_counted_by_status_and_unverifiable_reason():
    report = {
        "summary": {"files": 2, "lines": 40, "loops": 5, "candidates_per_pattern": {"vmap": 3, "einsum": 1}},
        "findings": [
            {"status": "verified", "message": "becomes `x.sum(0)`"},
            {"status": "failed-verification", "message": "rewrite differs from the original"},
            {"status": "unverifiable", "message": "Foo() needs arguments (a); cannot build an instance"},
            {"status": "unverifiable", "message": "the loop never ran on the 9 inputs the original accepted"},
        ],
        "errors": [],
    }
    assert real.counts(report) == {
        "files": 2, "lines": 40, "loops": 5, "candidates": 4, "verified": 1, "failed-verification": 1,
        "unverifiable": 2, "unverifiable_by_reason": {"loop never ran": 1, "needs arguments to build instance": 1},
        "errors": 0,
    }
