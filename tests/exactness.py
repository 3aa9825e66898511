"""Exactness off the verifier's path, shared by the single-loop pattern tests: a fixture
function and its expected rewrite, run on hand-picked inputs, return and mutate the same
(type, dtype, shape, values; NaN where NaN), or both raise."""

import importlib.util
import math

import torch


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pair(pairs, case_name):
    case = next(c for c in pairs if c == case_name)
    return _module(case.path, f"_orig_{case}"), _module(case.expected, f"_new_{case}")


def run(fn, args):
    args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    try:
        return "ok", fn(*args), args
    except Exception as exc:  # the rewrite must fail wherever the loop fails
        return "raised", type(exc).__name__, args


def same(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, (a, b)
        assert torch.allclose(a, b, equal_nan=True) if a.is_floating_point() else torch.equal(a, b), (a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def agree(pairs, case_name, function, *args):
    """The fixture and its expected rewrite return and mutate the same, or both raise."""
    orig, new = pair(pairs, case_name)
    a, b = run(getattr(orig, function), args), run(getattr(new, function), args)
    assert a[0] == b[0], f"loop {a[0]} ({a[1] if a[0] == 'raised' else ''}) but rewrite {b[0]} ({b[1]})"
    if a[0] == "ok":
        same(a[1], b[1])
        same(a[2], b[2])
    return a[0]
