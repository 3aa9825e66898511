"""Inputs past the guard in front of a loop: the search for reach.

When the original returns before its loop on every input the plan draws (`if x.ndim ==
1: return ...`, `if len(x) < 64: return ...`), the return's line (from the probe) names
the guard: the `if` tests that hold that return. Each test on a size, a rank or an
element count or the kind of a parameter becomes a need (`len(x) >= 64`, `x.ndim != 1`,
`not isinstance(xs, Tensor)`), and the plan is changed to meet it: a dim's bounds raised
or lowered, a tensor's rank changed, a tensor drawn as a list of its rows. Tests this
module cannot read (values, flags) are left to the other kinds of values the verifier
draws.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace

from .plan import Dim, ListArg, Plan, TensorArg

# A guard that asks for more than this many rows is not chased: each example would run a
# Python loop that long, and the hint comment states such sizes better.
MAX_SIZE = 4096

_FLIP = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}
_MIRROR = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}


@dataclass(frozen=True)
class Need:
    """`measure` of parameter `param` must lie in [low, high] (None: unbounded).

    measure: "size" (of axis `axis`), "rank", "numel", or "kind" (low = high = 1: a
    tensor; 0: a list).
    """

    param: str
    measure: str
    axis: int = 0
    low: int | None = None
    high: int | None = None


def guard_needs(fn: ast.AST, returned_at: int) -> list[Need]:
    """What an input must satisfy not to take the return at line `returned_at`."""
    needs: list[Need] = []
    for test, taken in _tests_leading_to(fn, returned_at):
        needs += _needs(test, want=not taken)
    return needs


def _tests_leading_to(fn: ast.AST, line: int) -> list[tuple[ast.expr, bool]]:
    """(test, the branch that holds `line` is its True branch) for each `if` around it."""
    out = []
    for node in ast.walk(fn):
        if not isinstance(node, ast.If):
            continue
        if any(_holds(s, line) for s in node.body):
            out.append((node.test, True))
        elif any(_holds(s, line) for s in node.orelse):
            out.append((node.test, False))
    return out


def _holds(stmt: ast.stmt, line: int) -> bool:
    return stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno)


def _needs(test: ast.expr, want: bool) -> list[Need]:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _needs(test.operand, not want)
    if isinstance(test, ast.BoolOp):
        both = isinstance(test.op, ast.And) == want  # `a and b` true / `a or b` false: every part
        parts = [_needs(v, want) for v in test.values]
        if both:
            return [n for p in parts for n in p]
        return next((p for p in parts if p), [])  # one part is enough: the first that reads
    kind = _kind_test(test)
    if kind is not None:
        param, tensor = kind
        return [Need(param, "kind", low=int(tensor == want), high=int(tensor == want))]
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, type(test.ops[0]), test.comparators[0]
        if _int(left) is not None and _int(right) is None:
            left, right, op = right, left, _MIRROR[op] if op in _MIRROR else op
        measure, bound = _measure(left), _int(right)
        if measure is None or bound is None or op not in _FLIP:
            return []
        if not want:
            op = _FLIP[op]
        return [_need(measure, op, bound)]
    return []


def _kind_test(test: ast.expr) -> tuple[str, bool] | None:
    """(param, True) for `isinstance(x, torch.Tensor)` / `torch.is_tensor(x)`, (param,
    False) for `isinstance(x, (list, tuple))`: a test of what kind of value `x` is."""
    if not isinstance(test, ast.Call) or not test.args or not isinstance(test.args[0], ast.Name):
        return None
    func = ast.unparse(test.func)
    if func in ("torch.is_tensor", "is_tensor") and len(test.args) == 1:
        return test.args[0].id, True
    if func != "isinstance" or len(test.args) != 2:
        return None
    kinds = test.args[1].elts if isinstance(test.args[1], ast.Tuple) else [test.args[1]]
    names = {ast.unparse(k).rsplit(".", 1)[-1] for k in kinds}
    if names and names <= {"Tensor"}:
        return test.args[0].id, True
    if names and names <= {"list", "tuple", "List", "Tuple", "Sequence"}:
        return test.args[0].id, False
    return None


def _need(measure: tuple[str, str, int], op: type, n: int) -> Need:
    param, kind, axis = measure
    low, high = {ast.Lt: (None, n - 1), ast.LtE: (None, n), ast.Gt: (n + 1, None), ast.GtE: (n, None),
                 ast.Eq: (n, n), ast.NotEq: (n + 1, None)}[op]
    return Need(param, kind, axis, low, high)


def _int(node: ast.expr) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _int(node.operand) is not None:
        return -_int(node.operand)
    return None


def _measure(node: ast.expr) -> tuple[str, str, int] | None:
    """(param, "size" | "rank" | "numel", axis) for `len(x)`, `x.shape[k]`, `x.size(k)`,
    `x.ndim`, `x.dim()`, `len(x.shape)`, `x.numel()`."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len" and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Name):
            return arg.id, "size", 0
        if isinstance(arg, ast.Attribute) and arg.attr == "shape" and isinstance(arg.value, ast.Name):
            return arg.value.id, "rank", 0
        return None
    if isinstance(node, ast.Attribute) and node.attr in ("ndim",) and isinstance(node.value, ast.Name):
        return node.value.id, "rank", 0
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "shape" \
            and isinstance(node.value.value, ast.Name) and _int(node.slice) is not None:
        return node.value.value.id, "size", _int(node.slice)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
        name, method = node.func.value.id, node.func.attr
        if method in ("dim", "ndimension") and not node.args:
            return name, "rank", 0
        if method in ("numel", "nelement") and not node.args:
            return name, "numel", 0
        if method == "size" and len(node.args) == 1 and _int(node.args[0]) is not None:
            return name, "size", _int(node.args[0])
    return None


