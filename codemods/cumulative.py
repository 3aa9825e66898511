"""Scans: running sums, products, maxima and minima that carry one value along a dimension."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from loopvec.analysis.bindings import full_dtype_problem, function_bindings, measures, sizes_of
from loopvec.analysis.facts import python_lists
from loopvec.analysis.loops import Init, Loop
from loopvec.analysis.module import code, dotted
from loopvec.guards import body_problem, used_after_problem
from loopvec.dtypes import FLOATING_DTYPES, TORCH_DTYPES
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite
from loopvec.analysis import traverse

# `torch.<name>` spellings of real floating dtypes
_FLOAT_DTYPES = {name for name, dtype in TORCH_DTYPES.items() if dtype in FLOATING_DTYPES and "complex" not in dtype}


class Cumulative:
    """Scan loops with a loop-carried dependency (the catalogue's "Sequential Dependencies").

    What it rewrites:
        `for i in range(1, len(x))` loops whose one statement combines the previous
        element with the current one, in place (`x[i] = x[i] + x[i-1]`, `x[i] += x[i-1]`,
        `x[i] *= x[i-1]`, `x[i] = torch.maximum(x[i-1], x[i])`) or into a separate output
        (`out[i] = out[i-1] + x[i]`, after `out[0] = x[0]` or not); also
        `for i in range(len(x) - 1)` writing `x[i+1]`, and scans along a later dimension
        (`x[:, i] += x[:, i-1]` over `range(1, x.shape[1])`).

    Example:
        for i in range(1, len(x)):
            x[i] = x[i] + x[i - 1]

        out = torch.zeros_like(x)
        out[0] = x[0]
        for i in range(1, len(x)):
            out[i] = torch.maximum(out[i - 1], x[i])

    Use instead:
        x[:] = torch.cumsum(x, 0)      # in place, as the loop was; `x[:] =` casts the
                                       # int64 cumsum of an int32/uint8/bool x back
        out = torch.cummax(x, 0).values
        (a separate output without `out[0] = x[0]` keeps its first row:
        `out[1:] = out[:1] + torch.cumsum(x[1:], 0)`; Python's `max(out[i-1], x[i])` skips
        NaN where cummax propagates it, so NaNs are first replaced by the first element,
        which never changes a running maximum.)

    When it declines:
        recurrences with a coefficient (`y[i] = a * y[i-1] + x[i]`, `x[i] = x[i-1] * 0.5`),
        forward copies (`x[i] = x[i-1]`), `-`/`/` (not associative), Python `max(x[i], x[i-1])`
        (it restarts after a NaN), ranges that are not `1..len` of the scanned dimension
        (`range(2, n)`, a step, a stop that may be negative), an integer output fed float
        values (each step truncates), break/return, side effects, temporaries in the body,
        the loop variable used after the loop.
    """

    NAME = "cumulative"
    DESCRIPTION = "running sums/products/max/min (x[i] += x[i-1], out[i] = out[i-1] + x[i]) -> cumsum/cumprod/cummax/cummin"
    SAFETY = SAFE
    ORDER = 16

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        # torch.stack([... for ...]): a comprehension cannot see its own previous element
        if loop.kind != "for" or not isinstance(loop.node, cst.For):
            return Decline(self.NAME, "not a for loop")
        # for v in values (a list), while, zip(...): not an index walk over a tensor
        if loop.domain is None or loop.domain.kind != "range":
            return Decline(self.NAME, loop.domain_problem or "does not walk a range of indices")
        # break/return stop early (the scan would run to the end); print, random numbers
        problem = body_problem(loop, carried=False)
        if problem:
            return Decline(self.NAME, problem)
        if loop.appends or loop.accumulators:
            return Decline(self.NAME, "appends or accumulates: not an indexed scan")
        # t = x[i-1] * 2; x[i] += t: temporaries are not lifted here
        if len(loop.body) != 1 or not isinstance(loop.body[0], cst.SimpleStatementLine) \
                or len(loop.body[0].body) != 1:
            return Decline(self.NAME, "the body is not a single statement")
        problem = used_after_problem(loop, set())
        if problem:
            return Decline(self.NAME, problem)
        # values: list[float]: `values[:] = torch.cumsum(values, 0)` would not even run
        lists = python_lists(loop, ctx.info)
        if lists:
            return Decline(self.NAME, f"`{lists[0]}` is a Python list, not a tensor")
        try:
            return self._scan(loop, ctx)
        except _NoScan as exc:
            return Decline(self.NAME, str(exc))

    def _scan(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        i = loop.domain.index
        small = loop.body[0].body[0]
        if isinstance(small, cst.Assign) and len(small.targets) == 1:
            target, value = small.targets[0].target, small.value
        elif isinstance(small, cst.AugAssign):
            target, value = small.target, None
        else:
            raise _NoScan("the statement is not an indexed assignment")
        write = _position(target, i)
        if write is None:
            raise _NoScan(f"`{code(target)}` is not written at `i` (or `i + 1`) along one dimension")
        bound = loop.assigned | {i}
        if write.array.split(".")[0] in bound:
            raise _NoScan(f"`{write.array}` is bound in the loop")
        scan = _recognise(small, target, value, write, i, bound, ctx)
        start, stop = _range(loop.node.iter)
        bindings = function_bindings(loop.function)
        # the written positions must be exactly 1 .. L-1 of the scanned dimension
        if write.offset == 0:
            if _int(start) != 1:
                raise _NoScan(f"the range starts at `{code(start)}`, not 1: not a scan from the first element")
            length = stop
        else:
            if _int(start) != 0:
                raise _NoScan(f"the range starts at `{code(start)}`, not 0, for writes at `i + 1`")
            length = _minus_one(stop)
            if length is None:
                raise _NoScan(f"`range({code(stop)})` with writes at `i + 1` does not end at the last element")
        measured = None
        for array in dict.fromkeys([scan.source, write.array]):
            if measures(length, array, write.dim, bindings):
                measured = array
                break
        if measured is None:
            others = [a for a in loop.domain.arrays] if write.dim == 0 else []
            if not others or not measures(length, others[0], 0, bindings):
                raise _NoScan(f"the range stops at `{code(length)}`, not the length of `{write.array}` along "
                              f"dimension {write.dim}: it could be negative or shorter")
        dim = write.dim
        t = ctx.torch

        def part(array: str, lo: str, whole_ok: bool = True) -> str:
            """`array` along `dim` from `lo` to the loop's end, as a subscript."""
            prefix = ":, " * dim
            hi = "" if array == measured else code(length)
            if lo == "" and hi == "" and whole_ok:
                return array
            return f"{array}[{prefix}{lo}:{hi}]"

        if scan.source == write.array:
            whole = part(write.array, "")
            lhs = f"{write.array}[:]" if whole == write.array else whole
            new = f"{lhs} = {_scanned(scan, whole, _first(write.array, dim), dim, t)}"
            return Rewrite(self.NAME, loop, (Edit(loop.node, new),), f"becomes `{new}`", SAFE, (), ctx.imports)

        # a separate output: out[i] = out[i-1] (op) x[i]
        init = loop.setup.get(write.array)
        problem = _dtype_problem(init, scan.source, bindings)
        if problem:
            raise _NoScan(problem)
        dropped = _drop_form(loop, init, write, scan, measured, ctx)
        if dropped is not None:
            return dropped
        rest = part(scan.source, "1")
        seed = _first(write.array, dim)
        # out = torch.zeros(len(x)): out ends where x does, so `out[1:]` says it
        ends = measured is not None and (write.array == measured or _same_length(init, measured, dim, bindings))
        lhs = f"{write.array}[{':, ' * dim}1:{'' if ends else code(length)}]"
        new = f"{lhs} = {_seeded(scan, rest, seed, dim, t)}"
        return Rewrite(self.NAME, loop, (Edit(loop.node, new),), f"becomes `{new}`", SAFE, (), ctx.imports)


class _NoScan(Exception):
    """The loop is not a scan loopvec rewrites; the message says why."""


@dataclass(frozen=True)
class _Position:
    array: str
    dim: int  # the dimension the loop walks
    offset: int  # x[i + offset]
    slices: tuple[str, ...]  # the other index positions (all `:`)


@dataclass(frozen=True)
class _Scan:
    op: str  # sum | prod | max | min
    source: str  # the array whose elements are combined (the output itself when in place)
    nan_skipping: bool  # Python max/min: a NaN element never wins a comparison


def _position(node: cst.BaseExpression, i: str) -> _Position | None:
    """`x[i]`, `x[i - 1]`, `x[:, i + 1]`: the array, the walked dimension and the offset."""
    if not isinstance(node, cst.Subscript) or isinstance(node.value, cst.Subscript):
        return None
    array = dotted(node.value)
    if array is None:
        return None
    dim, offset = None, None
    slices = []
    for k, el in enumerate(node.slice):
        sl = el.slice
        if isinstance(sl, cst.Slice):
            if sl.lower is None and sl.upper is None and sl.step is None:
                slices.append(":")
                continue
            return None
        off = _offset(sl.value, i)
        if off is None or dim is not None:
            return None
        dim, offset = k, off
    # x[i, :] is x[i]; a slice before the walked position moves it to a later dimension
    if dim is None:
        return None
    return _Position(array, dim, offset, tuple(slices))


def _offset(node: cst.BaseExpression, i: str) -> int | None:
    if isinstance(node, cst.Name) and node.value == i:
        return 0
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, (cst.Add, cst.Subtract)):
        left, right = node.left, node.right
        if isinstance(left, cst.Name) and left.value == i and isinstance(right, cst.Integer):
            k = int(right.evaluated_value)
            return k if isinstance(node.operator, cst.Add) else -k
        if isinstance(node.operator, cst.Add) and isinstance(left, cst.Integer) \
                and isinstance(right, cst.Name) and right.value == i:
            return int(left.evaluated_value)
    return None


