"""boolean_mask: every fixture pair is rewritten exactly, idempotent and verified; noops stay."""

import pytest

import fixture_cases
from loopvec.engine import plan_source

PAIRS, NOOPS = fixture_cases.discover("boolean_mask")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 8 and len(NOOPS) >= 5


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("boolean_mask", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("boolean_mask", case)


def _messages(source: str) -> list[str]:
    return [p.message for p in plan_source("m.py", source, ("boolean_mask",)).planned]


def _declines(source: str) -> str:
    plan = plan_source("m.py", source, ("boolean_mask",), show_declined=True)
    assert not plan.planned, [p.message for p in plan.planned]
    return " ".join(f.message for f in plan.declined)


def _loop(body: str, finish: str = "return torch.stack(out)", head: str = "for x in data:") -> str:
    indented = "\n".join("        " + line for line in body.strip("\n").splitlines())
    return f"import torch\n\ndef f(data, mask):\n    out = []\n    {head}\n{indented}\n    {finish}\n"


def test_truthiness_of_any_mask_dtype_is_bool():
    # `if m:` on a uint8/float mask keeps nonzero (and NaN) elements; data[uint8] would index
    src = _loop("if m:\n    out.append(x)", head="for x, m in zip(data, mask):")
    assert _messages(src) == ["becomes `return data[mask.bool()]`"]


def test_comparison_mask_needs_no_conversion():
    assert _messages(_loop("if x > 0:\n    out.append(x)")) == ["becomes `return data[data > 0]`"]


def test_kept_value_is_computed_on_kept_elements_only():
    src = "import torch\n\ndef f(data):\n    return torch.stack([x * 2 for x in data if x > 0])\n"
    assert _messages(src) == ["becomes `data[data > 0] * 2`"]


def test_empty_selection_of_tensor_keeps_float32_branch():
    src = _loop("if x > 0:\n    out.append(x * 2)", "return torch.tensor(out)")
    assert _messages(src) == ["becomes `return data[keep] * 2 if keep.any() else torch.tensor([])`"]


def test_explicit_dtype_needs_no_empty_branch():
    src = _loop("if x > 0:\n    out.append(x)", "return torch.tensor(out, dtype=torch.float64)")
    assert _messages(src) == ["becomes `return data[data > 0].to(torch.float64)`"]


def test_not_is_a_negated_mask_so_nan_is_kept():
    # `not x < 0` keeps NaN; `x >= 0` would drop it
    src = _loop("if not x < 0:\n    out.append(x)")
    assert _messages(src) == ["becomes `return data[~(data < 0)]`"]


def test_and_combines_masks_and_guards_the_right_side():
    src = _loop("if m != 0 and x // m > 1:\n    out.append(x)", head="for x, m in zip(data, mask):")
    assert _messages(src) == ["becomes `return data[(mask != 0) & (data // torch.where(mask != 0, mask, "
                              "torch.ones_like(mask)) > 1)]`"]


def test_mask_name_avoids_names_in_the_function():
    src = ("import torch\n\ndef f(data, keep):\n    out = []\n    for x in data:\n        if x > keep:\n"
           "            out.append(x * x)\n    return torch.stack(out)\n")
    assert _messages(src) == ["becomes `return data[mask] * data[mask]`"]


def test_index_of_kept_elements():
    src = _loop("if x > 0:\n    out.append(i)", "return torch.tensor(out)", head="for i, x in enumerate(data):")
    assert _messages(src) == ["becomes `return torch.arange(len(data))[keep] if keep.any() else torch.tensor([])`"]


def test_no_condition_is_left_to_elementwise():
    assert "no condition" in _declines(_loop("out.append(x * 2)"))


def test_if_else_is_left_to_where():
    assert "see where" in _declines(_loop("if x > 0:\n    out.append(x)\nelse:\n    out.append(-x)"))


def test_condition_independent_of_the_element_declines():
    src = "import torch\n\ndef f(data, flag):\n    return torch.stack([x for x in data if flag])\n"
    assert "does not depend on the loop" in _declines(src)


def test_apply_pattern_boolean_mask_touches_only_filters():
    src = ("import torch\n\ndef f(data):\n    return torch.stack([x * 2 for x in data])\n\n\n"
           "def g(data):\n    return torch.stack([x for x in data if x > 0])\n")
    assert [p.qualname for p in plan_source("m.py", src, ("boolean_mask",)).planned] == ["g"]


def test_walk_over_2d_entries_is_a_2d_mask():
    src = ("import torch\n\ndef f(img, mask):  # loopvec: shapes img=[h,w] mask=[h,w]\n    out = []\n"
           "    for i in range(img.shape[0]):\n        for j in range(img.shape[1]):\n"
           "            if mask[i][j]:\n                out.append(img[i][j] * 2)\n    return torch.stack(out)\n")
    plan = plan_source("m.py", src, ("boolean_mask",))
    assert [p.message for p in plan.planned] == ["becomes `return img[mask.bool()] * 2`"]
    assert plan.planned[0].assumptions == ("mask.shape[:2] == img.shape[:2]",)


def test_walk_using_the_indices_declines():
    src = ("import torch\n\ndef f(img):\n    out = []\n    for i in range(img.shape[0]):\n"
           "        for j in range(img.shape[1]):\n            if img[i, j] > 0:\n                out.append(i)\n"
           "    return torch.tensor(out)\n")
    assert "`i` is used other than as `a[i, j]`" in _declines(src)


def test_inner_range_must_walk_the_second_dimension():
    src = ("import torch\n\ndef f(img, k):\n    out = []\n    for i in range(img.shape[0]):\n"
           "        for j in range(k):\n            if img[i, j] > 0:\n                out.append(img[i, j])\n"
           "    return torch.stack(out)\n")
    assert "second dimension" in _declines(src)
