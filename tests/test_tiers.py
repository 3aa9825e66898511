"""A rewrite that assumes arrays walked together have one length is `safe` only when the
function proves it; otherwise `unsafe` (applied with --unsafe, the report names it)."""

import pytest

from loopvec.engine import plan_source
from loopvec.rewrite import SAFE, UNSAFE

ZIP = '''import torch


def differences(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:{hint}
    return torch.stack([a - b for a, b in zip(x, y)])
'''

RANGE = '''import torch


def product(x, y):
    out = {alloc}
    for i in range(len(x)):
        out[i] = x[i] * y[i]
    return out
'''


def _only(source: str):
    (planned,) = plan_source("m.py", source).planned
    return planned


def test_walking_two_arrays_without_a_proof_of_one_length_is_unsafe():
    planned = _only(ZIP.format(hint=""))
    assert "len(y) == len(x)" in planned.assumptions and planned.safety == UNSAFE


@pytest.mark.parametrize("hint", ["  # loopvec: shapes x=[n] y=[n]", "  # loopvec: shapes x=[n,3] y=[n,3]"])
def test_declared_shapes_with_one_first_dimension_prove_it(hint):
    planned = _only(ZIP.format(hint=hint))
    assert planned.safety == SAFE and not any(a.startswith("len(") for a in planned.assumptions)


def test_different_declared_first_dimensions_prove_nothing():
    assert _only(ZIP.format(hint="  # loopvec: shapes x=[n] y=[m]")).safety == UNSAFE


@pytest.mark.parametrize("alloc", ["torch.zeros_like(x)", "torch.zeros(len(y))"])
def test_an_output_sized_from_one_input_does_not_prove_the_other(alloc):
    planned = _only(RANGE.format(alloc=alloc))
    assert "len(y) == len(x)" in planned.assumptions and planned.safety == UNSAFE


def test_an_array_allocated_from_the_others_length_proves_it():
    source = '''import torch


def scaled(x):
    w = torch.ones(len(x))
    out = torch.zeros_like(x)
    for i in range(len(x)):
        out[i] = x[i] * w[i]
    return out
'''
    planned = _only(source)
    assert planned.safety == SAFE and "len(w) == len(x)" not in planned.assumptions
    # the same loop with `w` a parameter: nothing ties its length to x's
    unproved = _only(source.replace("    w = torch.ones(len(x))\n", "").replace("def scaled(x):", "def scaled(x, w):"))
    assert unproved.safety == UNSAFE


def test_a_proof_undone_by_rebinding_before_the_loop_does_not_count():
    source = '''import torch


def scaled(x):
    w = torch.ones(len(x))
    x = x[1:]
    out = torch.zeros_like(x)
    for i in range(len(x)):
        out[i] = x[i] * w[i]
    return out
'''
    assert _only(source).safety == UNSAFE