_TORCH_BINARY = {"torch.maximum": "max", "torch.minimum": "min", "torch.max": "max", "torch.min": "min"}


def _recognise(small, target, value, write: _Position, i: str, bound: set[str], ctx: PatternContext) -> _Scan:
    """Which scan the statement is, or `_NoScan` saying why it is none."""
    if value is None:  # x[i] += x[i-1]
        op = small.operator
        ops = {cst.AddAssign: "sum", cst.MultiplyAssign: "prod"}
        kind = ops.get(type(op))
        if kind is None:
            raise _NoScan(f"`{code(small)}` is not a running sum or product")
        operands = [small.target, small.value]
        return _combine(kind, operands, write, i, bound, ordered=False, statement=small)
    if isinstance(value, cst.BinaryOperation):
        ops = {cst.Add: "sum", cst.Multiply: "prod"}
        kind = ops.get(type(value.operator))
        if kind is None:
            raise _NoScan(f"`{code(value)}`: only `+`, `*`, max and min have a cumulative twin")
        return _combine(kind, [value.left, value.right], write, i, bound, ordered=False, statement=small)
    if isinstance(value, cst.Call) and len(value.args) == 2 and all(
            a.keyword is None and not a.star for a in value.args):
        func = value.func
        builtin = ctx.info.builtin_name(func)
        builtin = builtin if builtin in ("max", "min") else None
        qual = _TORCH_BINARY.get(ctx.info.qualname(func) or "")
        if builtin is not None:
            return _combine(builtin, [a.value for a in value.args], write, i, bound, ordered=True, statement=small)
        if qual is not None:
            return _combine(qual, [a.value for a in value.args], write, i, bound, ordered=False, statement=small)
    if isinstance(value, cst.Subscript):
        pos = _position(value, i)
        if pos is not None and pos.array == write.array and pos.offset == write.offset - 1:
            raise _NoScan(f"`{code(small)}` copies the previous element forward: in place every element "
                          "becomes the first, which is not a scan")
    raise _NoScan(f"`{code(small)}` is not a running sum, product, max or min of `{write.array}` "
                  "and one element")


