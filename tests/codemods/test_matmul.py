"""matmul: every fixture pair is rewritten exactly, idempotent and verified; noops stay.

The verifier draws float32/float64 inputs of one dtype and shapes unified from the loop
bounds. Matrix products go wrong elsewhere -- integer inputs into a float output, a
float64 output over float32 inputs, empty inner dimensions, int32 and bool traces --
so a battery below also runs every rewritten fixture function on those.
"""

import importlib.util
import itertools

import pytest
import torch

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

DTYPES = (torch.float32, torch.float64, torch.int64, torch.int32)
TOL = {torch.float16: 1e-2, torch.float32: 1e-5, torch.float64: 1e-10}


def _load(path):
    spec = importlib.util.spec_from_file_location(f"battery_{path.name.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _equal(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
        if a.dtype in TOL:
            assert torch.allclose(a, b, rtol=TOL[a.dtype], atol=TOL[a.dtype], equal_nan=True), (a, b)
        else:
            assert torch.equal(a, b), (a, b)
    else:
        assert a == b, (a, b)


def _same(case: str, fn: str, args: list) -> None:
    """The fixture function and its rewrite agree on `args` (or the original raises)."""
    pair = next(c for c in PAIRS if c == case)
    before, after = getattr(_load(pair.path), fn), getattr(_load(pair.expected), fn)
    copy = lambda xs: [x.clone() if isinstance(x, torch.Tensor) else x for x in xs]  # noqa: E731
    a1, a2 = copy(args), copy(args)
    try:
        r1 = before(*a1)
    except (RuntimeError, IndexError, ValueError, TypeError):
        return
    r2 = after(*a2)
    _equal(r1, r2)
    for x, y in zip(a1, a2):
        _equal(x, y)


def _t(shape, dtype):
    if dtype == torch.bool:
        return torch.randint(0, 2, shape).bool()
    if dtype.is_floating_point:
        return (torch.randint(-8, 9, shape) / 4).to(dtype)
    return torch.randint(-5, 6, shape).to(dtype)


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
