"""sweep: every fixture pair is rewritten exactly, idempotent and verified; noops stay."""

import pytest
import torch

import exactness
import fixture_cases
from loopvec.engine import plan_source

PAIRS, NOOPS = fixture_cases.discover("sweep")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 6 and len(NOOPS) >= 4


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("sweep", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("sweep", case)


# ---------------------------------------------------------------------------
# Exactness beyond the verifier's dyadic values: a Python float meets a tensor in the
# tensor's dtype (0.1 becomes float32's 0.1 against a float32 tensor, stays a double
# against a float64 one), so thresholds sitting exactly on a value must agree bit for bit.


def _pair(case_name, function):
    before, after = exactness.pair(PAIRS, case_name)
    return getattr(before, function), getattr(after, function)


def _same(a, b, exact=True):
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        if exact:
            assert torch.equal(a, b), (a, b)
        else:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True), (a, b)
    else:
        assert a == b


THIRD = 1 / 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64], ids=str)
def test_telescope_masks_bit_for_bit(dtype):
    f, g = _pair("sweep_telescope_masks", "measure")
    image = (torch.randn(7, 9, generator=torch.Generator().manual_seed(0)) * 10).to(dtype)
    centers = [(THIRD * 10, 2.7), (2.2, 0.1), (3.0, 4.0 + 1e-9), (-1.5, 8.25)]
    for r in (1.1, 2.0, 2.5 + 1e-12):
        _same(f(image, centers, r), g(image, centers, r))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64], ids=str)
def test_thresholds_on_a_value_compare_in_the_tensors_dtype(dtype):
    f, g = _pair("sweep_threshold_rates", "positive_rates")
    scores = torch.tensor([0.1, 0.2, THIRD, 0.7, 16777217.0]).to(dtype)
    thresholds = [0.1, THIRD, 0.2, 16777216.5, -0.0]
    _same(f(scores, thresholds), g(scores, thresholds))


def test_mixed_int_and_float_slots_keep_their_dtypes():
    f, g = _pair("sweep_mixed_int_float_circles", "disks")
    circles = [(1, 2, 1.5), (3, -1, 2.3), (0, 0, THIRD * 7), (4, 6, 2 ** 0.5 * 2)]
    _same(f(6, 7, circles), g(6, 7, circles))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_parameter_arithmetic_stays_double_until_it_meets_a_tensor(dtype):
    f, g = _pair("sweep_gaussian_widths", "gaussian_stack")
    d2 = torch.rand(4, 5, generator=torch.Generator().manual_seed(1)).to(dtype) * 9
    _same(f(d2, [0.3, 1.7, THIRD]), g(d2, [0.3, 1.7, THIRD]))
    f, g = _pair("sweep_comprehension_stack", "windows")
    t = torch.linspace(-3, 3, 11, dtype=dtype)
    _same(f(t, [0.3, 2.9, THIRD]), g(t, [0.3, 2.9, THIRD]))


def test_reductions_agree_and_empty_lists_keep_the_loops_result():
    f, g = _pair("sweep_tensor_of_means", "mean_above")
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    _same(f(x, [0.1, THIRD, -0.2]), g(x, [0.1, THIRD, -0.2]), exact=False)
    _same(f(x, []), g(x, []))  # torch.tensor([]) is float32
    f, g = _pair("sweep_total_over_thresholds", "count_above")
    scores = torch.tensor([0.1, 0.5, THIRD])
    _same(f(scores, [0.1, THIRD]), g(scores, [0.1, THIRD]))
    assert f(scores, []) == g(scores, []) == 0 and type(g(scores, [])) is int


def test_losses_sum_per_item_reductions():
    f, g = _pair("sweep_loss_over_measurements", "total_loss")
    gen = torch.Generator().manual_seed(3)
    prediction, masks, targets = torch.randn(2, 3, 4, generator=gen), torch.rand(5, 3, 4, generator=gen), \
        torch.randn(5, 2, 3, 4, generator=gen)
    _same(f(prediction, masks, targets), g(prediction, masks, targets), exact=False)
    assert g(prediction, masks[:0], targets[:0]) == 0
    f, g = _pair("sweep_loss_sum_reduction", "l1_total")
    _same(f(targets[:, 0, 0], targets[:, 1, 0]), g(targets[:, 0, 0], targets[:, 1, 0]), exact=False)