def _combine(kind: str, operands, write: _Position, i: str, bound: set[str], ordered: bool, statement) -> _Scan:
    positions = [_position(o, i) for o in operands]
    prev = [k for k, p in enumerate(positions)
            if p is not None and p.array == write.array and p.offset == write.offset - 1
            and p.dim == write.dim and p.slices == write.slices]
    if not prev and _reads_previous(statement, write, i):
        # y[i] = a * y[i-1] + x[i]: the carried value is scaled before it is combined
        raise _NoScan(f"`{code(statement)}` is a recurrence with a coefficient: it has no exact "
                      "cumulative twin")
    if not prev:
        raise _NoScan(f"`{code(statement)}` does not read the previous element `{write.array}[i - 1]`")
    other_index = 1 - prev[0]
    cur = positions[other_index]
    if cur is None:
        # y[i] = a * y[i-1] + x[i], x[i] = x[i-1] * 0.5: a coefficient or constant term
        raise _NoScan(f"`{code(statement)}` is a recurrence with a coefficient or constant term: "
                      "it has no exact cumulative twin")
    if cur.offset != write.offset or cur.dim != write.dim or cur.slices != write.slices:
        raise _NoScan(f"`{code(operands[other_index])}` is not the current element")
    if cur.array.split(".")[0] in bound:
        raise _NoScan(f"`{cur.array}` is bound in the loop")
    nan_skipping = False
    if ordered:
        # max(x[i], x[i-1]) keeps x[i] when it is NaN and then restarts from the next element;
        # no cumulative op does that
        if prev[0] != 0:
            raise _NoScan(f"`{code(statement)}`: Python {kind}() with the current element first restarts "
                          f"after a NaN; write {kind}({write.array}[i - 1], ...) or torch.{kind}imum")
        nan_skipping = True
    return _Scan(kind, cur.array, nan_skipping)


