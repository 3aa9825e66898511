"""Shared by `batched_op`, `batch_call` and `vmap`: dims, ranks and the map-loop shape.

* dims: a per-item call `f(v, dim=0)` becomes `f(V, dim=1)` on the stacked array; a
  negative dim counts from the end and stays. Only literal dims are shifted: `dim=k`
  could be negative or positive at run time.
* ranks: whether a dim rewrite is exact depends on the rank of each item. torch accepts
  `dim=0` and `dim=-1` on a 0-d tensor as if it were 1-d, so `softmax(v, -1)` of a 0-d
  `v` is 1.0 while the batched `softmax(V, -1)` mixes the rows. Ranks come from what
  the user declared (`# loopvec: shapes x=[n,d]`, a shaped annotation such as
  `Float[Tensor, "b c h w"]`, `n, d = x.shape`), never from guessing.
* shape: a map loop is temporaries plus one `append` (then `torch.stack/cat/tensor`),
  a comprehension fed to one of those, or one `out[i] = ...` store.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from loopvec.analysis.loops import Append, Finish, Init, Loop
from loopvec.analysis.module import ModuleInfo, code
from loopvec.lift import LiftError
from loopvec.verify.specs import SpecError, TensorSpec, parse_hint_comment, parse_spec

# --------------------------------------------------------------------------- dims


def literal_dim(node: cst.BaseExpression) -> int | None:
    """`2` -> 2, `-1` -> -1; None for anything that is not an integer literal."""
    if isinstance(node, cst.Integer):
        return int(node.evaluated_value)
    if (isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus)
            and isinstance(node.expression, cst.Integer)):
        return -int(node.expression.evaluated_value)
    return None


def literal_dims(node: cst.BaseExpression) -> tuple[int, ...] | None:
    """The dims an int or a tuple/list of ints names; None when any is not a literal."""
    one = literal_dim(node)
    if one is not None:
        return (one,)
    if isinstance(node, (cst.Tuple, cst.List)):
        out = []
        for el in node.elements:
            if isinstance(el, cst.StarredElement):
                return None
            d = literal_dim(el.value)
            if d is None:
                return None
            out.append(d)
        return tuple(out)
    return None


def shift_dims(node: cst.BaseExpression) -> cst.BaseExpression:
    """The same dims on the stacked array: `0` -> `1`, `(0, -1)` -> `(1, -1)`, `-2` -> `-2`."""
    if literal_dims(node) is None:
        # dim=k: k + 1 is right only when k >= 0, which the source does not say
        raise LiftError(f"dim `{code(node)}` is not an integer literal")
    if isinstance(node, (cst.Tuple, cst.List)):
        return node.with_changes(elements=[el.with_changes(value=shift_dims(el.value)) for el in node.elements])
    d = literal_dim(node)
    return node if d is not None and d < 0 else cst.Integer(str(d + 1))


def dims_code(dims: tuple[int, ...]) -> str:
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(map(str, dims)) + ")"


# --------------------------------------------------------------------------- ranks


@dataclass(frozen=True)
class Rank:
    """What is known about a tensor's rank: at least `lo`, exactly `exact` when known."""

    lo: int = 0
    exact: int | None = None

    def at_least(self, k: int) -> Rank:
        if self.exact is not None:
            return self
        return Rank(max(self.lo, k), None)

    def minus(self, k: int) -> Rank:
        return Rank(max(self.lo - k, 0), None if self.exact is None else self.exact - k)


UNKNOWN = Rank()


def _hint_lines(info: ModuleInfo, function: cst.FunctionDef) -> list[str]:
    """The def line and every line of a multi-line signature (where the hint comment sits)."""
    first = info.position(function).start.line
    body = function.body
    last = first
    if isinstance(body, cst.IndentedBlock) and body.body:
        last = max(first, info.position(body.body[0]).start.line - 1)
    return info.source.splitlines()[first - 1:last]


def _annotation_rank(node: cst.BaseExpression) -> Rank:
    """`Float[Tensor, "b c h w"]` -> exactly 4; `"... c"` or `"*batch c"` -> at least 1."""
    if isinstance(node, cst.SimpleString):
        try:
            return _annotation_rank(cst.parse_expression(node.evaluated_value))
        except (cst.ParserSyntaxError, TypeError):
            return UNKNOWN
    if not isinstance(node, cst.Subscript) or len(node.slice) != 2:
        return UNKNOWN
    shape = node.slice[1].slice
    if not (isinstance(shape, cst.Index) and isinstance(shape.value, cst.SimpleString)):
        return UNKNOWN
    tokens = str(shape.value.evaluated_value).split()
    variadic = [t for t in tokens if t == "..." or t.startswith("*")]
    if variadic:
        return Rank(len(tokens) - len(variadic), None)
    return Rank(len(tokens), len(tokens))