# ---------------------------------------------------------------------------
# Focused cases


def _messages(source: str) -> list[str]:
    return [p.message for p in plan_source("m.py", source, ("sweep",)).planned]


def _declines(source: str) -> str:
    plan = plan_source("m.py", source, ("sweep",), show_declined=True)
    assert not plan.planned, [p.message for p in plan.planned]
    return " ".join(f.message for f in plan.declined)


def test_number_meeting_a_computed_tensor_of_unknown_dtype_names_it_first():
    src = ("import torch\ndef f(h: int, w: int, circles: list[tuple[float, float, float]]):\n"
           "    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')\n"
           "    return torch.stack([(yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2 for cy, cx, r in circles])\n")
    [message] = _messages(src)
    assert message == ("becomes `part <= (circles_t[:, 2] ** 2)[:, None, None]"
                       ".to(part.device, torch.result_type(part, 1.0))`")


@pytest.mark.parametrize("criterion, total", [
    ('nn.L1Loss(reduction="none")', 'nn.functional.l1_loss(preds, targets, reduction="none").sum(0)'),
    ('nn.SmoothL1Loss(beta=0.5)', 'nn.functional.smooth_l1_loss(preds, targets, reduction="none", beta=0.5)'
                                  '.mean(dim=1).sum()'),
    ('nn.MSELoss(reduction="sum")', 'nn.functional.mse_loss(preds, targets, reduction="sum")'),
], ids=["per-element losses add up", "mean per item then sum", "sum reduction is one sum"])
def test_loss_reductions(criterion, total):
    src = ("import torch\nfrom torch import nn\n"
           "def f(preds, targets):  # loopvec: shapes preds=[n,d] targets=[n,d]\n"
           f"    crit = {criterion}\n    total = 0\n    for p, t in zip(preds, targets):\n"
           "        total += crit(p, t)\n    return total\n")
    assert _messages(src) == [f"becomes `total = {total} if len(preds) else 0`"]


def test_criterion_rebound_is_opaque():
    src = ("import torch\nfrom torch import nn\n"
           "def f(preds, targets, fancy):  # loopvec: shapes preds=[n,d] targets=[n,d]\n"
           "    crit = nn.MSELoss()\n    if fancy:\n        crit = fancy\n    total = 0\n"
           "    for p, t in zip(preds, targets):\n        total += crit(p, t)\n    return total\n")
    assert "not a known loss" in _declines(src)


def test_tensor_rows_that_are_not_a_loss_are_left_to_the_reduction_pattern():
    src = ("import torch\ndef f(x):  # loopvec: shapes x=[n,d]\n    total = 0\n"
           "    for row in x:\n        total += (row ** 2).sum()\n    return total\n")
    assert "not a known loss" in _declines(src)


def test_iterable_annotation_may_be_a_generator():
    src = ("import torch\nfrom typing import Iterable\n"
           "def f(x, ts: Iterable[float]):  # loopvec: shapes x=[n]\n"
           "    return torch.stack([x * t for t in ts])\n")
    assert "not all numbers" in _declines(src)


def test_enclosing_loop_that_rebinds_a_tensor_forgets_its_rank():
    src = ("import torch\ndef f(cs: list[float]):\n    yy = torch.arange(5)\n    res = []\n"
           "    for o in range(3):\n        out = []\n        for c in cs:\n            out.append(yy - c)\n"
           "        stacked = torch.stack(out)\n        res.append(stacked)\n        yy = yy[None]\n    return res\n")
    assert "cannot tell whether `yy`" in _declines(src)


def test_cat_finish_and_float_floor_division_decline():
    head = "import torch\ndef f(x, ts: list[float]):  # loopvec: shapes x=[n]\n"
    cat = head + "    return torch.cat([x * t for t in ts])\n"
    assert "torch.cat" in _declines(cat)
    floor = head + "    return torch.stack([x * (t // 2) for t in ts])\n"
    assert "float `//`" in _declines(floor)


def test_hint_comment_gives_the_list_its_items():
    src = ("import torch\ndef f(x, ts):  # loopvec: shapes x=[n] ts=list[float]\n"
           "    return torch.stack([x * t for t in ts])\n")
    assert _messages(src) == ["becomes `x * ts_t[:, None].to(x.device, torch.result_type(x, 1.0))`"]