def _reads_previous(statement, write: _Position, i: str) -> bool:
    found = False

    class _V(cst.CSTVisitor):
        def visit_Subscript(self, node: cst.Subscript) -> None:
            nonlocal found
            pos = _position(node, i)
            if pos is not None and pos.array == write.array and pos.offset == write.offset - 1:
                found = True

    traverse.visit(statement, _V())
    return found


def _same_length(init: Init | None, array: str, dim: int, bindings) -> bool:
    """The allocation is exactly as long as `array` along `dim`."""
    if init is None:
        return False
    if init.kind in ("like", "clone"):
        return init.ref == array and array.split(".")[0] not in bindings.rebound
    sizes = sizes_of(init) if init.kind == "alloc" else None
    return bool(sizes) and len(sizes) > dim and measures(sizes[dim], array, dim, bindings, direct=False)


def _range(node: cst.BaseExpression) -> tuple[cst.BaseExpression, cst.BaseExpression]:
    assert isinstance(node, cst.Call)
    args = [a.value for a in node.args]
    if len(args) == 3:
        if _int(args[2]) != 1:
            raise _NoScan(f"the range steps by `{code(args[2])}`: a strided walk is not a scan")
        args = args[:2]
    if len(args) == 1:
        return cst.Integer("0"), args[0]
    return args[0], args[1]


def _int(node: cst.BaseExpression) -> int | None:
    if isinstance(node, cst.Integer):
        return int(node.evaluated_value)
    return None


def _minus_one(node: cst.BaseExpression) -> cst.BaseExpression | None:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Subtract) and _int(node.right) == 1:
        return node.left
    return None


def _first(array: str, dim: int) -> str:
    return f"{array}[{':, ' * dim}:1]"


_CUM = {"sum": "cumsum", "prod": "cumprod", "max": "cummax", "min": "cummin"}


def _scanned(scan: _Scan, whole: str, first: str, dim: int, t: str) -> str:
    """The scan of `whole` along `dim` (in place: the running value starts at `first`)."""
    fn = _CUM[scan.op]
    if scan.op in ("sum", "prod"):
        return f"{t}.{fn}({whole}, {dim})"
    operand = whole
    if scan.nan_skipping:
        # Python max/min never picks a NaN element; the first element never changes a running
        # max/min, and a NaN first element is kept and wins every comparison as the loop's does
        operand = f"{t}.where({whole}.isnan(), {first}, {whole})"
    return f"{t}.{fn}({operand}, {dim}).values"


