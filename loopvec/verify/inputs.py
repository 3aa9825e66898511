"""Hypothesis strategies for the verifier's inputs: single tensors and whole argument sets.

Float values are mostly multiples of 1/4 in [-16, 16]: sums and products of a few of
them are exact in float32 whatever the order, so a correct `A @ B` agrees with its
triple loop bit for bit and a reported difference is a real one. Some examples also
carry nan/inf. Tensors come contiguous, transposed, strided (every other row of a
larger buffer) or at a storage offset; the unused storage holds a poison value, so code
that reads storage directly (`as_strided`, `.storage()`) shows itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .plan import Arg, DefaultArg, EitherArg, ListArg, Plan, ScalarArg, TensorArg, TupleArg

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
    dtype: torch.dtype, shape: tuple[int, ...], nonfinite: bool, index_bound: int | None, strided: bool
) -> SearchStrategy[torch.Tensor]:
    """`tensors` for the generator: values, or positions below `index_bound`."""
    if index_bound is not None:
        elements = _integers(0, index_bound - 1)
    else:
        elements = element_values(dtype, nonfinite)
    return _build_tensors(dtype, shape, elements, _layouts(shape, strided))


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


def arguments(plan: Plan, strided: bool = False) -> SearchStrategy[dict[str, Any]]:
    """Whole argument sets for `plan`: sizes first, then every argument (OMIT: default).

    With `strided`, every tensor is non-contiguous or offset, and sizes are at least 2
    where the plan allows, so the layout shows (a [1, n] tensor is contiguous however
    it was made). Hypothesis draws in clumps, so callers that need layouts covered ask
    for a strided run rather than hope for enough strided tensors in a mixed one.
    """

    @st.composite
    def draw_arguments(draw) -> dict[str, Any]:
        sizes = _sizes(draw, plan, strided)
        dtype = DTYPES[draw(_sampled(plan.value_dtypes))]
        # A flag drawn as "is it the top value" shrinks towards off.
        nonfinite = dtype.is_floating_point and draw(_integers(0, 4)) == 4
        ctx = _Context(tuple(sorted(sizes.items())), dtype, nonfinite, strided)
        return {name: draw(_argument(arg, ctx)) for name, arg in plan.args}

    return draw_arguments()


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
    return sizes


@dataclass(frozen=True)
class _Context:
    """What one example fixed before drawing its arguments."""

    size_items: tuple[tuple[str, int], ...]
    dtype: torch.dtype
    nonfinite: bool
    strided: bool

    @property
    def sizes(self) -> dict[str, int]:
        return dict(self.size_items)


@lru_cache(maxsize=4096)
def _argument(arg: Arg, ctx: _Context) -> SearchStrategy[Any]:
    if isinstance(arg, DefaultArg):
        return st.just(OMIT)
    if isinstance(arg, EitherArg):
        return st.one_of(*(_argument(a, ctx) for a in arg.options))
    if isinstance(arg, TensorArg):
        shape = tuple(ctx.sizes[d] for d in arg.dims)
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
        return _tensors(dtype, shape, False, max(ctx.sizes[arg.index_of], 1), ctx.strided)
    return _tensors(dtype, shape, ctx.nonfinite and dtype.is_floating_point, None, ctx.strided)


def _scalar(arg: ScalarArg, ctx: _Context) -> SearchStrategy[Any]:
    if arg.kind == "bool":
        return st.booleans()
    if arg.kind == "float":
        return dyadic()
    if arg.upto is not None:
        return _integers(0, ctx.sizes[arg.upto])
    if arg.below is not None:
        return _integers(0, max(ctx.sizes[arg.below] - 1, 0))
    return _integers(0, 8) if arg.count else _integers(-8, 8)


def to_device(obj: Any, device: str) -> Any:
    """`obj` with every tensor on `device`, strides and storage offset kept."""
    if device == "cpu":
        return obj
    if isinstance(obj, torch.Tensor):
        numel = obj.untyped_storage().nbytes() // obj.element_size()
        storage = obj.new_empty(0).set_(obj.untyped_storage(), 0, (numel,), (1,))
        return storage.to(device).as_strided(obj.size(), obj.stride(), obj.storage_offset())
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj
