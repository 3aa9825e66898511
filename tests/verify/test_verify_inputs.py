"""Generated inputs: tensors of the asked dtype and shape, laid out several ways, and
argument sets that share sizes the way the plan says."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loopvec.verify.inputs import OMIT, arguments, build_tensor, tensors
from loopvec.verify.plan import DefaultArg, Dim, Plan, ScalarArg, TensorArg


@settings(max_examples=40, database=None, deadline=None)
@given(st.sampled_from(["float32", "float64", "int64", "uint8", "bool"]).flatmap(
    lambda name: tensors(getattr(torch, name), (3, 2))))
def test_tensors_have_the_asked_shape_and_dtype(t):
    assert t.shape == (3, 2) and t.dtype in (torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool)


def test_every_layout_holds_the_same_values():
    values = list(range(6))
    expected = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    for layout in ("contiguous", "transposed", "strided", "offset"):
        t = build_tensor(values, torch.float32, (2, 3), layout)
        assert torch.equal(t, expected), layout
    assert not build_tensor(values, torch.float32, (2, 3), "transposed").is_contiguous()
    assert not build_tensor(values, torch.float32, (2, 3), "strided").is_contiguous()
    assert build_tensor(values, torch.float32, (2, 3), "offset").storage_offset() == 1


def test_float_values_are_mostly_exact_quarters():
    seen = []

    @settings(max_examples=30, database=None, deadline=None)
    @given(tensors(torch.float32, (4,)))
    def collect(t):
        seen.extend(t.tolist())

    collect()
    finite = [v for v in seen if v == v and abs(v) != float("inf")]
    assert finite and all((v * 4).is_integer() and abs(v) <= 16 for v in finite)


PLAN = Plan(
    args=(
        ("x", TensorArg(("n", "m"))),
        ("idx", TensorArg(("k",), ("int64",), index_of="n")),
        ("count", ScalarArg("int", upto="m")),
        ("eps", DefaultArg()),
    ),
    dims=(Dim("n", 1, 5), Dim("m", 0, 5), Dim("k", 0, 4)),
)


@settings(max_examples=60, database=None, deadline=None)
@given(arguments(PLAN))
def test_arguments_follow_the_plan(args):
    x, idx = args["x"], args["idx"]
    assert x.dim() == 2 and x.shape[0] >= 1
    assert idx.dtype == torch.int64 and bool(((idx >= 0) & (idx < x.shape[0])).all())
    assert 0 <= args["count"] <= x.shape[1]
    assert args["eps"] is OMIT


def test_sizes_include_empty_and_one():
    sizes = set()

    @settings(max_examples=60, database=None, deadline=None, derandomize=True)
    @given(arguments(PLAN))
    def collect(args):
        sizes.add(args["x"].shape[1])

    collect()
    assert {0, 1} <= sizes
