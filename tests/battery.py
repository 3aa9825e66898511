"""A battery shared by the nested-loop pattern tests: run a fixture function and its
rewrite on inputs the verifier does not draw (integer and bool dtypes, empty dimensions,
mixed dtypes, nan/inf) and require the same Python type, dtype, shape, values and
argument mutation."""

import importlib.util

import torch

DTYPES = (torch.float32, torch.float64, torch.int64, torch.int32)
TOL = {torch.float16: 1e-2, torch.float32: 1e-5, torch.float64: 1e-10}


def load(path):
    spec = importlib.util.spec_from_file_location(f"battery_{path.name.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def equal(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
        if a.dtype in TOL:
            assert torch.allclose(a, b, rtol=TOL[a.dtype], atol=TOL[a.dtype], equal_nan=True), (a, b)
        else:
            assert torch.equal(a, b), (a, b)
    else:
        assert a == b, (a, b)


def agree(pairs, case: str, fn: str, args: list) -> None:
    """The fixture function and its rewrite agree on `args` (or the original raises)."""
    pair = next(c for c in pairs if c == case)
    before, after = getattr(load(pair.path), fn), getattr(load(pair.expected), fn)
    copy = lambda xs: [x.clone() if isinstance(x, torch.Tensor) else x for x in xs]  # noqa: E731
    a1, a2 = copy(args), copy(args)
    try:
        r1 = before(*a1)
    except (RuntimeError, IndexError, ValueError, TypeError):
        return
    r2 = after(*a2)
    equal(r1, r2)
    for x, y in zip(a1, a2):
        equal(x, y)


def tensor(shape, dtype):
    if dtype == torch.bool:
        return torch.randint(0, 2, shape).bool()
    if dtype.is_floating_point:
        return (torch.randint(-8, 9, shape) / 4).to(dtype)
    return torch.randint(-5, 6, shape).to(dtype)
