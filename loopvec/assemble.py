"""How a lifted per-element value takes the place of a loop's output.

Two shapes of map loop end in a tensor:
  * collected: `out.append(v)` then `torch.stack/tensor/cat(out)` (or a comprehension
    fed to one of them) — `collect` gives the expression that replaces the call;
  * stored: `out[i] = v` into a preallocated tensor or an output argument — `store`
    gives the statement that replaces the loop and says whether the allocation goes.
Both keep what the loop produced exactly: dtype (`torch.tensor` of an empty list is the
default float dtype; of Python floats too), copies (a stacked `x[i]` is not a view of
`x`), and the allocation's dtype (`out[i] = v` casts `v` into `out`).
Patterns that end in these shapes (elementwise, where, batched ops, vmap) share this.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from . import exprs
from .analysis.loops import Access, Finish, Init, Loop, names_in
from .analysis.module import code
from .lift import Lifted, LiftError, LiftScope


@dataclass(frozen=True)
class Stored:
    statement: str  # replaces the loop
    drop_init: bool  # the allocation before the loop is no longer needed


def _kwargs(call: cst.Call) -> dict[str, cst.BaseExpression]:
    return {a.keyword.value: a.value for a in call.args[1:] if a.keyword is not None}


def _extra_positional(call: cst.Call) -> bool:
    return any(a.keyword is None for a in call.args[1:])


def _copied(value: Lifted) -> cst.BaseExpression:
    return value.node if value.fresh else exprs.method(value.node, "clone")


def _copy(value: Lifted) -> str:
    return exprs.render(_copied(value))


def _nonempty(scope: LiftScope) -> str:
    extent = scope.domain.extent
    if extent.startswith("len(") or ".shape[" in extent or ".size(" in extent:
        return extent
    return f"{extent} > 0"


def collect(finish: Finish, value: Lifted, scope: LiftScope) -> str:
    """The expression equal to `torch.<kind>([v for each element])`."""
    call = finish.call
    kwargs = _kwargs(call)
    if _extra_positional(call):
        raise LiftError(f"`{code(call.func)}` with extra positional arguments")
    if not value.batched:
        raise LiftError("the collected value does not depend on the loop element")
    t = scope.torch
    if finish.kind == "stack":
        if set(kwargs) - {"dim"}:
            raise LiftError("torch.stack with keywords other than dim")
        if "dim" in kwargs and code(kwargs["dim"]) != "0":
            raise LiftError("torch.stack along a dimension other than 0")
        if value.kind != "tensor":
            raise LiftError("torch.stack of Python numbers")
        return _copy(value)
    if finish.kind == "cat":
        if set(kwargs) - {"dim"} or ("dim" in kwargs and code(kwargs["dim"]) != "0"):
            raise LiftError("torch.cat along a dimension other than 0")
        if value.kind != "tensor":
            raise LiftError("torch.cat of Python numbers")
        flat = exprs.method(value.node, "flatten", "0", "1")
        return exprs.render(flat if value.fresh else exprs.method(flat, "clone"))
    # torch.tensor(list)
    if set(kwargs) - {"dtype"}:
        raise LiftError("torch.tensor with keywords other than dtype")
    if "dtype" in kwargs:
        dtype = code(kwargs["dtype"])
        # `.to` returns the input itself when the dtype already matches
        copy = {} if value.fresh else {"copy": "True"}
        return exprs.render(exprs.method(value.node, "to", dtype, **copy))
    empty = f"{t}.tensor([])"
    if value.kind == "float":
        # Python floats become the default dtype (an empty list too)
        return exprs.render(exprs.method(value.node, "to", exprs.call(f"{t}.get_default_dtype")))
    # 0-d tensors keep their dtype, Python ints are int64, bools bool; an empty list is float
    return exprs.render(exprs.ifexp(_copied(value), _nonempty(scope), empty))


def _dtype_of_init(init: Init, scope: LiftScope) -> str | None:
    """The dtype of the preallocated output, as code."""
    value = init.value
    assert isinstance(value, cst.Call)
    kwargs = {a.keyword.value: a.value for a in value.args if a.keyword is not None}
    if set(kwargs) - {"dtype", "device"}:
        return None
    if "dtype" in kwargs:
        return code(kwargs["dtype"])
    if init.kind in ("like", "clone") and init.ref:
        return f"{init.ref}.dtype"
    if init.kind == "alloc" and init.call and init.call.startswith("new:"):
        return f"{init.ref}.dtype"
    if init.kind == "alloc" and init.call and init.call.endswith("full"):
        # torch.full(size, 0) is int64 and torch.full(size, True) bool: only a float fill is the default
        fills = [a.value for a in value.args if a.keyword is None][1:2]
        if not (fills and isinstance(fills[0], cst.Float)):
            return None
    if init.kind == "alloc":
        return f"{scope.torch}.get_default_dtype()"
    return None


def _covers(init: Init, scope: LiftScope) -> bool:
    """The allocation has exactly as many rows as the loop has iterations."""
    dom = scope.domain
    value = init.value
    if not isinstance(value, cst.Call):
        return False
    if init.kind in ("like", "clone"):
        return init.ref in dom.arrays
    if init.kind == "alloc":
        sizes = [a.value for a in value.args if a.keyword is None]
        if init.call and init.call.endswith("full"):
            sizes = sizes[:1]
        if not sizes:
            return False
        first = sizes[0]
        if isinstance(first, (cst.Tuple, cst.List)) and first.elements:
            first = first.elements[0].value
        first_code = code(first)
        measures = {dom.extent} | {f"len({a})" for a in dom.arrays} | {
            f"{a}.shape[0]" for a in dom.arrays} | {f"{a}.size(0)" for a in dom.arrays}
        return first_code in measures
    return False


def _same_shape(init: Init, scope: LiftScope, loop: Loop) -> bool:
    """The stored value has the allocation's full shape, so dropping the allocation is exact.

    `out = zeros_like(x); out[i] = 5 * y[i]` with 2-D `x` and 1-D `y` fills each row with
    one number: the whole-array value `5 * y` is 1-D. An allocation shaped like `x` is only
    safe to drop when `x`'s own rows enter the value (elementwise, so they fix its shape); a
    1-D allocation only holds 0-d values, whatever the loop reads.
    """
    dom = scope.domain
    if init.kind == "alloc":
        sizes = [a.value for a in init.value.args if a.keyword is None]
        return len(sizes) == 1 and not isinstance(sizes[0], (cst.Tuple, cst.List))
    ref = init.ref
    if any(r.array == ref and r.index == (dom.index,) for r in loop.reads):
        return True
    used = set()
    for stmt in loop.body:
        used |= names_in(stmt)
    return any(arr == ref and name in used for name, arr in dom.elements)


def store(init: Init | None, write: Access, value: Lifted, scope: LiftScope, loop: Loop,
          shape_proven: bool = False) -> Stored:
    """The statement that replaces `for ...: out[i] = v`.

    `shape_proven`: the caller has shown each value has the shape of a row of `out`.
    """
    out = write.array
    if not value.batched:
        raise LiftError("the stored value does not depend on the loop element")
    if value.kind in ("float", "int", "bool"):
        value = Lifted(value.node, True, "tensor", value.fresh)
    reads_output = any(r.array == out for r in loop.reads)
    replaceable = (
        init is not None
        and init.kind in ("like", "alloc", "clone")
        and not init.interleaved
        and not reads_output
        and _covers(init, scope)
        and (shape_proven or _same_shape(init, scope, loop))
    )
    if replaceable:
        dtype = _dtype_of_init(init, scope)
        if dtype is not None:
            kwargs = {a.keyword.value: a.value for a in init.value.args if a.keyword is not None}
            options = {"device": kwargs["device"]} if "device" in kwargs else {}
            if not value.fresh:
                options["copy"] = "True"
            # out[i] = v casts v into out's dtype: the whole-array value is cast the same way
            target = exprs.method(value.node, "to", dtype, **options)
            return Stored(f"{out} = {exprs.render(target)}", drop_init=True)
    if init is None:
        raise LiftError(f"`{out}` is not allocated before the loop")
    # keep the allocation and fill it in one slice assignment: exact for any allocation
    dom = scope.domain
    sl = ":" if out in dom.arrays else f":{dom.extent}"
    return Stored(f"{out}[{sl}] = {value.code}", drop_init=False)
