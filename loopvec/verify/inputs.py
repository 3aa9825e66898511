"""Hypothesis strategies for the verifier's inputs: single tensors and whole argument sets.

Float values are mostly multiples of 1/4 in [-16, 16]: sums and products of a few of
them are exact in float32 whatever the order, so a correct `A @ B` agrees with its
triple loop bit for bit and a reported difference is a real one. Some examples also
carry nan/inf. Tensors come contiguous, transposed, strided (every other row of a
larger buffer) or at a storage offset; the unused storage holds a poison value, so code
that reads storage directly (`as_strided`, `.storage()`) shows itself.

Tensors that hold positions (`data[idx[i]]`) mostly hold `[0, size)`; some examples use
the whole range Python indexing accepts, `[-size, size)`, and some only the last
position spelled both ways (`size - 1` and `-1`), so repeats are certain.

A mixed-dtype run gives each argument of the shared value dtype its own dtype (float32
against float64, and int64 against both where the code does integer work), so a rewrite
that promotes where the loop casts into one argument's dtype shows itself. A parameter
the function calls gets a stand-in model (`standin.StandInModel`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .plan import (
    Arg,
    DefaultArg,
    EitherArg,
    ListArg,
    ModuleArg,
    Plan,
    ScalarArg,
    TensorArg,
    TupleArg,
    tensor_args,
)
from .standin import StandInModel

DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, name)
    for name in (
        "float32 float64 float16 bfloat16 complex64 complex128 "
        "int64 int32 int16 int8 uint8 bool".split()
    )
}
# Weights by repetition: contiguous the most common layout, but not the majority.
LAYOUTS = ("contiguous", "contiguous", "transposed", "strided", "offset")
_INT_RANGES = {
    torch.uint8: (0, 255),
    torch.int8: (-128, 127),
    torch.int16: (-1000, 1000),
    torch.int32: (-100, 100),
    torch.int64: (-100, 100),
}
_SPECIALS = (math.nan, math.inf, -math.inf)
# How one example's index tensors hold positions; weights by repetition, plain first
# (the simplest example, and the one shrinking returns to).
INDEX_MODES = ("positions", "positions", "positions", "negative", "repeated")
_SIGNED = (torch.int64, torch.int32, torch.int16, torch.int8)
# Dtypes a mixed run pairs up: floats always, int64 where the code does integer work.
_MIXED_FLOATS = ("float32", "float64")
_MIXED_INTS = ("int64",)
_SPECIAL_SLOTS = 24  # with nonfinite on, about one element in six is nan or +-inf
OMIT = object()  # an argument left to the function's default


# Strategies are cached: hypothesis inspects every new strategy object, and building
# them afresh for each example cost more than running the example.


@lru_cache(maxsize=None)
def dyadic(nonfinite: bool = False) -> SearchStrategy[float]:
    """k/4 for k in [-64, 64]; with `nonfinite`, now and then nan, inf or -inf."""
    top = 64 + (_SPECIAL_SLOTS if nonfinite else 0)
    return st.integers(-64, top).map(lambda k: k / 4 if k <= 64 else _SPECIALS[k % len(_SPECIALS)])


@lru_cache(maxsize=None)
def element_values(dtype: torch.dtype, nonfinite: bool = False) -> SearchStrategy[Any]:
    """Python values a tensor of `dtype` can hold, shrinking towards 0."""
    if dtype == torch.bool:
        return st.booleans()
    if dtype in _INT_RANGES:
        return st.integers(*_INT_RANGES[dtype])
    if dtype.is_complex:
        return st.builds(complex, dyadic(nonfinite), dyadic(False))
    return dyadic(nonfinite)


def _poison(dtype: torch.dtype) -> Any:
    if dtype == torch.bool:
        return True
    if dtype in _INT_RANGES:
        return _INT_RANGES[dtype][1] - 1
    return -77.25


def _layouts(shape: tuple[int, ...], strided: bool = False) -> tuple[str, ...]:
    """Layouts that make sense for `shape`; with `strided`, none of them contiguous."""
    layouts = LAYOUTS if len(shape) >= 2 else tuple(x for x in LAYOUTS if x != "transposed")
    if not shape:
        layouts = ("contiguous", "offset")
    if strided:
        layouts = tuple(x for x in layouts if x != "contiguous")
    return layouts


def build_tensor(values: list, dtype: torch.dtype, shape: tuple[int, ...], layout: str) -> torch.Tensor:
    """A tensor of `shape` holding `values` (row-major), in memory laid out as `layout`."""
    make = torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype
    flat = torch.tensor(values, dtype=make).to(dtype) if values else torch.empty(0, dtype=dtype)
    numel = flat.numel()
    if layout == "transposed" and len(shape) >= 2:
        return flat.reshape(shape).transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "strided" and shape:
        big = torch.full((2 * shape[0], *shape[1:]), _poison(dtype), dtype=dtype)
        big[::2] = flat.reshape(shape)
        return big[::2]
    if layout == "offset":
        big = torch.full((numel + 1,), _poison(dtype), dtype=dtype)
        big[1:] = flat
        return big[1:].view(shape)
    return flat.reshape(shape)


def tensors(
    dtype: torch.dtype,
    shape: tuple[int, ...],
    *,
    elements: SearchStrategy[Any] | None = None,
    layouts: tuple[str, ...] | None = None,
    nonfinite: bool = False,
) -> SearchStrategy[torch.Tensor]:
    """Tensors of one dtype and shape, like `hypothesis.extra.numpy.arrays`.

    Every element is drawn (no fill value), so positions are distinguishable and a
    transposed or shifted result cannot pass by accident.
    """
    shape = tuple(shape)
    if elements is None and layouts is None:
        return _tensors(dtype, shape, nonfinite, None, False)
    return _build_tensors(dtype, shape, elements or element_values(dtype, nonfinite), layouts or _layouts(shape))


@lru_cache(maxsize=4096)
def _tensors(
    dtype: torch.dtype,
    shape: tuple[int, ...],
    nonfinite: bool,
    index_bound: int | None,
    strided: bool,
    index_mode: str = "positions",
) -> SearchStrategy[torch.Tensor]:
    """`tensors` for the generator: values, or positions below `index_bound`."""
    if index_bound is not None:
        elements = index_values(index_bound, index_mode if dtype in _SIGNED else "positions")
    else:
        elements = element_values(dtype, nonfinite)
    return _build_tensors(dtype, shape, elements, _layouts(shape, strided))


@lru_cache(maxsize=None)
def index_values(size: int, mode: str = "positions") -> SearchStrategy[int]:
    """Valid indices into a dim of `size` (at least 1), drawn as `mode` says."""
    if mode == "negative":
        return st.integers(-size, size - 1)
    if mode == "repeated":
        return st.sampled_from((size - 1, -1))
    return st.integers(0, size - 1)


@lru_cache(maxsize=None)
def _integers(low: int, high: int) -> SearchStrategy[int]:
    return st.integers(low, high)


@lru_cache(maxsize=None)
def _sampled(options: tuple) -> SearchStrategy[Any]:
    return st.sampled_from(options)


def _build_tensors(dtype, shape, elements, layouts) -> SearchStrategy[torch.Tensor]:
    numel = math.prod(shape)
    return st.builds(
        build_tensor,
        st.lists(elements, min_size=numel, max_size=numel),
        st.just(dtype),
        st.just(shape),
        _sampled(tuple(layouts)),
    )


def mixed_pairs(value_dtypes: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The (first, second) dtype pairs a mixed run draws from, float32/float64 first."""
    names = [*_MIXED_FLOATS, *(d for d in _MIXED_INTS if d in value_dtypes)]
    return tuple((a, b) for a in names for b in names if a != b and not (a in _MIXED_INTS and b in _MIXED_INTS))


