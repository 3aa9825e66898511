"""Loop nests: loops one to four deep over tensor indices, normalised once.

    for i in range(m):
        for j in range(n):
            for k in range(p):
                C[i, j] += A[i, k] * B[k, j]

becomes a `Nest`: its levels (`i` over `m`, which measures `A.shape[0]`, ...), the
statement (an accumulation into `C[i, j]`), every array access as a tuple of index
expressions (`A[i][k]` is read like `A[i, k]`; affine offsets such as `h*hs + i` and
windows such as `X[i:i + h]` are parsed into `Affine` forms), and which indices are
free (they name the output element) and which are contracted (summed).

Three statement shapes are recognised:
  store       `out[i, j] = value` in the innermost loop;
  accumulate  `out[i, j] += value` in the innermost loop (contracted indices are summed);
  scalar      `acc = 0` opening an inner loop, `acc += value` inside it and
              `out[i] = g(acc)` closing it -- or `acc = 0` before the whole nest and
              `acc` used after it (a full contraction, such as a trace).
Everything else -- statements between the loops, extents that depend on an outer index
(`range(i)`), indices that are not affine in the loop variables (`A[idx[i]]`, `A[i * j]`),
break/return, side effects -- raises `NestError` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from .domain import DomainError, build_domain
from .loops import Init, Loop, flatten_subscript, names_in
from .module import ModuleInfo, code, dotted, top_statement_index
from . import traverse
from .memo import per_node


class NestError(Exception):
    """The loop is not a nest loopvec can describe; the message says why."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Affine:
    """`sum(coef * var) + offset`; coefficients and offset are loop-invariant code."""

    terms: tuple[tuple[str, str], ...]  # (var, coefficient code), in order of appearance
    offset: str  # "0" when there is none

    @property
    def var(self) -> str | None:
        """The loop variable when the expression is exactly that variable."""
        if len(self.terms) == 1 and self.terms[0][1] == "1" and self.offset == "0":
            return self.terms[0][0]
        return None

    @property
    def vars(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.terms)


@dataclass(frozen=True)
class Sub:
    """One subscript position.

    kind: var (exactly a loop variable), const (loop-invariant index), affine (any other
    affine index), window (`a:b` whose bounds move with loop variables and whose width
    `size` is invariant), full (`:`), other (a slice with a step, `...`, `None`, an
    invariant slice).
    """

    kind: str
    code: str
    start: Affine | None = None  # var/const/affine: the index; window: the slice start
    size: str | None = None  # window: stop - start

    @property
    def var(self) -> str | None:
        return self.start.var if self.kind == "var" and self.start else None


@dataclass(frozen=True)
class NestAccess:
    """`array[subs...]`, with `a[i][j]` flattened to two positions."""

    array: str
    subs: tuple[Sub, ...]
    node: cst.Subscript = field(compare=False, repr=False)

    @property
    def vars(self) -> tuple[str, ...]:
        """The loop variables used anywhere in the subscript, in position order."""
        out: list[str] = []
        for s in self.subs:
            if s.start is not None:
                out += [v for v in s.start.vars if v not in out]
        return tuple(out)

    @property
    def simple(self) -> bool:
        """Every position is a plain loop variable or an invariant index."""
        return all(s.kind in ("var", "const") for s in self.subs)


@dataclass(frozen=True)
class Level:
    var: str
    extent: str  # code: "m", "A.shape[1]", "len(A)", "H - h + 1"
    measures: tuple[tuple[str, int], ...]  # (array, axis) dims the extent is known to equal
    node: cst.For = field(repr=False)


