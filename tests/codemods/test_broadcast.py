"""broadcast: every fixture pair is rewritten exactly, idempotent and verified; noops stay.

The verifier draws float32/float64 inputs of one dtype and shapes unified from the loop
bounds; a battery below also runs every rewritten fixture function on integer and bool
inputs, empty dimensions, mixed dtypes, and nan/inf (every term must be computed as
the loop computes it, so 0 * inf stays nan).
"""

import pytest
import torch

import battery
import fixture_cases

PAIRS, NOOPS = fixture_cases.discover("broadcast")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 6 and len(NOOPS) >= 5


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("broadcast", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("broadcast", case)


# --------------------------------------------------------------------------- battery

DTYPES = battery.DTYPES
_t = battery.tensor


def _same(case: str, fn: str, args: list) -> None:
    battery.agree(PAIRS, case, fn, args)


SHAPES = ((0, 2, 3), (2, 0, 3), (2, 3, 0), (1, 1, 1), (2, 3, 4))


def _nonfinite(t):
    if t.dtype.is_floating_point and t.numel() > 1:
        t = t.clone()
        t.view(-1)[0], t.view(-1)[-1] = float("inf"), 0.0
    return t


@pytest.mark.parametrize("dtype", DTYPES + (torch.bool,), ids=str)
def test_battery(dtype):
    torch.manual_seed(0)
    for a, b, c in SHAPES:
        _same("broadcast_image_mask", "apply_mask", [_t((a, b, 2, 3), dtype), _t((2, 3), dtype)])
        _same("broadcast_image_mask", "apply_mask", [_t((a, b, 2, 3), dtype), _t((3,), torch.float64)])
        _same("broadcast_outer_product", "outer", [_t((a,), dtype), _t((b,), dtype)])
        if dtype != torch.bool:
            X, Y = _t((a, c), dtype), _t((b, c), dtype)
            _same("broadcast_pairwise_squared_distance", "squared_distances", [X, Y])
            _same("broadcast_pairwise_distance_sqrt", "distances", [X, Y])
            _same("broadcast_bilinear_form", "bilinear", [_t((a, b), dtype), _t((b, c), dtype), _t((a, c), dtype)])
            _same("broadcast_bilinear_form", "bilinear", [_nonfinite(_t((a, b), dtype)), _t((b, c), dtype),
                                                          _nonfinite(_t((a, c), dtype))])
            _same("broadcast_three_index_sum", "pair_table", [_t((a, b), dtype), _t((b, c), dtype)])
        _same("broadcast_symmetrize", "symmetrize", [_t((a, a), dtype)])
        _same("broadcast_channel_scale", "channel_scale", [_t((a, c), dtype), _t((b,), dtype)])
        if dtype != torch.bool:  # relu rejects bool: the loop only gets away with it when empty
            _same("broadcast_into_argument", "add_bias", [_t((a, b), dtype), _t((b,), dtype), _t((a + 1, b), dtype)])
