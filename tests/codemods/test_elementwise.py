"""elementwise: every fixture pair is rewritten exactly, idempotent and verified; noops stay."""

import pytest

import fixture_cases
from loopvec.engine import plan_source

PAIRS, NOOPS = fixture_cases.discover("elementwise")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 12 and len(NOOPS) >= 8


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("elementwise", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("elementwise", case)


def _messages(source: str) -> list[str]:
    return [p.message for p in plan_source("m.py", source, ("elementwise",)).planned]


def _declines(source: str) -> str:
    plan = plan_source("m.py", source, ("elementwise",), show_declined=True)
    assert not plan.planned
    return " ".join(f.message for f in plan.declined)


def test_empty_list_keeps_default_dtype_branch():
    src = "import torch\ndef f(x):\n    return torch.tensor([v + 1 for v in x])\n"
    assert _messages(src) == ["becomes `x + 1 if len(x) else torch.tensor([])`"]


def test_explicit_dtype_needs_no_empty_branch():
    src = "import torch\ndef f(x):\n    return torch.tensor([v + 1 for v in x], dtype=torch.float64)\n"
    assert _messages(src) == ["becomes `(x + 1).to(torch.float64)`"]


def test_stacking_the_elements_themselves_copies():
    src = "import torch\ndef f(x):\n    return torch.stack([v for v in x])\n"
    assert _messages(src) == ["becomes `x.clone()`"]


def test_python_int_times_tensor_declines():
    # x[i] * i: a 0-d int32 tensor times a Python int stays int32; batched arange would promote
    src = "import torch\ndef f(x):\n    out = torch.zeros_like(x)\n    for i in range(len(x)):\n        out[i] = x[i] * i\n    return out\n"
    assert "mixes a per-element Python number with a tensor" in _declines(src)


def test_item_declines_with_advice():
    src = "import torch\ndef f(x):\n    return torch.tensor([v.item() * 2 for v in x])\n"
    assert ".item()" in _declines(src)


def test_max_with_constant_declines():
    src = "import torch\ndef f(x):\n    return torch.tensor([max(v, 0.0) for v in x])\n"
    assert "mixes a loop element with a constant" in _declines(src)


def test_resolves_torch_by_import_not_spelling():
    src = "import numpy as torch\ndef f(x):\n    return torch.stack([v * 2 for v in x])\n"
    assert _messages(src) == []


def test_adds_import_when_torch_is_imported_by_name_only():
    src = "from torch import stack\nimport torch.nn.functional as F\ndef f(x):\n    out = []\n    for v in x:\n        out.append(F.relu(v))\n    return stack(out)\n"
    plan = plan_source("m.py", src, ("elementwise",))
    assert [p.message for p in plan.planned] == ["becomes `return F.relu(x)`"]