def can_mix(plan: Plan) -> bool:
    """Whether a mixed-dtype run means anything: two arguments take the value dtype."""
    return len(plan.shared_dtype_args) >= 2


def arguments(plan: Plan, strided: bool = False, mixed: bool = False) -> SearchStrategy[dict[str, Any]]:
    """Whole argument sets for `plan`: sizes first, then every argument (OMIT: default).

    With `strided`, every tensor is non-contiguous or offset, and sizes are at least 2
    where the plan allows, so the layout shows (a [1, n] tensor is contiguous however
    it was made). Hypothesis draws in clumps, so callers that need layouts covered ask
    for a strided run rather than hope for enough strided tensors in a mixed one.

    With `mixed`, the arguments in `plan.shared_dtype_args` do not share one dtype:
    each takes one of a pair of dtypes, and at least one takes each (the simplest such
    example gives the last argument the second dtype: `out = zeros_like(x)` with a
    float64 `y`).
    """
    mixing = plan.shared_dtype_args if mixed else ()
    pairs = mixed_pairs(plan.value_dtypes) if mixing else ()
    indexed = _has_index_tensors(plan)

    @st.composite
    def draw_arguments(draw) -> dict[str, Any]:
        sizes = _sizes(draw, plan, strided)
        own: dict[str, torch.dtype] = {}
        if mixing:
            first, second = (DTYPES[name] for name in draw(_sampled(pairs)))
            picks = [draw(st.booleans()) for _ in mixing]
            if all(picks) or not any(picks):
                picks[-1] = not picks[0]
            own = {name: second if pick else first for name, pick in zip(mixing, picks)}
            dtype = first
            floats = first.is_floating_point and second.is_floating_point
            # nan into an integer tensor is undefined, and may differ between a loop's
            # one-element copies and a vectorized cast: only all-float mixes get nan/inf.
            nonfinite = floats and draw(_integers(0, 4)) == 4
        else:
            dtype = DTYPES[draw(_sampled(plan.value_dtypes))]
            # A flag drawn as "is it the top value" shrinks towards off.
            nonfinite = dtype.is_floating_point and draw(_integers(0, 4)) == 4
        index_mode = draw(_sampled(INDEX_MODES)) if indexed else "positions"
        ctx = _Context(tuple(sorted(sizes.items())), dtype, nonfinite, strided, index_mode)
        return {
            name: draw(_argument(arg, replace(ctx, dtype=own[name]) if name in own else ctx))
            for name, arg in plan.args
        }

    return draw_arguments()