@dataclass(frozen=True)
class Nest:
    loop: Loop = field(repr=False)
    levels: tuple[Level, ...]
    kind: str  # store | accumulate | scalar
    value: cst.BaseExpression = field(repr=False)  # what one innermost iteration computes
    reads: tuple[NestAccess, ...]  # accesses in `value`, in source order
    target: NestAccess | None  # the written element (None for a scalar result)
    free: tuple[str, ...]  # index variables of the output element, in target order
    contracted: tuple[str, ...]  # index variables summed over, in level order
    scalar: str | None = None  # kind scalar: the accumulator name
    scalar_init: cst.BaseExpression | None = field(default=None, repr=False)
    scalar_stmt: cst.BaseStatement | None = field(default=None, repr=False)  # `acc = 0`
    finish: cst.BaseExpression | None = field(default=None, repr=False)  # `g(acc)` in `out[i] = g(acc)`
    finish_reads: tuple[NestAccess, ...] = ()
    setup: Init | None = None  # what binds the output before the nest
    sizes: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict, repr=False)
    index_values: tuple[str, ...] = ()  # loop variables used as values, not as indices

    @property
    def vars(self) -> tuple[str, ...]:
        return tuple(lv.var for lv in self.levels)

    def level(self, var: str) -> Level:
        return next(lv for lv in self.levels if lv.var == var)

    @property
    def output(self) -> str:
        return self.target.array if self.target is not None else (self.scalar or "")

    @property
    def scalar_result(self) -> bool:
        """`acc = 0` before the nest and `acc` read after it: the output is the number."""
        return self.kind == "scalar" and self.target is None

    def covers(self, array: str, axis: int, var: str) -> bool:
        """`var` walks all of `array`'s dimension `axis` (its extent measures that dim)."""
        return (array, axis) in self.level(var).measures

    def exact(self, var: str) -> bool:
        """Some array the nest reads has a dim that `var` walks all of."""
        return any(s.kind == "var" and s.var == var and self.covers(r.array, p, var)
                   for r in self.reads + self.finish_reads for p, s in enumerate(r.subs))


# --------------------------------------------------------------------------- affine forms


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _mul(a: str, b: str) -> str:
    if a == "1":
        return b
    if b == "1":
        return a
    ia, ib = _int(a), _int(b)
    if ia is not None and ib is not None:
        return str(ia * ib)
    return f"{_atom(a)} * {_atom(b)}"


def _add(a: str, b: str) -> str:
    if a == "0":
        return b
    if b == "0":
        return a
    ia, ib = _int(a), _int(b)
    if ia is not None and ib is not None:
        return str(ia + ib)
    if b.startswith("-"):
        return f"{a} - {_atom(b[1:])}"
    return f"{a} + {b}"


def _neg(a: str) -> str:
    ia = _int(a)
    if ia is not None:
        return str(-ia)
    return a[1:] if a.startswith("-") and _int(a[1:]) is None and " " not in a else f"-{_atom(a)}"


def _atom(text: str) -> str:
    try:
        node = cst.parse_expression(text)
    except cst.ParserSyntaxError:
        return f"({text})"
    simple = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float)
    return text if isinstance(node, simple) or node.lpar else f"({text})"


def affine(node: cst.BaseExpression, loop_vars: set[str]) -> Affine | None:
    """The affine form of an index expression over `loop_vars`, or None if it is not affine."""
    if isinstance(node, cst.Integer):
        return Affine((), str(node.evaluated_value))
    if not names_in(node) & loop_vars:
        return Affine((), code(node))
    if isinstance(node, cst.Name):
        return Affine(((node.value, "1"),), "0")
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = affine(node.expression, loop_vars)
        if inner is None:
            return None
        return Affine(tuple((v, _neg(c)) for v, c in inner.terms), _neg(inner.offset))
    if isinstance(node, cst.BinaryOperation):
        left, right = affine(node.left, loop_vars), affine(node.right, loop_vars)
        if left is None or right is None:
            return None
        op = node.operator
        if isinstance(op, (cst.Add, cst.Subtract)):
            if isinstance(op, cst.Subtract):
                right = Affine(tuple((v, _neg(c)) for v, c in right.terms), _neg(right.offset))
            terms = dict(left.terms)
            for v, c in right.terms:
                if v in terms:
                    merged = _int(terms[v]), _int(c)
                    # `i*s + i*t`: symbolic coefficients that would need to be summed
                    if None in merged:
                        return None
                    terms[v] = str(merged[0] + merged[1])
                else:
                    terms[v] = c
            terms = {v: c for v, c in terms.items() if c != "0"}
            return Affine(tuple(terms.items()), _add(left.offset, right.offset))
        if isinstance(op, cst.Multiply):
            # `i * j`: a product of two loop variables is not affine
            if left.terms and right.terms:
                return None
            scale, form = (left.offset, right) if not left.terms else (right.offset, left)
            return Affine(tuple((v, _mul(scale, c)) for v, c in form.terms), _mul(scale, form.offset)
                          if form.offset != "0" else "0")
    # `idx[i]`, `i // 2`, `i % n`, `f(i)`: not affine
    return None


