"""einsum: every fixture pair is rewritten exactly, idempotent and verified; noops stay.

The verifier draws float32/float64 inputs of one dtype and shapes unified from the loop
bounds; a battery below also runs every rewritten fixture function on integer inputs
into float outputs, empty summed and free dimensions, and float32 operands summed into
float64 outputs.
"""

import pytest
import torch

import battery
import fixture_cases

PAIRS, NOOPS = fixture_cases.discover("einsum")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 6 and len(NOOPS) >= 5


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("einsum", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("einsum", case)


# --------------------------------------------------------------------------- battery

DTYPES = battery.DTYPES
_t = battery.tensor


def _same(case: str, fn: str, args: list) -> None:
    battery.agree(PAIRS, case, fn, args)


SIZES = (0, 1, 3)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_battery(dtype):
    torch.manual_seed(0)
    for a, b, c in ((0, 2, 3), (2, 0, 3), (2, 3, 0), (1, 1, 1), (2, 3, 4)):
        _same("einsum_channel_mix", "mix_channels", [_t((a, b, 2, 3), dtype), _t((c, b), dtype)])
        res = _t((a,), torch.float64)
        _same("einsum_matvec_into_argument", "matmul", [_t((a, b), dtype), _t((b,), dtype), res])
        _same("einsum_row_dots", "row_dots", [_t((a, b), dtype), _t((a, b), dtype)])
        _same("einsum_attention_scores", "attention_scores", [_t((a, b, c), dtype), _t((a, 2, c), dtype)])
        _same("einsum_frobenius_inner_product", "frobenius", [_t((a, b), dtype), _t((a, b), dtype)])
        _same("einsum_scaled_tensor_contraction", "contract", [_t((a, b, c), dtype), _t((b, c, 2), dtype)])
        _same("einsum_batched_trace", "batched_trace", [_t((a, b, b), dtype)])
        _same("einsum_batched_gram", "batched_gram", [_t((a, b, c), dtype)])
        # element dims of two factors broadcast: y's wider rows only meet x's when the loop runs
        _same("einsum_row_dots_of_vectors", "row_dots_of_vectors", [_t((a, b, 1), dtype), _t((a, b, c), dtype)])
    # float32 operands summed into float64 keep float64's precision; a float64 output
    # argument takes float32 sums
    _same("einsum_row_dots", "row_dots", [_t((2, 3), torch.float32), _t((2, 3), torch.float64)])
    _same("einsum_matvec_into_argument", "matmul", [_t((2, 3), dtype), _t((3,), dtype), _t((4,), torch.float32)])
