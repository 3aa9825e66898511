"""where: every fixture pair is rewritten exactly, idempotent and verified; noops stay."""

import pytest

import fixture_cases
from loopvec.engine import plan_source

PAIRS, NOOPS = fixture_cases.discover("where")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 8 and len(NOOPS) >= 5


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("where", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("where", case)


def _messages(source: str) -> list[str]:
    return [p.message for p in plan_source("m.py", source, ("where",)).planned]


def _declines(source: str) -> str:
    plan = plan_source("m.py", source, ("where",), show_declined=True)
    assert not plan.planned, [p.message for p in plan.planned]
    return " ".join(f.message for f in plan.declined)


def _loop(body: str, finish: str = "return torch.stack(out)", args: str = "data") -> str:
    lines = body.strip("\n").splitlines()
    indented = "\n".join("        " + line for line in lines)
    return f"import torch\n\ndef f({args}):\n    out = []\n    for x in data:\n{indented}\n    {finish}\n"


def test_branches_of_one_dtype_merge_into_where():
    src = _loop("if x > 0:\n    out.append(x * 2)\nelse:\n    out.append(x * 3)")
    assert _messages(src) == ["becomes `return torch.where(data > 0, data * 2, data * 3)`"]


def test_plain_map_is_left_to_elementwise():
    assert "no condition" in _declines(_loop("out.append(x * 2)"))


def test_nan_fails_a_comparison_so_else_is_negated_not_flipped():
    # `~(x > 1) & (x < -1)`, never `(x <= 1) & ...`: NaN must reach the final else
    src = ("import torch\n\ndef f(x, res):\n    for i in range(len(x)):\n        if x[i] > 1:\n"
           "            res[i] = x[i] * 10\n        elif x[i] < -1:\n            res[i] = -1\n")
    assert _messages(src) == ["becomes `res[:len(x)][~keep & (x < -1)] = -1`"]


def test_truthiness_of_an_element_is_bool():
    # `if x:` on a float or uint8 element is `x != 0`, NaN included: exactly .bool()
    src = ("import torch\n\ndef f(x):\n    out = torch.zeros_like(x)\n    for i in range(len(x)):\n"
           "        out[i] = x[i] * 2 if x[i] else x[i] * 3\n    return out\n")
    assert _messages(src) == ["becomes `out = torch.where(x.bool(), x * 2, x * 3).to(x.dtype)`"]


def test_condition_on_another_array_of_unknown_rank_stores_by_mask():
    # torch.where(m, x * 2, x * 3) would line a 1-D m up with the columns of a 2-D x
    src = ("import torch\n\ndef f(x, m):\n    out = torch.zeros_like(x)\n    for i in range(len(x)):\n"
           "        out[i] = x[i] * 2 if m[i] else x[i] * 3\n    return out\n")
    plan = plan_source("m.py", src, ("where",))
    assert plan.planned[0].function_source.splitlines()[2:] == [
        "    keep = m.bool()", "    out[keep] = (x[keep] * 2).to(out.dtype)",
        "    out[~keep] = (x[~keep] * 3).to(out.dtype)", "    return out"]


def test_declared_ranks_align_the_condition():
    src = ("import torch\n\ndef f(x, m):  # loopvec: shapes x=[n,3] m=[n]\n    out = []\n"
           "    for row, s in zip(x, m):\n        out.append(row * 2 if s > 0 else row * 3)\n"
           "    return torch.stack(out)\n")
    assert _messages(src) == ["becomes `return torch.where((m > 0)[:, None], x * 2, x * 3)`"]


def test_condition_on_another_array_in_a_list_assumes_one_rank():
    src = _loop("if m:\n    out.append(x * 2)\nelse:\n    out.append(x * 3)", args="data, mask").replace(
        "for x in data:", "for x, m in zip(data, mask):")
    plan = plan_source("m.py", src, ("where",))
    assert "data and mask have one rank: one condition per element value" in plan.planned[0].assumptions


def test_short_circuit_guards_the_right_operand():
    src = _loop("if x != 0 and 10 // x > 2:\n    out.append(x * 2)\nelse:\n    out.append(x * 3)")
    assert _messages(src) == ["becomes `return torch.where((data != 0) & (10 // torch.where(data != 0, data, "
                              "torch.ones_like(data)) > 2), data * 2, data * 3)`"]


def test_division_by_element_is_guarded_only_inside_a_branch():
    src = _loop("if x > 0:\n    out.append(x / x)\nelse:\n    out.append(x * 0.5)")
    assert _messages(src) == ["becomes `return torch.where(data > 0, data / torch.where(data > 0, data, 1), "
                              "data * 0.5)`"]


def test_python_number_beside_tensor_in_a_stack_declines():
    # torch.stack of [tensor, 0.0] raises in the loop whenever the 0.0 branch runs
    assert "Python number" in _declines(_loop("if x > 0:\n    out.append(x)\nelse:\n    out.append(0.0)"))


def test_python_number_branches_of_one_type_merge():
    src = _loop("if x > 0:\n    out.append(1)\nelse:\n    out.append(0)", "return torch.tensor(out)")
    assert _messages(src) == ["becomes `return torch.where(data > 0, 1, 0) if len(data) else torch.tensor([])`"]


def test_python_int_and_float_branches_decline():
    # [1, 2] is int64 but [1, 0.5] float32: the dtype depends on the data
    src = _loop("if x > 0:\n    out.append(1)\nelse:\n    out.append(0.5)", "return torch.tensor(out)")
    assert "Python numbers of different types" in _declines(src)


def test_branch_temporary_defined_on_one_path_declines():
    src = _loop("if x > 0:\n    y = x * 2\nout.append(x * 3)\nout2 = y")
    assert _declines(src)


def test_temporary_whose_branches_differ_explains_why():
    src = _loop("if x > 0:\n    y = x * 2\nelse:\n    y = x / 2\nout.append(y)")
    assert "`y`: branches `x * 2` and `x / 2` may differ in dtype" in _declines(src)


def test_store_of_a_constant_outside_every_dtype_stores_only_when_kept():
    # out[keep] = -3.7 into a uint8 `out` raises even when no element takes that branch
    src = ("import torch\n\ndef f(x):\n    out = x.clone()\n    for i in range(len(x)):\n"
           "        if x[i] > 5:\n            out[i] = -3.7\n    return out\n")
    assert _messages(src) == ["becomes `if keep.any(): out[keep] = -3.7`"]


def test_hint_declaring_float_data_lets_mixed_branches_merge():
    src = ("import torch\n\ndef f(data):  # loopvec: shapes data=[n]:float64\n    out = []\n    for x in data:\n"
           "        out.append(x * 2 if x > 0 else x / 2)\n    return torch.stack(out)\n")
    plan = plan_source("m.py", src, ("where",))
    assert [p.message for p in plan.planned] == ["becomes `return torch.where(data > 0, data * 2, data / 2)`"]
    assert plan.planned[0].assumptions == ("data is float64 as declared",)


def test_apply_pattern_where_touches_only_conditional_loops():
    src = ("import torch\n\ndef f(data):\n    out = []\n    for x in data:\n        out.append(x * 2)\n"
           "    return torch.stack(out)\n\n\ndef g(data):\n    return torch.stack([x * 2 if x > 0 else -x for x in data])\n")
    plan = plan_source("m.py", src, ("where",))
    assert [p.qualname for p in plan.planned] == ["g"]


def test_cli_apply_pattern_where_rewrites_only_where_loops(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loopvec.cli import app

    src = ("import torch\n\n\ndef f(data: torch.Tensor) -> torch.Tensor:\n    out = []\n    for x in data:\n"
           "        out.append(x * 2)\n    return torch.stack(out)\n\n\n"
           "def g(data: torch.Tensor) -> torch.Tensor:\n    out = []\n    for x in data:\n        if x > 0:\n"
           "            out.append(x * 2)\n        else:\n            out.append(x * 3)\n    return torch.stack(out)\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(src)
    result = CliRunner().invoke(app, ["apply", "--pattern", "where", "m.py"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    new = (tmp_path / "m.py").read_text()
    assert "out.append(x * 2)\n    return torch.stack(out)\n\n\ndef g" in new  # f untouched
    assert "return torch.where(data > 0, data * 2, data * 3)" in new
    again = CliRunner().invoke(app, ["apply", "--pattern", "where", "m.py"], catch_exceptions=False)
    assert again.exit_code == 0 and (tmp_path / "m.py").read_text() == new
