"""window: every fixture pair is rewritten exactly, idempotent and verified; noops stay.

The verifier draws float32/float64 inputs; a battery below also runs every rewritten
fixture function on integer images (unfold keeps them exact where conv2d would need
floats), windows larger than the input (the loop runs zero times; `unfold` alone would
raise), sizes that leave a remainder, strides, nan, and non-contiguous inputs.
"""

import pytest
import torch

import battery
import fixture_cases

PAIRS, NOOPS = fixture_cases.discover("window")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 6 and len(NOOPS) >= 5


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("window", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("window", case)


# --------------------------------------------------------------------------- battery

DTYPES = battery.DTYPES
_t = battery.tensor


def _same(case: str, fn: str, args: list) -> None:
    battery.agree(PAIRS, case, fn, args)


IMAGES = ((0, 0), (1, 1), (1, 4), (2, 2), (3, 5), (5, 4), (6, 6))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_battery(dtype):
    torch.manual_seed(0)
    for shape in IMAGES:
        X = _t(shape, dtype)
        Xt = _t(shape[::-1], dtype).T  # non-contiguous
        for img in (X, Xt):
            for kshape in ((0, 2), (1, 1), (2, 3), (3, 3), (7, 1)):
                _same("window_correlate2d", "correlate2d", [img, _t(kshape, dtype)])
                _same("window_correlate_with_bias", "correlate_bias", [img, _t(kshape, dtype), 0.5])
            _same("window_max_pool", "max_pool", [img])
            _same("window_batched_max_pool", "batched_max_pool", [img[None, None].expand(2, 3, *shape)])
            _same("window_local_range", "local_range", [img])
            _same("window_avg_pool_stride", "avg_pool_overlapping", [img])
        _same("window_moving_average_1d", "moving_average", [X.reshape(-1)])
        _same("window_moving_average_1d", "moving_average", [X])  # windows of rows
    nan = torch.tensor([[1.0, float("nan"), 2.0], [3.0, 4.0, 5.0]])
    _same("window_max_pool", "max_pool", [nan])
    _same("window_local_range", "local_range", [torch.cat([nan, nan])])