def _seeded(scan: _Scan, rest: str, seed: str, dim: int, t: str) -> str:
    """out[1:] for a scan over `rest` that starts from the output's first element `seed`."""
    fn = _CUM[scan.op]
    if scan.op == "sum":
        return f"{seed} + {t}.cumsum({rest}, {dim})"
    if scan.op == "prod":
        return f"{seed} * {t}.cumprod({rest}, {dim})"
    operand = rest
    if scan.nan_skipping:
        operand = f"{t}.where({rest}.isnan(), {seed}, {rest})"
    return f"{t}.{scan.op}imum({seed}, {t}.{fn}({operand}, {dim}).values)"


def _kwargs(init: Init) -> dict[str, cst.BaseExpression]:
    call = init.value
    if not isinstance(call, cst.Call):
        return {}
    return {a.keyword.value: a.value for a in call.args if a.keyword is not None}


def _dtype_problem(init: Init | None, source: str, bindings) -> str | None:
    """out[i] = out[i-1] + x[i] truncates at every step when out is integer and x float."""
    if init is None or init.kind not in ("alloc", "like", "clone"):
        return "the output is not allocated in this function: its dtype is unknown"
    kwargs = _kwargs(init)
    dtype = kwargs.get("dtype")
    if dtype is None:
        if init.ref == source and source.split(".")[0] not in bindings.rebound:
            return None  # zeros_like(x), x.clone(), x.new_zeros(n): x's own dtype
        if init.kind == "alloc" and not (init.call or "").startswith("new:"):
            # torch.zeros(n) is the default float dtype; torch.full(n, 0) is int64
            return full_dtype_problem(init)
        return f"`{init.name}` has the dtype of `{init.ref}`, which may be integer while `{source}` is float"
    text = code(dtype)
    if text == f"{source}.dtype" or text.rsplit(".", 1)[-1] in _FLOAT_DTYPES:
        return None
    return (f"`{init.name}` is `{text}`: if `{source}` is float, each step truncates, "
            "which a cumulative op does not")


def _drop_form(loop: Loop, init: Init | None, write: _Position, scan: _Scan, measured, ctx) -> Rewrite | None:
    """`out = zeros_like(x); out[0] = x[0]; for ...` -> `out = torch.cumsum(x, 0).to(x.dtype)`."""
    if init is None or init.kind not in ("like", "clone") or init.ref != scan.source or measured != scan.source:
        return None
    kwargs = _kwargs(init)
    if set(kwargs) - {"dtype"}:
        return None
    block, k = loop.block, loop.block_index
    t = ctx.torch
    dtype = code(kwargs["dtype"]) if "dtype" in kwargs else f"{scan.source}.dtype"
    if init.kind == "clone":
        # out = x.clone() right before the loop: out[0] is x[0] already
        if k < 1 or block[k - 1] is not init.statement:
            return None
        return _dropped(loop, scan, write, (init.statement,), dtype, "dtype" in kwargs, t, ctx)
    if k < 2 or block[k - 2] is not init.statement:
        return None
    first = block[k - 1]
    if not (isinstance(first, cst.SimpleStatementLine) and len(first.body) == 1
            and isinstance(first.body[0], cst.Assign) and len(first.body[0].targets) == 1):
        return None
    assign = first.body[0]
    prefix = ":, " * write.dim
    if code(assign.targets[0].target).replace(" ", "") != f"{write.array}[{prefix}0]".replace(" ", "") \
            or code(assign.value).replace(" ", "") != f"{scan.source}[{prefix}0]".replace(" ", ""):
        return None
    return _dropped(loop, scan, write, (init.statement, first), dtype, "dtype" in kwargs, t, ctx)


def _dropped(loop, scan: _Scan, write: _Position, removed, dtype: str, cast: bool, t: str, ctx) -> Rewrite:
    value = _scanned(scan, scan.source, _first(scan.source, write.dim), write.dim, t)
    if scan.op in ("sum", "prod") or cast:
        # cumsum/cumprod of int32, uint8 or bool is int64; the output had x's dtype
        value = f"{value}.to({dtype})"
    new = f"{write.array} = {value}"
    edits = tuple(Edit(s, None) for s in removed) + (Edit(loop.node, new),)
    return Rewrite("cumulative", loop, edits, f"becomes `{new}`", SAFE, (), ctx.imports)
