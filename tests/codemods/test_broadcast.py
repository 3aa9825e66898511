"""broadcast: every fixture pair is rewritten exactly, idempotent and verified; noops stay.

The verifier draws float32/float64 inputs of one dtype and shapes unified from the loop
bounds; a battery below also runs every rewritten fixture function on integer and bool
inputs, empty dimensions, mixed dtypes, and nan/inf (every term must be computed as
the loop computes it, so 0 * inf stays nan).
"""

import importlib.util

import pytest
import torch

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