def _shape_unpacking(stmt: cst.BaseStatement) -> tuple[str, Rank] | None:
    """`n, c, h, w = x.shape` (or `x.size()`): x has exactly four dims, or the line raises."""
    if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1):
        return None
    small = stmt.body[0]
    if not (isinstance(small, cst.Assign) and len(small.targets) == 1):
        return None
    target, value = small.targets[0].target, small.value
    if not isinstance(target, (cst.Tuple, cst.List)):
        return None
    if isinstance(value, cst.Call) and not value.args:
        value = value.func
        if not (isinstance(value, cst.Attribute) and value.attr.value == "size"):
            return None
    elif not (isinstance(value, cst.Attribute) and value.attr.value == "shape"):
        return None
    if not isinstance(value.value, cst.Name):
        return None
    starred = sum(isinstance(el, cst.StarredElement) for el in target.elements)
    count = len(target.elements) - starred
    return value.value.value, Rank(count, None) if starred else Rank(count, count)


def declared_ranks(loop: Loop, info: ModuleInfo) -> dict[str, Rank]:
    """Ranks of the function's names as the user stated them, before the loop runs."""
    fn = loop.function
    if fn is None:
        return {}
    out: dict[str, Rank] = {}
    params = [*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params]
    for p in params:
        if p.annotation is not None:
            rank = _annotation_rank(p.annotation.annotation)
            if rank != UNKNOWN:
                out[p.name.value] = rank
    for line in _hint_lines(info, fn):
        for name, text in parse_hint_comment(line).items():
            try:
                spec = parse_spec(text)
            except SpecError:
                continue
            if isinstance(spec, TensorSpec) and spec.dims is not None:
                out[name] = Rank(len(spec.dims), len(spec.dims))
    body = fn.body.body if isinstance(fn.body, cst.IndentedBlock) else ()
    for stmt in body:
        if info.position(stmt).start.line >= loop.line:
            break
        found = _shape_unpacking(stmt)
        if found is not None:
            out[found[0]] = found[1]
    # `x = x.flatten()` anywhere in the function: x no longer has the declared rank
    rebound = _Rebound()
    fn.body.visit(rebound)
    for name in rebound.names:
        out.pop(name, None)
    return out


class _Rebound(cst.CSTVisitor):
    """Names bound in a function body other than by `n, d = x.shape` (which binds n, d)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def _bind(self, target: cst.BaseExpression) -> None:
        if isinstance(target, cst.Name):
            self.names.add(target.value)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                self._bind(el.value)
        elif isinstance(target, cst.StarredElement):
            self._bind(target.value)

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._bind(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._bind(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._bind(node.target)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._bind(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._bind(node.target)

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self._bind(node.target)

    def visit_AsName(self, node: cst.AsName) -> None:
        self._bind(node.name)

    def visit_Call(self, node: cst.Call) -> None:
        # x.unsqueeze_(0): the same name, another rank
        func = node.func
        if (isinstance(func, cst.Attribute) and func.attr.value in _RESHAPING_INPLACE
                and isinstance(func.value, cst.Name)):
            self.names.add(func.value.value)


_RESHAPING_INPLACE = {"unsqueeze_", "squeeze_", "resize_", "resize_as_", "set_", "as_strided_"}


# --------------------------------------------------------------------------- loop shape


@dataclass(frozen=True)
class MapShape:
    """A map loop: `temps`, then one value collected or stored.

    kind: comprehension | append | store
    """

    kind: str
    temps: tuple[cst.BaseStatement, ...]
    value: cst.BaseExpression
    finish: Finish | None = None
    init: Init | None = None
    append: Append | None = None
    write_array: str | None = None


def only(stmt: cst.BaseStatement) -> cst.BaseSmallStatement | None:
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        return stmt.body[0]
    return None


def map_shape(loop: Loop) -> MapShape | str:
    """The map loop's parts, or why it is not one (the decline reason)."""
    if loop.kind == "comprehension":
        # [f(x) for x in data if ...]: a filter changes the length (see boolean_mask)
        if loop.conditions:
            return "comprehension with a condition"
        return MapShape("comprehension", (), loop.element, loop.collector)
    # total += f(x): a reduction, not a map
    if loop.accumulators:
        return "accumulates into a name (a reduction)"
    if not loop.body:
        return "empty or one-line body"
    last, temps = loop.body[-1], loop.body[:-1]
    small = only(last)
    if len(loop.appends) == 1 and not loop.writes and loop.appends[0].statement is small:
        app = loop.appends[0]
        init = loop.setup.get(app.target)
        # `out` filled before the loop, or read between: the list is more than this loop's
        if init is None or init.kind != "list" or init.interleaved:
            return f"`{app.target}` is not an empty list right before the loop"
        finish = loop.finish.get(app.target)
        if finish is None:
            return f"`{app.target}` is not turned into a tensor with torch.stack/tensor/cat"
        # len(out), out[0] or the list itself returned later: it must stay a list
        if finish.list_used_later:
            return f"the list `{app.target}` is used after it is stacked"
        return MapShape("append", tuple(temps), app.value, finish, init, app)
    if (len(loop.writes) == 1 and not loop.appends and isinstance(small, cst.Assign)
            and len(small.targets) == 1 and small.targets[0].target is loop.writes[0].node):
        write = loop.writes[0]
        dom = loop.domain
        # out[2*i] = ..., out[i, j] = ...: not one row per iteration
        if dom is None or dom.index is None or write.index != (dom.index,):
            return f"`{write.array}[{', '.join(write.index)}]` is not written at the loop index"
        return MapShape("store", tuple(temps), small.value, None, loop.setup.get(write.array),
                        write_array=write.array)
    return "body is not temporaries followed by one append or one `out[i] = ...`"