def _sub(sl: cst.BaseSlice, loop_vars: set[str]) -> Sub:
    if isinstance(sl, cst.Index):
        value = sl.value
        text = code(value)
        if isinstance(value, cst.Ellipsis) or (isinstance(value, cst.Name) and value.value == "None"):
            return Sub("other", text)
        form = affine(value, loop_vars)
        if form is None:
            raise NestError(f"index `{text}` is not affine in the loop variables")
        if not form.terms:
            return Sub("const", text, form)
        return Sub("var" if form.var else "affine", text, form)
    assert isinstance(sl, cst.Slice)
    text = code(sl)
    if sl.lower is None and sl.upper is None and sl.step is None:
        return Sub("full", ":")
    bounds = [b for b in (sl.lower, sl.upper, sl.step) if b is not None]
    if not any(names_in(b) & loop_vars for b in bounds):
        return Sub("other", text)
    if sl.step is not None or sl.lower is None or sl.upper is None:
        raise NestError(f"slice `{text}` moves with the loop but is not `start:start + size`")
    start, stop = affine(sl.lower, loop_vars), affine(sl.upper, loop_vars)
    if start is None or stop is None:
        raise NestError(f"slice `{text}` is not affine in the loop variables")
    # X[i:2*i]: the width changes from one iteration to the next
    if dict(start.terms) != dict(stop.terms):
        raise NestError(f"slice `{text}` does not have the same width in every iteration")
    size = stop.offset if start.offset == "0" else _add(stop.offset, _neg(start.offset))
    return Sub("window", text, start, size)


def access(node: cst.Subscript, loop_vars: set[str]) -> NestAccess:
    flat = flatten_subscript(node)
    if flat is None:
        raise NestError(f"`{code(node)}` indexes something that is not a named array")
    base, parts = flat
    if base.split(".")[0] in loop_vars:
        raise NestError(f"`{code(node)}` indexes a loop variable")
    return NestAccess(base, tuple(_sub(p, loop_vars) for p in parts), node)


# --------------------------------------------------------------------------- sizes


def _measured(node: cst.BaseExpression, info: ModuleInfo) -> tuple[str, int] | None:
    """(array, axis) for `len(A)`, `len(A[0])`, `A.shape[k]`, `A.size(k)`, `A.shape[k]`."""
    if isinstance(node, cst.Call) and info.builtin_name(node.func) == "len" and len(node.args) == 1:
        arg = node.args[0].value
        depth = 0
        while isinstance(arg, cst.Subscript):
            # len(A[0]) and len(A[i]) measure the second axis of a (rectangular) tensor
            if any(not isinstance(el.slice, cst.Index) for el in arg.slice):
                return None
            depth += len(arg.slice)
            arg = arg.value
        base = dotted(arg)
        return (base, depth) if base else None
    if (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "size"
            and len(node.args) == 1 and isinstance(node.args[0].value, cst.Integer)):
        base = dotted(node.func.value)
        return (base, int(node.args[0].value.evaluated_value)) if base else None
    if (isinstance(node, cst.Subscript) and len(node.slice) == 1 and isinstance(node.value, cst.Attribute)
            and node.value.attr.value == "shape" and isinstance(node.slice[0].slice, cst.Index)
            and isinstance(node.slice[0].slice.value, cst.Integer)):
        base = dotted(node.value.value)
        return (base, int(node.slice[0].slice.value.evaluated_value)) if base else None
    return None