def _has_index_tensors(plan: Plan) -> bool:
    return any(t.index_of is not None for _, arg in plan.args for t in tensor_args(arg))


def _sizes(draw, plan: Plan, strided: bool) -> dict[str, int]:
    """One size per dim class. Some examples have one empty dim, the simplest one among
    them (hypothesis tries it first); the rest keep every dim at least 1, so they
    exercise the loop body."""
    can_be_empty = [d.name for d in plan.dims if d.low == 0 < d.high and not strided]
    empty = draw(_sampled(tuple(can_be_empty))) if can_be_empty and draw(_integers(0, 4)) == 0 else None
    sizes = {}
    for d in plan.dims:
        if d.low == d.high:
            sizes[d.name] = d.low  # fixed by a hint
        elif d.name == empty:
            sizes[d.name] = 0
        else:
            low = max(d.low, 2 if strided else 1)
            sizes[d.name] = draw(_integers(min(low, d.high), d.high))
    for v in plan.variadics:
        rank = draw(_integers(0, v.max_rank))
        sizes[v.name] = tuple(draw(_integers(2 if strided else 1, max(v.high, 2))) for _ in range(rank))
    return sizes


@dataclass(frozen=True)
class _Context:
    """What one example fixed before drawing its arguments."""

    size_items: tuple[tuple[str, int | tuple[int, ...]], ...]  # a variadic group: a tuple
    dtype: torch.dtype
    nonfinite: bool
    strided: bool
    index_mode: str = "positions"

    @property
    def sizes(self) -> dict[str, Any]:
        return dict(self.size_items)

    def shape(self, dims: tuple[str, ...]) -> tuple[int, ...]:
        out: list[int] = []
        sizes = self.sizes
        for d in dims:
            size = sizes[d]
            out.extend(size if isinstance(size, tuple) else (size,))
        return tuple(out)


@lru_cache(maxsize=4096)
def _argument(arg: Arg, ctx: _Context) -> SearchStrategy[Any]:
    if isinstance(arg, DefaultArg):
        return st.just(OMIT)
    if isinstance(arg, ModuleArg):
        return st.builds(StandInModel)
    if isinstance(arg, EitherArg):
        return st.one_of(*(_argument(a, ctx) for a in arg.options))
    if isinstance(arg, TensorArg):
        shape = ctx.shape(arg.dims)
        if arg.dtypes is None:
            return _tensors(ctx.dtype, shape, ctx.nonfinite, None, ctx.strided)
        return st.one_of(*(_typed_tensor(arg, name, shape, ctx) for name in arg.dtypes))
    if isinstance(arg, ScalarArg):
        return _scalar(arg, ctx)
    if isinstance(arg, ListArg):
        n = ctx.sizes[arg.length]
        items = st.lists(_argument(arg.item, ctx), min_size=n, max_size=n)
        return items.map(tuple) if arg.tuple_ else items
    assert isinstance(arg, TupleArg)
    return st.tuples(*(_argument(a, ctx) for a in arg.items))


def _typed_tensor(arg: TensorArg, name: str, shape: tuple[int, ...], ctx: _Context) -> SearchStrategy[torch.Tensor]:
    dtype = DTYPES[name]
    if arg.index_of is not None:
        # Positions along the indexed dim; the plan keeps that dim non-empty.
        return _tensors(dtype, shape, False, max(ctx.sizes[arg.index_of], 1), ctx.strided, ctx.index_mode)
    return _tensors(dtype, shape, ctx.nonfinite and dtype.is_floating_point, None, ctx.strided)


