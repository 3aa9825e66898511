"""What names in a function are bound to, and what sizes they measure.

`d = x.shape[1]` bound once before a loop means `d` *is* x's second size wherever the
loop reads it -- unless `x` or `d` is rebound somewhere, when it may be a stale size. A
pattern that must prove an allocation's row shape (`torch.zeros(n, d)` has rows shaped
like x's rows) asks `measures(size, "x", 1, function_bindings(fn))`.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from .loops import Init
from .module import code, dotted, number_value, parameters, target_names
from . import traverse


@dataclass(frozen=True)
class Bindings:
    """`values`: names bound exactly once in a function (`d = x.shape[1]` -> the value
    node, `n, d = x.shape` -> ("x", 1) for d); `rebound`: parameters assigned anywhere and
    locals assigned more than once, whose sizes may change between two statements."""

    values: dict
    rebound: frozenset


def function_bindings(function: cst.FunctionDef | None) -> Bindings:
    if function is None:
        return Bindings({}, frozenset())
    found: dict[str, object] = {}
    counts: dict[str, int] = {}

    def bump(target, by: int = 1) -> None:
        for name in target_names(target):
            counts[name] = counts.get(name, 0) + by

    class _V(cst.CSTVisitor):
        def visit_FunctionDef(self, node) -> bool:
            return node is function

        def visit_Lambda(self, node) -> bool:
            return False

        def visit_Assign(self, node: cst.Assign) -> None:
            for t in node.targets:
                target = t.target
                bump(target)
                if isinstance(target, cst.Name):
                    found[target.value] = node.value
                elif isinstance(target, (cst.Tuple, cst.List)):
                    v = node.value
                    shape_of = dotted(v.value) if isinstance(v, cst.Attribute) and v.attr.value == "shape" else None
                    for k, el in enumerate(target.elements):
                        if isinstance(el.value, cst.Name) and shape_of is not None:
                            found[el.value.value] = (shape_of, k)

        # bound in a way whose value is not one expression: never "bound once"
        def visit_AugAssign(self, node) -> None:
            bump(node.target, 2)

        def visit_AnnAssign(self, node) -> None:
            bump(node.target, 2)

        def visit_For(self, node) -> None:
            bump(node.target, 2)

        def visit_NamedExpr(self, node) -> None:
            bump(node.target, 2)

        def visit_WithItem(self, node) -> None:
            if node.asname is not None:
                bump(node.asname.name, 2)

    traverse.visit(function, _V())
    params = {p.name.value for p in parameters(function)}
    values = {k: v for k, v in found.items() if counts.get(k) == 1 and k not in params}
    rebound = {k for k, c in counts.items() if c > 1 or (k in params and c > 0)}
    return Bindings(values, frozenset(rebound))


def measures(node: cst.BaseExpression, array: str, dim: int, bindings: Bindings, direct: bool = True) -> bool:
    """`node` is the size of `array` along `dim`: x.shape[d], x.size(d), len(x) (d=0), or a
    name bound once to one of those (`d = x.shape[1]`, `n, d = x.shape`).

    A size computed before the loop (a bound name; with `direct=False`, an allocation's
    size argument) measures the array the loop sees only if the array is never rebound.
    """
    if isinstance(node, cst.Name):
        bound = bindings.values.get(node.value)
        if bound is None or array.split(".")[0] in bindings.rebound:
            return False
        if isinstance(bound, tuple):
            return bound == (array, dim)
        return measures(bound, array, dim, Bindings({}, bindings.rebound))
    if not direct and array.split(".")[0] in bindings.rebound:
        return False
    if isinstance(node, cst.Subscript) and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
        base = node.value
        if isinstance(base, cst.Attribute) and base.attr.value == "shape" and dotted(base.value) == array:
            return number_value(node.slice[0].slice.value) == dim
    if isinstance(node, cst.Call) and len(node.args) == 1 and node.args[0].keyword is None:
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "size" and dotted(func.value) == array:
            return number_value(node.args[0].value) == dim
        if isinstance(func, cst.Name) and func.value == "len" and dim == 0:
            return dotted(node.args[0].value) == array
    return False


# --------------------------------------------------------------------------- allocations


def sizes_of(init: Init) -> list[cst.BaseExpression] | None:
    """The size arguments of `torch.zeros(n, d)`, `torch.zeros((n, d))`, `x.new_zeros(n, d)`."""
    call = init.value
    if not isinstance(call, cst.Call):
        return None
    sizes = [a.value for a in call.args if a.keyword is None and not a.star]
    if any(a.star for a in call.args) or not sizes:
        return None
    if init.call and init.call.endswith("full"):
        sizes = sizes[:1]
    if len(sizes) == 1 and isinstance(sizes[0], (cst.Tuple, cst.List)):
        if any(isinstance(e, cst.StarredElement) for e in sizes[0].elements):
            return None
        sizes = [e.value for e in sizes[0].elements]
    return sizes


def allocated_rank(init: Init) -> int | None:
    """The rank of `torch.zeros(n, d)` (2); None for anything but an allocation."""
    if init.kind != "alloc":
        return None
    sizes = sizes_of(init)
    return len(sizes) if sizes else None


def full_dtype_problem(init: Init) -> str | None:
    """torch.full(size, 0) is int64 and torch.full(size, True) bool: not the default dtype."""
    call = init.value
    if init.call != "torch.full" or not isinstance(call, cst.Call):
        return None
    if any(a.keyword is not None and a.keyword.value == "dtype" for a in call.args):
        return None
    fill = [a.value for a in call.args if a.keyword is None]
    value = fill[1] if len(fill) > 1 else None
    if isinstance(value, cst.UnaryOperation):
        value = value.expression
    if isinstance(value, cst.Float):
        return None
    return f"`{code(call)}` takes its dtype from the fill value"