class _Bindings(cst.CSTVisitor):
    """How many times each name is bound in a function body (any depth)."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    def _bind(self, target: cst.BaseExpression) -> None:
        if isinstance(target, cst.Name):
            self.count[target.value] = self.count.get(target.value, 0) + 1
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


@per_node
def _binding_counts(function: cst.FunctionDef) -> _Bindings:
    counter = _Bindings()
    traverse.visit(function.body, counter)
    return counter


def size_names(function: cst.FunctionDef | None, info: ModuleInfo, before: cst.CSTNode | None = None
               ) -> dict[str, tuple[tuple[str, int], ...]]:
    """Names bound once, at the top of the function (before the statement that holds the
    node `before`), to a dim of an array.

    `m = len(A)`, `n = len(A[0])`, `k = A.shape[1]`, `k = A.size(1)` and `m, n = A.shape`.
    A name bound twice is left out (which binding a loop sees would depend on the order
    of execution), and so is a size of an array that is rebound after it was measured.
    """
    if function is None or not isinstance(function.body, cst.IndentedBlock):
        return {}
    counter = _binding_counts(function)
    out: dict[str, tuple[tuple[str, int], ...]] = {}
    bound_at: dict[str, int] = {}  # top-level statement that binds a name (when it is bound once)

    def stable(base: str, k: int) -> bool:
        root = base.split(".")[0]
        return counter.count.get(root, 0) == 0 or (counter.count.get(root) == 1 and bound_at.get(root, k) < k)

    stop = top_statement_index(function, before) if before is not None else None
    for k, stmt in enumerate(function.body.body):
        if k == stop:
            break  # statements from the loop's on may run after it
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            continue
        small = stmt.body[0]
        if not isinstance(small, cst.Assign) or len(small.targets) != 1:
            continue
        target, value = small.targets[0].target, small.value
        if isinstance(target, cst.Name):
            bound_at.setdefault(target.value, k)
            found = _measured(value, info)
            if found and counter.count.get(target.value) == 1 and stable(found[0], k):
                out[target.value] = (found,)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                if isinstance(el.value, cst.Name):
                    bound_at.setdefault(el.value.value, k)
            if isinstance(value, cst.Call) and not value.args and isinstance(value.func, cst.Attribute) \
                    and value.func.attr.value == "size":
                value = value.func
            if not (isinstance(value, cst.Attribute) and value.attr.value == "shape"):
                continue
            base = dotted(value.value)
            if base is None or any(isinstance(el, cst.StarredElement) for el in target.elements) \
                    or not stable(base, k):
                continue
            for axis, el in enumerate(target.elements):
                if isinstance(el.value, cst.Name) and counter.count.get(el.value.value) == 1:
                    out[el.value.value] = ((base, axis),)
    return out


def measures(node: cst.BaseExpression, info: ModuleInfo, sizes: dict) -> tuple[tuple[str, int], ...]:
    """The array dims an extent or a size expression is known to equal."""
    found = _measured(node, info)
    if found is not None:
        return (found,)
    if isinstance(node, cst.Name):
        return sizes.get(node.value, ())
    return ()


# --------------------------------------------------------------------------- the builder


def _only(stmt: cst.BaseStatement) -> cst.BaseSmallStatement | None:
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        return stmt.body[0]
    return None


def _number(node: cst.BaseExpression | None) -> bool:
    if isinstance(node, (cst.Integer, cst.Float)):
        return True
    return (isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus)
            and isinstance(node.expression, (cst.Integer, cst.Float)))


def _level(node: cst.For, info: ModuleInfo, sizes: dict, outer: list[str], bound: set[str]) -> Level:
    if node.orelse is not None:
        raise NestError("`for ... else` in the nest")
    if node.asynchronous is not None:
        raise NestError("async for")
    if isinstance(node.iter, cst.Call):
        used = set().union(*(names_in(a.value) for a in node.iter.args)) if node.iter.args else set()
        # range(i) or range(i, n) inside `for i`: a triangular nest, not a rectangular one
        if used & set(outer):
            raise NestError(f"range `{code(node.iter)}` depends on an outer index (a triangular nest)")
        if used & bound:
            raise NestError(f"range `{code(node.iter)}` is computed inside the nest")
    lengths = {name: dims[0][0] for name, dims in sizes.items() if dims[0][1] == 0}
    try:
        dom = build_domain(node.target, node.iter, info, lengths)
    except DomainError as exc:
        raise NestError(str(exc)) from None
    if dom.kind != "range" or dom.index is None:
        raise NestError(f"`{code(node.iter)}` is not a `range(...)` over an index")
    # range(1, n), range(0, n, 2): a whole-array rewrite touches elements the loop skips
    if not dom.full:
        raise NestError("partial or strided range: a whole-array rewrite would touch elements the loop skips")
    assert isinstance(node.iter, cst.Call)
    stop = node.iter.args[0].value
    return Level(dom.index, code(stop), measures(stop, info, sizes), node)


class _Reads(cst.CSTVisitor):
    """Accesses and loose index uses in a value expression."""

    def __init__(self, loop_vars: set[str]) -> None:
        self.loop_vars = loop_vars
        self.accesses: list[NestAccess] = []
        self.index_values: list[str] = []

    def visit_Lambda(self, node) -> bool:
        return False

    def visit_Subscript(self, node: cst.Subscript) -> bool:
        if names_in(node) & self.loop_vars:
            self.accesses.append(access(node, self.loop_vars))
            return False
        return False  # an invariant subscript: nothing inside moves with the loop

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        traverse.visit(node.value, self)
        return False

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.loop_vars:
            self.index_values.append(node.value)


def _reads(value: cst.BaseExpression, loop_vars: set[str]) -> tuple[list[NestAccess], list[str]]:
    visitor = _Reads(loop_vars)
    traverse.visit(value, visitor)
    return visitor.accesses, visitor.index_values


_LAST: list = [None, None, None]  # (loop, info, Nest or NestError) of the last call


def build_nest(loop: Loop, info: ModuleInfo) -> Nest:
    """The nest rooted at `loop` (an outermost `for`), or NestError saying why it is not one.
    The four nest patterns ask in turn about the same loop: the last answer is kept (a
    `Nest` is frozen)."""
    last, last_info, result = _LAST
    if last is not loop or last_info is not info:
        try:
            result = _build_nest(loop, info)
        except NestError as exc:
            result = exc
        _LAST[:] = [loop, info, result]
    if isinstance(result, NestError):
        raise NestError(str(result))
    return result


def _build_nest(loop: Loop, info: ModuleInfo) -> Nest:
    if loop.kind != "for":
        raise NestError("not a for loop")
    # break/continue/return anywhere in the nest: not every iteration runs
    stops = {c.replace("inner-", "") for c in loop.control}
    if stops:
        raise NestError(f"`{sorted(stops)[0]}` in the nest")
    # print, random draws, appends: running once is not running every iteration
    if loop.side_effects:
        raise NestError(f"side effect: {loop.side_effects[0]}")
    if loop.appends:
        raise NestError(f"side effect: appends to `{loop.appends[0].target}`")
    sizes = size_names(loop.function, info, loop.node)
    levels: list[Level] = []
    node: cst.For = loop.node  # type: ignore[assignment]
    scalar = scalar_init = scalar_stmt = store_stmt = None
    free_depth = None
    bound = set(loop.assigned)
    while True:
        levels.append(_level(node, info, sizes, [lv.var for lv in levels], bound))
        body = list(node.body.body) if isinstance(node.body, cst.IndentedBlock) else []
        if len(body) == 1 and isinstance(body[0], cst.For):
            node = body[0]
            continue
        if len(body) == 3 and isinstance(body[1], cst.For) and scalar is None:
            init = _only(body[0])
            if not (isinstance(init, cst.Assign) and len(init.targets) == 1
                    and isinstance(init.targets[0].target, cst.Name) and _number(init.value)):
                raise NestError("statements between the loops other than `acc = <number>`")
            scalar, scalar_init, scalar_stmt, store_stmt = init.targets[0].target.value, init.value, body[0], body[2]
            free_depth = len(levels)
            node = body[1]
            continue
        if len(body) != 1:
            raise NestError("the innermost loop body is not one statement" if not any(
                isinstance(s, cst.For) for s in body) else "statements between the loops")
        break
    if len(levels) > 4:
        raise NestError("more than four loops deep")
    loop_vars = {lv.var for lv in levels}
    if len(loop_vars) != len(levels):
        raise NestError("a loop variable is reused by an inner loop")
    stmt = _only(body[0])
    if stmt is None:
        raise NestError("the innermost statement is compound")
    if scalar is not None:
        return _scalar_store(loop, info, levels, loop_vars, stmt, scalar, scalar_init, scalar_stmt, store_stmt,
                             free_depth, sizes)
    if isinstance(stmt, cst.AugAssign) and isinstance(stmt.target, cst.Name):
        return _scalar_result(loop, levels, loop_vars, stmt, sizes)
    if isinstance(stmt, cst.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0].target, cst.Subscript):
        kind, target_node, value = "store", stmt.targets[0].target, stmt.value
    elif isinstance(stmt, cst.AugAssign) and isinstance(stmt.target, cst.Subscript):
        if not isinstance(stmt.operator, cst.AddAssign):
            raise NestError(f"`{code(stmt.operator).strip()}` into an element (only `+=` sums)")
        kind, target_node, value = "accumulate", stmt.target, stmt.value
    else:
        raise NestError(f"statement `{code(stmt)}` is not `out[...] = value` or `out[...] += value`")
    target = _target(target_node, loop_vars)
    reads, index_values = _reads(value, loop_vars)
    free = tuple(s.var for s in target.subs)  # type: ignore[misc]
    contracted = tuple(lv.var for lv in levels if lv.var not in free)
    # for j: out[i] = A[i, j] -- every j overwrites the same element; the last one wins
    if kind == "store" and contracted:
        raise NestError(f"`{code(target_node)}` is written by every `{contracted[0]}`: the last write wins")
    _check_reads(target.array, reads, value)
    nest = Nest(loop, tuple(levels), kind, value, tuple(reads), target, free, contracted,
                setup=loop.setup.get(target.array), sizes=sizes, index_values=tuple(dict.fromkeys(index_values)))
    _check_used(nest, contracted)
    return nest


def _target(node: cst.Subscript, loop_vars: set[str]) -> NestAccess:
    target = access(node, loop_vars)
    seen: list[str] = []
    for s in target.subs:
        # out[i, 0], out[i + 1, j], out[i, i]: not one element per combination of indices
        if s.kind != "var" or s.var in seen:
            raise NestError(f"`{code(node)}` is not indexed by distinct variables of this nest")
        seen.append(s.var)  # type: ignore[arg-type]
    return target


def _check_reads(output: str, reads: list[NestAccess], value: cst.BaseExpression) -> None:
    # out[i, j] = out[j, i] + ..., out[i] += out[i - 1]: another iteration's element is read
    for r in reads:
        if r.array == output or r.array.split(".")[0] == output.split(".")[0]:
            raise NestError(f"`{code(r.node)}` reads the array the nest writes")
    if output.split(".")[0] in names_in(value):
        raise NestError(f"the value reads `{output}`, which the nest writes")


def _check_used(nest: Nest, contracted: tuple[str, ...]) -> None:
    # a loop variable or `acc` read after the nest would see the value of the last iteration
    leaked = sorted(nest.loop.used_after - ({nest.scalar} if nest.scalar_result else set()))
    if leaked:
        raise NestError(f"`{leaked[0]}` is bound in the nest and used after it")
    used = {v for r in nest.reads + nest.finish_reads for v in r.vars} | set(nest.index_values)
    for var in contracted:
        # for j: out[i] += A[i]: the same value is added once per j
        if var not in used:
            raise NestError(f"index `{var}` is summed over but not used: each value is added once per `{var}`")


def _scalar_store(loop, info, levels, loop_vars, stmt, scalar, scalar_init, scalar_stmt, store_stmt, free_depth,
                  sizes) -> Nest:
    if not (isinstance(stmt, cst.AugAssign) and isinstance(stmt.target, cst.Name) and stmt.target.value == scalar):
        raise NestError(f"the inner loop does not accumulate into `{scalar}`")
    if not isinstance(stmt.operator, cst.AddAssign):
        raise NestError(f"`{code(stmt.operator).strip()}` into `{scalar}` (only `+=` sums)")
    store = _only(store_stmt)
    if not (isinstance(store, cst.Assign) and len(store.targets) == 1
            and isinstance(store.targets[0].target, cst.Subscript)):
        raise NestError(f"the statement after the inner loop is not `out[...] = {scalar}`")
    target = _target(store.targets[0].target, loop_vars)
    free = tuple(s.var for s in target.subs)  # type: ignore[misc]
    outer = tuple(lv.var for lv in levels[:free_depth])
    if set(free) != set(outer):
        raise NestError(f"`{code(target.node)}` is not indexed by exactly the outer loop variables")
    value = stmt.value
    # acc += acc * x: the accumulator feeds itself
    if scalar in names_in(value):
        raise NestError(f"`{scalar}` is read in its own update")
    reads, index_values = _reads(value, loop_vars)
    finish_reads, finish_index = _reads(store.value, loop_vars)
    if scalar not in names_in(store.value):
        raise NestError(f"`{code(target.node)}` does not store `{scalar}`")
    _check_reads(target.array, reads + finish_reads, cst.Tuple([cst.Element(value), cst.Element(store.value)]))
    contracted = tuple(lv.var for lv in levels[free_depth:])
    nest = Nest(loop, tuple(levels), "scalar", value, tuple(reads), target, free, contracted, scalar, scalar_init,
                scalar_stmt, store.value, tuple(finish_reads), loop.setup.get(target.array), sizes,
                tuple(dict.fromkeys(index_values + finish_index)))
    _check_used(nest, contracted)
    return nest


def _scalar_result(loop, levels, loop_vars, stmt, sizes) -> Nest:
    name = stmt.target.value
    if not isinstance(stmt.operator, cst.AddAssign):
        raise NestError(f"`{code(stmt.operator).strip()}` into `{name}` (only `+=` sums)")
    init = loop.setup.get(name)
    # total = 0 must bind the accumulator right before the nest, to a plain number
    if init is None or init.kind != "scalar" or not _number(init.value) or init.interleaved:
        raise NestError(f"`{name}` does not start as a number right before the nest")
    value = stmt.value
    if name in names_in(value):
        raise NestError(f"`{name}` is read in its own update")
    reads, index_values = _reads(value, loop_vars)
    _check_reads(name, reads, value)
    contracted = tuple(lv.var for lv in levels)
    nest = Nest(loop, tuple(levels), "scalar", value, tuple(reads), None, (), contracted, name, init.value,
                init.statement, None, (), init, sizes, tuple(dict.fromkeys(index_values)))
    _check_used(nest, contracted)
    return nest