def _scalar(arg: ScalarArg, ctx: _Context) -> SearchStrategy[Any]:
    if arg.kind == "bool":
        return st.booleans()
    if arg.kind == "float":
        return dyadic()
    if arg.size is not None:
        return st.just(ctx.sizes[arg.size])
    if arg.upto is not None:
        return _integers(0, ctx.sizes[arg.upto])
    if arg.below is not None:
        return _integers(0, max(ctx.sizes[arg.below] - 1, 0))
    return _integers(0, 8) if arg.count else _integers(-8, 8)


def to_device(obj: Any, device: str) -> Any:
    """`obj` with every tensor on `device`, strides and storage offset kept."""
    if device == "cpu":
        return obj
    if isinstance(obj, torch.nn.Module):
        return copy.deepcopy(obj).to(device)  # Module.to moves in place: keep the CPU one
    if isinstance(obj, torch.Tensor):
        numel = obj.untyped_storage().nbytes() // obj.element_size()
        storage = obj.new_empty(0).set_(obj.untyped_storage(), 0, (numel,), (1,))
        return storage.to(device).as_strided(obj.size(), obj.stride(), obj.storage_offset())
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


# ---------------------------------------------------------------------- other kinds
#
# The kinds of value callers pass where the plan draws a tensor (`verify.kinds`): each
# strategy draws a whole argument set from the plan, then puts that kind in place of one
# argument's tensor, with the other arguments as the plan drew them.


def with_rows(plan: Plan, name: str, low: int = 2) -> Plan:
    """`plan` with at least `low` rows in `name`'s first axis (or list length), where the
    plan allows: a list of one item cannot be ragged, and a loop over it makes one turn."""
    arg = dict(plan.args).get(name)
    first = arg.length if isinstance(arg, ListArg) else arg.dims[0] if isinstance(arg, TensorArg) and arg.dims else None
    dims = tuple(replace(d, low=max(d.low, min(low, d.high))) if d.name == first else d for d in plan.dims)
    return replace(plan, dims=dims)


def numbers_instead(plan: Plan, name: str) -> SearchStrategy[dict[str, Any]]:
    """`name`'s 1-D tensor as a list of Python numbers (ints, floats or bools, as its dtype)."""
    return arguments(plan).map(lambda args: {**args, name: args[name].tolist()})


def ints_instead(plan: Plan, name: str, size: bool = False) -> SearchStrategy[dict[str, Any]]:
    """`name`'s 1-D tensor as a tuple of ints (a `torch.Size` with `size`), as long as the tensor."""

    @st.composite
    def draw(draw) -> dict[str, Any]:
        args = draw(arguments(plan))
        ints = draw(st.lists(_integers(0, 8), min_size=len(args[name]), max_size=len(args[name])))
        return {**args, name: torch.Size(ints) if size else tuple(ints)}

    return draw()


def numpy_instead(plan: Plan, name: str) -> SearchStrategy[dict[str, Any]]:
    """`name`'s tensor as a numpy array of the same values, shape and dtype."""

    def swap(args: dict[str, Any]) -> dict[str, Any]:
        t = args[name]
        # numpy has no bfloat16: the nearest dtype it has holds the same values
        return {**args, name: (t.float() if t.dtype == torch.bfloat16 else t).numpy()}

    return arguments(plan).map(swap)


def tensors_instead(plan: Plan, name: str, ragged: bool = False) -> SearchStrategy[dict[str, Any]]:
    """`name` as a Python list of separate tensors: its tensor's rows, each a tensor of its
    own (or, for a list or tuple parameter, its items, in the same container); with
    `ragged`, rows whose first axis differs in size (1-D rows at least), the way sequences
    of different lengths arrive."""

    @st.composite
    def draw(draw) -> dict[str, Any]:
        args = draw(arguments(plan))
        rows = list(args[name])
        if not ragged:
            return {**args, name: [row.clone() for row in rows]}
        if not rows:
            return args
        like = rows[0] if isinstance(rows[0], torch.Tensor) else torch.as_tensor(rows[0])
        rest = tuple(like.shape[1:])
        sizes = [draw(_integers(1, 4)) for _ in rows]
        if len(sizes) >= 2 and len(set(sizes)) == 1:
            sizes[-1] += 1  # unequal: that is the point of the kind
        items = [draw(_tensors(like.dtype, (n, *rest), False, None, False)) for n in sizes]
        return {**args, name: tuple(items) if isinstance(args[name], tuple) else items}

    return draw()
