"""matmul: every fixture pair is rewritten exactly, idempotent and verified; noops stay.

The verifier draws float32/float64 inputs of one dtype and shapes unified from the loop
bounds. Matrix products go wrong elsewhere -- integer inputs into a float output, a
float64 output over float32 inputs, empty inner dimensions, int32 and bool traces --
so a battery below also runs every rewritten fixture function on those.
"""

import itertools

import pytest
import torch

import battery
import fixture_cases

PAIRS, NOOPS = fixture_cases.discover("matmul")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 6 and len(NOOPS) >= 5


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("matmul", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("matmul", case)


# --------------------------------------------------------------------------- battery

DTYPES = battery.DTYPES
_t = battery.tensor


def _same(case: str, fn: str, args: list) -> None:
    battery.agree(PAIRS, case, fn, args)


MATMUL_SHAPES = [((0, 3), (3, 2)), ((2, 0), (0, 3)), ((1, 1), (1, 1)), ((3, 4), (4, 2)), ((2, 3), (3, 0))]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_battery_products(dtype):
    torch.manual_seed(0)
    for sa, sb in MATMUL_SHAPES:
        A, B = _t(sa, dtype), _t(sb, dtype)
        _same("matmul_triple_loop", "matmul", [A, B])
        _same("matmul_nonzero_init", "affine", [A, B, _t((sa[0], sb[1]), torch.float64)])
        _same("matmul_matvec_scalar_accumulate", "matvec", [A, B[:, 0] if sb[1] else _t((sb[0],), dtype)])
        _same("matmul_transposed_operand_into_argument", "gram", [A, _t((sa[1], sa[1]), torch.float32)])
        _same("matmul_batched_accumulate", "bmm", [A[None].expand(2, *sa), B[None].expand(2, *sb)])
        _same("matmul_batched_rows", "batched", [A[None].repeat(3, 1, 1), B[None].repeat(3, 1, 1)])
    # float32 operands summed in a float64 output keep float64's precision
    _same("matmul_matvec_scalar_accumulate", "matvec", [_t((3, 4), torch.float32), _t((4,), torch.float64)])


@pytest.mark.parametrize("dtype", DTYPES + (torch.float16, torch.bool, torch.uint8), ids=str)
def test_battery_diagonals(dtype):
    torch.manual_seed(0)
    for shape in itertools.product((0, 1, 3), (0, 1, 3)):
        A = _t(shape, dtype)
        _same("matmul_trace", "trace", [A])
        _same("matmul_trace", "trace_float", [A])
        _same("matmul_diagonal", "diagonal", [A])
    _same("matmul_trace", "trace", [_t((3, 3, 2), dtype)])  # a diagonal of rows
