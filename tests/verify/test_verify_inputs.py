"""Generated inputs: tensors of the asked dtype and shape, laid out several ways, and
argument sets that share sizes the way the plan says."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loopvec.analysis.usage import usage_facts
from loopvec.verify.inputs import OMIT, arguments, build_tensor, can_mix, tensors
from loopvec.verify.plan import DefaultArg, Dim, ModuleArg, Plan, ScalarArg, TensorArg, build_plan
from loopvec.verify.source import find_definition
from loopvec.verify.specs import parse_spec
from loopvec.verify.standin import StandInModel


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
    n = x.shape[0]
    assert idx.dtype == torch.int64 and bool(((idx >= -n) & (idx < n)).all())  # Python's valid indices
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


def examples(strategy, n=80):
    """`n` generated examples, the same on every run."""
    seen = []

    @settings(max_examples=n, database=None, deadline=None, derandomize=True)
    @given(strategy)
    def collect(args):
        seen.append(args)

    collect()
    return seen


def plan_of(cases, module, qualname, hints=None):
    d = find_definition((cases / module).read_text(), qualname)
    specs = {k: parse_spec(v) for k, v in (hints or {}).items()}
    return build_plan(d.params(), usage_facts(d.node, d.skips_first), specs)


def test_index_tensors_also_hold_negative_and_repeated_positions():
    idxs = [(a["idx"], a["x"].shape[0]) for a in examples(arguments(PLAN), 120)]
    assert any(bool((idx < 0).any()) for idx, _ in idxs)
    # The last position spelled both ways in one tensor: a repeat a scatter must add up.
    assert any(bool((idx == -1).any() and (idx == n - 1).any()) for idx, n in idxs if n > 1)
    assert any(len(set(idx.tolist())) < len(idx) for idx, _ in idxs)


def test_a_mixed_run_gives_two_value_arguments_different_dtypes():
    plan = Plan(args=(("x", TensorArg(("n",))), ("y", TensorArg(("n",)))), dims=(Dim("n", 0, 4),))
    assert can_mix(plan)
    pairs = {(a["x"].dtype, a["y"].dtype) for a in examples(arguments(plan, mixed=True), 40)}
    assert all(dx != dy for dx, dy in pairs)
    assert (torch.float32, torch.float64) in pairs and (torch.float64, torch.float32) in pairs


def test_a_mixed_run_pairs_ints_with_floats_only_where_the_code_does_integer_work():
    floats = Plan(args=(("x", TensorArg(("n",))), ("y", TensorArg(("n",)))), dims=(Dim("n", 0, 4),))
    ints = Plan(args=floats.args, dims=floats.dims, value_dtypes=("float32", "float64", "int64", "int32", "uint8"))
    seen = {t.dtype for a in examples(arguments(floats, mixed=True), 30) for t in a.values()}
    assert seen == {torch.float32, torch.float64}
    seen = {t.dtype for a in examples(arguments(ints, mixed=True), 60) for t in a.values()}
    assert torch.int64 in seen and not seen & {torch.int32, torch.uint8}


def test_one_value_argument_has_no_mixed_run():
    assert not can_mix(Plan(args=(("x", TensorArg(("n",))), ("k", ScalarArg("int"))), dims=(Dim("n", 0, 4),)))


def test_a_variadic_batch_takes_zero_to_two_dims_shared_by_every_tensor_naming_it():
    plan = build_plan(
        find_definition('def f(x: Float[Tensor, "*batch c"], m: Float[Tensor, "*batch"]): pass', "f").params(),
        usage_facts("def f(x, m): pass"),
        {},
    )
    seen = examples(arguments(plan), 60)
    assert {a["x"].dim() for a in seen} == {1, 2, 3}
    assert all(a["x"].shape[:-1] == a["m"].shape for a in seen)


def test_an_int_that_sizes_a_local_allocation_bounds_the_index_values(cases):
    plan = plan_of(cases, "maps.py", "histogram")
    args = dict(plan.args)
    assert args["C"].size is not None and args["labels"].index_of == args["C"].size
    for a in examples(arguments(plan), 60):
        assert bool(((a["labels"] >= -a["C"]) & (a["labels"] < a["C"])).all())


def test_a_called_parameter_gets_a_stand_in_model(cases):
    plan = plan_of(cases, "maps.py", "apply_rows")
    assert dict(plan.args)["model"] == ModuleArg() and plan.stand_ins == ("model",)
    assert plan.hint() == "# loopvec: shapes model=callable x=[n,m]"  # a row keeps its feature axis
    assert all(isinstance(a["model"], StandInModel) for a in examples(arguments(plan), 5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_stand_in_model_treats_rows_independently_and_exactly(dtype):
    model = StandInModel()
    x = torch.arange(-12, 12, dtype=dtype).reshape(2, 3, 4) / 4
    whole = model(x)
    assert whole.shape == (2, 3, 5) and whole.dtype == dtype
    rows = torch.stack([torch.stack([model(x[i, j]) for j in range(3)]) for i in range(2)])
    assert torch.equal(whole, rows)
    bias = model(torch.zeros(4, dtype=dtype))
    assert not torch.equal(model(x) + model(-x), 2 * bias.expand_as(whole))  # not linear
    with pytest.raises(TypeError):
        model(torch.ones(3, dtype=torch.int64))
