"""vmap: pure maps whose body no table knows become torch.vmap of the body, proved on data."""

import pytest

import codemods
import fixture_cases
from loopvec.engine import plan_source

PAIRS, NOOPS = fixture_cases.discover("vmap")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 6 and len(NOOPS) >= 4


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("vmap", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("vmap", case)


def test_is_tried_last():
    orders = {name: getattr(p, "ORDER", 100) for name, p in codemods.all_patterns().items()}
    assert orders["vmap"] == max(orders.values())
    assert list(codemods.all_patterns())[-1] == "vmap"


def _messages(source: str, patterns=("vmap",)) -> list[str]:
    return [p.message for p in plan_source("m.py", source, patterns).planned]


def _declines(source: str) -> str:
    plan = plan_source("m.py", source, ("vmap",), show_declined=True)
    assert not plan.planned, [p.message for p in plan.planned]
    return " ".join(f.message for f in plan.declined)


def _one(expr: str, collector: str = "stack") -> str:
    return f"import torch\ndef f(x, w):\n    return torch.{collector}([{expr} for v in x])\n"


@pytest.mark.parametrize("expr, reason", [
    ("v * v.sum().item()", "`.item()`"),
    ("v.tolist()", "`.tolist()`"),
    ("v / float(v.sum())", "`float(...)`"),
    ("v if v.sum() > 0 else -v", "branches on a per-item value"),
    ("v * (v.sum() > 0 and v.max() < 1)", "`and`/`or`"),
    ("v * (0 < v.sum() < 1)", "chained comparison"),
    ("v[v > 0]", "boolean mask"),
    ("v.nonzero()", "its shape depends on the data"),
    ("torch.unique(v)", "depends on the data"),
    ("torch.tensor(v)", "depends on the data"),
    ("v * torch.rand(3)", "random numbers"),
    ("w", "does not depend"),
])
def test_declines_what_vmap_cannot_run(expr, reason):
    assert reason in _declines(_one(expr))


def test_in_place_write_into_a_captured_tensor_declines():
    src = "import torch\ndef f(x, acc):\n    out = []\n    for v in x:\n        acc.add_(v)\n" \
          "        out.append(torch.outer(v, v))\n    return torch.stack(out)\n"
    assert "side effect" in _declines(src)


def test_values_invariant_conditions_are_fine():
    src = "import torch\ndef f(x, flip: bool):\n    return torch.stack([torch.kron(v, v) if flip else v for v in x])\n"
    assert _messages(src) == ["becomes `torch.vmap(lambda v: torch.kron(v, v) if flip else v)(x).clone()`"]


def test_fresh_results_need_no_copy_and_views_of_inputs_do():
    assert _messages(_one("torch.kron(v, v)[0]")) == ["becomes `torch.vmap(lambda v: torch.kron(v, v)[0])(x)`"]
    assert _messages(_one("v.unfold(0, 2, 1)")) == ["becomes `torch.vmap(lambda v: v.unfold(0, 2, 1))(x).clone()`"]
    # a helper whose every return is computed: no copy; one that may return its input: a copy
    src = "import torch\ndef h(v):\n    return v\ndef f(x):\n    return torch.stack([h(v) for v in x])\n"
    assert _messages(src) == ["becomes `torch.vmap(h)(x).clone()`"]


def test_rows_by_index_get_parameter_names_that_do_not_clash():
    src = "import torch\ndef f(x, x_row):\n    return torch.stack([torch.kron(x[i], x_row) for i in range(len(x))])\n"
    assert _messages(src) == ["becomes `torch.vmap(lambda x_row2: torch.kron(x_row2, x_row))(x)`"]


def test_a_prefix_of_the_rows_is_sliced():
    src = "import torch\ndef f(x, n: int):\n    return torch.stack([torch.kron(x[i], x[i]) for i in range(n)])\n"
    assert _messages(src) == ["becomes `torch.vmap(lambda x_row: torch.kron(x_row, x_row))(x[:n])`"]


def test_other_patterns_win_when_they_apply():
    src = "import torch\ndef f(x):  # loopvec: shapes x=[n,k]\n    return torch.stack([torch.softmax(v, 0) for v in x])\n"
    plan = plan_source("m.py", src, ("batched_op", "vmap"))
    assert [(p.pattern, p.message) for p in plan.planned] == [("batched_op", "becomes `torch.softmax(x, 1)`")]


def test_a_comment_above_the_first_body_statement_keeps_its_indentation():
    # the per-item function once came out as `def _per_item(...):\n    # c\nk = ...`, which does not parse
    from loopvec.engine import apply_keys

    src = ("import torch\ndef f(x):  # loopvec: shapes x=[n,3]\n    out = torch.zeros(len(x), 9)\n"
           "    for i in range(len(x)):\n        # outer product, flattened\n        k = torch.kron(x[i], x[i])\n"
           "        out[i] = k\n    # done\n    return out\n")
    plan = plan_source("m.py", src, ("vmap",))
    assert [(p.message, p.unverifiable) for p in plan.planned] == [
        ("becomes `out[:len(x)] = torch.vmap(_per_item)(x)`", None)]
    new = apply_keys("m.py", src, {p.key for p in plan.planned}, ("vmap",))
    assert "    def _per_item(x_row):\n        # outer product, flattened\n        k = torch.kron(x_row, x_row)\n" \
           "        return k\n    out[:len(x)] = torch.vmap(_per_item)(x)\n    # done\n" in new
    compile(new, "m.py", "exec")