def past_guards(plan: Plan, needs: list[Need]) -> Plan | None:
    """`plan` changed to meet `needs`, or None when none of them can be met."""
    args = dict(plan.args)
    dims = {d.name: d for d in plan.dims}
    changed = False
    for need in needs:
        arg = args.get(need.param)
        if need.measure == "kind":
            other = _other_kind(arg, tensor=bool(need.low), dims=dims)
            if other is not None:
                args[need.param] = other
                changed = True
            continue
        if need.measure == "rank" and isinstance(arg, TensorArg):
            rank = _rank(len(arg.dims), need)
            if rank is None or rank == len(arg.dims):
                continue
            extra = [f"{need.param}_g{k}" for k in range(len(arg.dims), rank)]
            for name in extra:
                dims[name] = Dim(name, 2, 3)
            args[need.param] = replace(arg, dims=(*arg.dims, *extra)[:rank])
            changed = True
            continue
        name = _dim_name(arg, need)
        if name is None or name not in dims:
            continue
        dim = dims[name]
        low = max(dim.low, need.low if need.low is not None else dim.low, 2)
        high = min(max(dim.high, low + 2), need.high) if need.high is not None else max(dim.high, low + 2)
        if low > high or low > MAX_SIZE:
            continue
        dims[name] = Dim(name, low, high)
        changed = True
    if not changed:
        return None
    return replace(plan, args=tuple(args.items()), dims=tuple(dims.values()))


def _other_kind(arg, tensor: bool, dims: dict[str, Dim]):
    """A tensor as a list of its rows (the `else` of `isinstance(x, Tensor)`), or a list
    of tensors as one stacked tensor; None when `arg` already is that kind."""
    if not tensor and isinstance(arg, TensorArg) and arg.dims:
        rest = arg.dims[1:]
        if not rest:  # what is not a tensor here is most often a list of tensors
            rest = (f"{arg.dims[0]}_item",)
            dims[rest[0]] = Dim(rest[0], 0, 4)
        return ListArg(arg.dims[0], replace(arg, dims=rest, output=False))
    if tensor and isinstance(arg, ListArg) and isinstance(arg.item, TensorArg):
        return replace(arg.item, dims=(arg.length, *arg.item.dims))
    return None


def _rank(current: int, need: Need) -> int | None:
    for rank in sorted(range(1, 5), key=lambda r: abs(r - current)):
        if (need.low is None or rank >= need.low) and (need.high is None or rank <= need.high):
            return rank
    return None


def _dim_name(arg, need: Need) -> str | None:
    if isinstance(arg, ListArg) and need.measure == "size" and need.axis == 0:
        return arg.length
    if not isinstance(arg, TensorArg) or not arg.dims:
        return None
    try:
        return arg.dims[need.axis if need.measure == "size" else 0]
    except IndexError:
        return None

