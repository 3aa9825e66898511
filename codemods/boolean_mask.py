"""Filters: keep the elements a condition selects -> boolean indexing."""

from __future__ import annotations

from dataclasses import dataclass, replace

import libcst as cst

from loopvec.analysis.domain import Domain, DomainError, build_domain
from loopvec.analysis.loops import Loop, flatten_subscript
from loopvec.analysis.module import code
from loopvec.assemble import collect
from loopvec.conditions import MASK, CondLifter, conjoin, name_mask
from loopvec.guards import adjacent, between_problem, collected_list, map_loop_problem, output_read_problem, \
    used_after_problem
from loopvec.lift import LiftError, LiftScope, Lifted, as_operand, method
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite


class BooleanMask:
    """Filtering loops (the catalogue's "Masked Operations").

    What it rewrites:
        A loop that appends an element (or a value computed from it) only when a
        condition on that element holds -- `if m: out.append(x)` over `zip(data, mask)`,
        `if x > 0: out.append(x * 2)`, `if not ok: continue` before the append, nested
        `if`s, `enumerate`/`range(len(x))` forms -- then `torch.stack/tensor/cat(out)`;
        a comprehension with `if` fed to one of those; and a row-by-row walk over the
        entries of 2-D arrays (`for i ...: for j ...: if mask[i, j]: out.append(img[i, j])`,
        or `zip` of rows then `zip` of their entries), which is `img[mask.bool()]`.

    Example:
        valid = []
        for x, m in zip(data, mask):
            if m:
                valid.append(x)
        valid = torch.stack(valid)

    Use instead:
        valid = data[mask.bool()]
        (`if m:` is truthiness: a uint8/int/float mask selects its nonzero elements, NaN
        included, so the mask is `.bool()`-ed; the kept value is computed on the kept
        elements only: `torch.stack([x * 2 for x in data if x > 0])` -> `data[data > 0] * 2`;
        `torch.tensor(out)` of an empty selection is float32, so that form keeps
        `... if keep.any() else torch.tensor([])`)

    When it declines:
        break/return, side effects, random numbers, partial or strided ranges, iterating
        a Python list, a loop variable used after the loop, a condition that reads the
        list being built (`len(out) < k`), a path that appends twice or an `else` that
        appends too (see `where`), a condition that does not depend on the element,
        ragged values (`row[row > 0]`), calls the lifting table does not know.
        (`torch.stack`/`torch.cat` of an empty selection raise in the loop; the rewrite
        returns an empty tensor there, as elementwise does for an empty input.)
    """

    NAME = "boolean_mask"
    DESCRIPTION = "filters (if c: out.append(x), [x for x in data if c]) -> data[c]"
    SAFETY = SAFE
    ORDER = 6

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        try:
            if loop.kind == "comprehension":
                return self._comprehension(loop, ctx)
            return self._for(loop, ctx)
        except LiftError as exc:
            return Decline(self.NAME, str(exc))

    # ------------------------------------------------------------------ comprehension
    def _comprehension(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        problem = map_loop_problem(loop)
        if problem:
            return Decline(self.NAME, problem)
        # [x * 2 for x in data]: no filter (see elementwise)
        if not loop.conditions:
            return Decline(self.NAME, "no `if` filter")
        scope = LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names))
        keep = _mask(CondLifter(ctx, loop, scope), [(c, False) for c in loop.conditions])
        masked = CondLifter(ctx, loop, scope, mask=cst.Name(MASK))
        value = masked.top_value(loop.element, (), "collect").lifted
        new = _collect(loop.collector, value, scope, ctx.torch)
        # an expression: the mask is inlined, once per use
        _, (node,) = name_mask(loop, [cst.parse_expression(new)], keep, set(), may_name=False)
        new = code(node)
        return Rewrite(self.NAME, loop, (Edit(loop.collector.call, as_operand(new)),),
                       f"becomes `{new}`", SAFE, tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    # ------------------------------------------------------------------ for loops
    def _for(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        if len(loop.body) == 1 and isinstance(loop.body[0], cst.For) and loop.domain is not None:
            return self._nested(loop, ctx)
        shape = _filter_shape(loop)
        if isinstance(shape, str):
            problem = map_loop_problem(loop)
            return Decline(self.NAME, problem or shape)
        # `if c: continue` is the filter itself; any other continue is control flow we do not model
        guarded = replace(loop, control=loop.control - {"continue"}) if shape.continues else loop
        problem = map_loop_problem(guarded) or self._common_problem(loop)
        if problem:
            return Decline(self.NAME, problem)
        return self._rewrite(loop, loop, shape, ctx)

    def _common_problem(self, loop: Loop) -> str | None:
        # total += x for the kept x: a masked reduction (see `reduction`)
        if loop.accumulators:
            return "accumulates into a name (a reduction)"
        # out[i] = x if m else out[i]: a conditional store (see `where`)
        if loop.writes:
            return "stores into a tensor (see where)"
        problem = used_after_problem(loop, set())
        if problem:
            return problem
        target = loop.appends[0].target
        # `if len(out) < k:`: which elements are kept depends on what was kept before
        problem = output_read_problem(loop, target)
        if problem:
            return problem
        found = collected_list(loop, target)
        if isinstance(found, str):
            return found
        init, finish = found
        return None

    def _rewrite(self, loop: Loop, view: Loop, shape: _Shape, ctx: PatternContext, depth: int = 1,
                 assumptions: tuple = ()) -> Rewrite | Decline:
        """Rewrite `loop` (the statements to replace) as the filter `shape` over `view`'s domain
        (the loop itself, or the two loops of a 2-D walk seen as one walk over entries)."""
        target = loop.appends[0].target
        init, finish = loop.setup[target], loop.finish[target]
        emitted = {name for name, _ in (*shape.temps, *shape.kept_temps)}
        problem = between_problem(loop, finish, emitted)
        if problem:
            return Decline(self.NAME, problem)
        scope = LiftScope.for_loop(ctx.info, ctx.torch, view.domain,
                                   set(view.domain.names) | set(loop.assigned))
        scope.assumptions += assumptions
        full = CondLifter(ctx, view, scope)
        full.depth = depth
        lines = []
        for name, value in shape.temps:
            val = full.value(value)
            if val.lifted.batched:
                # computed for every element in the loop too: a whole-array temporary
                lines.append(f"{name} = {val.lifted.code}")
                scope.temps[name] = Lifted(cst.Name(name), True, val.lifted.kind, fresh=val.lifted.fresh)
                full.full_temps.add(name)
            else:
                scope.temps[name] = val.lifted
            full.sigs[name] = val.sig
            full.leaves[name] = val.info
        keep = _mask(full, shape.filters)
        masked = CondLifter(ctx, view, scope, mask=cst.Name(MASK))
        masked.sigs, masked.full_temps, masked.leaves = full.sigs, full.full_temps, full.leaves
        kept = []
        for name, value in shape.kept_temps:
            # computed only for the kept elements: a temporary over the masked arrays
            val = masked.value(value)
            masked.full_temps.discard(name)
            masked.sigs[name] = val.sig
            masked.leaves[name] = val.info
            if val.lifted.batched:
                kept.append(cst.parse_statement(f"{name} = {val.lifted.code}\n"))
                scope.temps[name] = Lifted(cst.Name(name), True, val.lifted.kind, fresh=val.lifted.fresh)
            else:
                scope.temps[name] = val.lifted
        value = masked.top_value(shape.value, (), "collect").lifted
        new = _collect(finish, value, scope, ctx.torch)
        final = cst.parse_statement(f"{finish.target} = {new}\n" if finish.target else f"return {new}\n")
        # another rewrite between the loop and the finish may name its own mask `keep` too
        mask_lines, nodes = name_mask(loop, [*kept, final], keep, set(), may_name=adjacent(loop, finish))
        final_code = code(nodes[-1])
        edits = (
            Edit(init.statement, None),
            Edit(loop.node, "\n".join(lines + mask_lines + [code(n) for n in nodes[:-1]]) or None),
            Edit(finish.statement, final_code),
        )
        return Rewrite(self.NAME, loop, edits, f"becomes `{final_code}`", SAFE,
                       tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    # ------------------------------------------------------------------ 2-D walks
    def _nested(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        """`for i ...: for j ...: if mask[i, j]: out.append(img[i, j])` walks the entries of
        2-D arrays row by row, the order boolean indexing with a 2-D mask keeps."""
        inner = loop.body[0]
        # break/else in the inner loop, a third loop: not one walk over entries
        if inner.orelse is not None or len(loop.nested) != 1 or "inner-break" in loop.control:
            return Decline(self.NAME, "nested loop that is not a walk over the entries of 2-D arrays")
        if len(loop.appends) != 1:
            return Decline(self.NAME, "not exactly one append")
        walk = _entries(loop, inner, ctx)
        if isinstance(walk, str):
            return Decline(self.NAME, walk)
        body, view, assumptions = walk
        shape = _shape_of(body, loop.appends[0].target)
        if isinstance(shape, str):
            return Decline(self.NAME, shape)
        control = loop.control - {"inner-continue"} if shape.continues else loop.control
        problem = map_loop_problem(replace(loop, control=control), allow_nested=True) or self._common_problem(loop)
        if problem:
            return Decline(self.NAME, problem)
        result = self._rewrite(loop, view, shape, ctx, depth=2, assumptions=assumptions)
        # the entries' stand-in names back to the source's `a[i, j]`
        shown = {name: f"{array}[{loop.domain.index}, {inner.target.value}]" if loop.domain.index else name
                 for name, array in view.domain.elements}

        def show(text: str) -> str:
            for name, source in shown.items():
                text = text.replace(name, source)
            return text

        if isinstance(result, Decline):
            return Decline(self.NAME, show(result.reason))
        # a.shape[:2] == b.shape[:2] says more than len(a) == len(b)
        kept = tuple(show(a) for a in result.assumptions if not a.startswith("len("))
        return replace(result, assumptions=kept)


def _entries(loop: Loop, inner: cst.For, ctx: PatternContext):
    """A 2-D walk seen as one walk over entries: (inner body with `a[i, j]`, `a[i][j]` as
    element names, a Loop whose domain binds each element name to its whole 2-D array, the
    assumptions it takes) or why not."""
    outer = loop.domain
    try:
        dom = build_domain(inner.target, inner.iter, ctx.info, {})
    except DomainError as exc:
        return str(exc)
    if not outer.full or not dom.full:
        return "partial or strided range: a whole-array rewrite would touch elements the loop skips"
    elements: dict[str, str] = {}
    assumptions: list[str] = []
    body = list(inner.body.body)
    if outer.index is not None and dom.index is not None and not outer.elements and not dom.elements:
        # for i in range(a.shape[0]): for j in range(a.shape[1]): ... a[i, j] ...
        if not outer.arrays:
            return "the row range is not measured from an array"
        first = outer.arrays[0]
        if dom.extent not in (f"{first}.shape[1]", f"{first}.size(1)", f"len({first}[{outer.index}])",
                              f"len({first}[0])") and _second_dims(loop).get(dom.extent) != first:
            return "the inner range does not walk the second dimension of the rows' array"
        pairs = _Pairs(outer.index, dom.index)
        body = [stmt.visit(pairs) for stmt in body]
        if pairs.problem:
            return pairs.problem
        elements = pairs.names
        if not elements:
            return "no array is read at [i, j]"
        assumptions += [f"{a}.shape[:2] == {first}.shape[:2]" for a in sorted(set(elements.values()) - {first})]
    elif outer.index is None and dom.index is None and outer.elements and dom.elements:
        # for row, mrow in zip(x, mask): for v, m in zip(row, mrow): ...
        rows = dict(outer.elements)
        for name, array in dom.elements:
            if array not in rows:
                return f"the inner loop walks `{array}`, not a row of the outer loop"
            elements[name] = rows[array]
        if len(set(dom.arrays)) != len(dom.arrays):
            return "the inner loop walks one row twice"
        first = next(iter(elements.values()))
        assumptions += [f"{a}.shape[:2] == {first}.shape[:2]" for a in sorted(set(elements.values()) - {first})]
    else:
        return "nested loop that is not a walk over the entries of 2-D arrays"
    arrays = tuple(dict.fromkeys(elements.values()))
    view_dom = Domain("iter", None, tuple(elements.items()), arrays, f"len({arrays[0]})", True)
    return body, replace(loop, domain=view_dom), tuple(assumptions)


def _second_dims(loop: Loop) -> dict[str, str]:
    """Names bound to an array's second dimension at the top of the function:
    `h, w = img.shape`, `w = img.shape[1]`, `w = img.size(1)`."""
    out: dict[str, str] = {}
    fn = loop.function
    body = fn.body.body if fn is not None and isinstance(fn.body, cst.IndentedBlock) else ()
    for stmt in body:
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 else None
        if not (isinstance(small, cst.Assign) and len(small.targets) == 1):
            continue
        target, value = small.targets[0].target, small.value
        unpacks = isinstance(target, (cst.Tuple, cst.List)) and len(target.elements) >= 2 and not any(
            isinstance(e, cst.StarredElement) for e in target.elements)
        if (unpacks and isinstance(target.elements[1].value, cst.Name) and isinstance(value, cst.Attribute)
                and value.attr.value == "shape"):
            out[target.elements[1].value.value] = code(value.value)
        elif isinstance(target, cst.Name) and code(value).endswith((".shape[1]", ".size(1)")):
            out[target.value] = code(value).rsplit(".", 1)[0]
    return out


class _Pairs(cst.CSTTransformer):
    """`a[i, j]` and `a[i][j]` -> one element name per array; any other use of i or j is a problem."""

    def __init__(self, i: str, j: str) -> None:
        self.i, self.j = i, j
        self.names: dict[str, str] = {}
        self.problem: str | None = None

        self.replaced: dict[int, cst.Name] = {}

    def visit_Subscript(self, node: cst.Subscript) -> bool:
        flat = flatten_subscript(node)
        if flat is None:
            return True
        base, parts = flat
        names = [p.value.value if isinstance(p, cst.Index) and isinstance(p.value, cst.Name) else None
                 for p in parts]
        if names == [self.i, self.j]:
            element = f"{base.replace('.', '_')}__ij"
            self.names[element] = base
            self.replaced[id(node)] = cst.Name(element)
            return False
        return True

    def leave_Subscript(self, original_node, updated_node):
        return self.replaced.get(id(original_node), updated_node)

    def leave_Name(self, original_node, updated_node):
        if original_node.value in (self.i, self.j):
            self.problem = self.problem or f"`{original_node.value}` is used other than as `a[i, j]`"
        return updated_node


def _mask(lifter: CondLifter, filters) -> Lifted:
    """The conjunction of the filters, each lifted where the earlier ones hold."""
    path: tuple = ()
    for test, skip in filters:
        pred = lifter.predicate(test, path)
        path = (*path, lifter.neg(pred) if skip else pred)
        # data[keep] selects rows only for a 1-D keep: `if m:` on a [1]-shaped m works per element
        problem = lifter.one_per_element(lifter.leaf_info(test), f"`{code(test)}`")
        if problem:
            lifter.scope.assumptions.append(problem)
    return conjoin(path)


def _collect(finish, value: Lifted, scope: LiftScope, torch: str) -> str:
    """The expression equal to `torch.<kind>([kept values])`; MASK stands for the mask."""
    if finish.kind == "tensor" and value.kind in ("tensor", "int", "bool"):
        call = finish.call
        if any(a.keyword is None for a in call.args[1:]):
            raise LiftError("torch.tensor with extra positional arguments")
        keywords = {a.keyword.value for a in call.args[1:] if a.keyword is not None}
        if keywords - {"dtype"}:
            raise LiftError("torch.tensor with keywords other than dtype")
        if not keywords:
            # torch.tensor of 0-d tensors keeps their dtype, but of nothing is float32
            kept = value.code if value.fresh else code(method(value.node, "clone"))
            return f"{kept} if {code(method(cst.Name(MASK), 'any'))} else {torch}.tensor([])"
    return collect(finish, value, scope)


# --------------------------------------------------------------------------- body shape


@dataclass(frozen=True)
class _Shape:
    temps: tuple  # (name, value) computed for every element
    filters: tuple  # (test, skip): keep where test holds (skip=False) / does not hold (skip=True)
    kept_temps: tuple  # (name, value) computed for kept elements only
    value: cst.BaseExpression  # what is appended
    continues: bool


def _filter_shape(loop: Loop) -> _Shape | str:
    if loop.domain is None:
        return loop.domain_problem or "iteration loopvec cannot describe"
    if not loop.appends:
        return "no append"
    if len({a.target for a in loop.appends}) > 1:
        return "appends to more than one list"
    shape = _shape_of(list(loop.body), loop.appends[0].target)
    if len(loop.appends) > 1 and not isinstance(shape, str):
        return "appends more than once per element"
    return shape


def _appended(small, target: str) -> cst.BaseExpression | None:
    """The value of `target.append(value)`, if `small` is that statement."""
    if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
        func = small.value.func
        args = small.value.args
        if (isinstance(func, cst.Attribute) and func.attr.value == "append" and isinstance(func.value, cst.Name)
                and func.value.value == target and len(args) == 1 and args[0].keyword is None and not args[0].star):
            return args[0].value
    return None


def _shape_of(stmts: list, target: str) -> _Shape | str:
    """The body as: temps, then filters (`if c: continue` or an `if c:` wrapping the rest),
    then temps of the kept elements and one append to `target`; else why not."""
    temps, filters, kept = [], [], []
    continues = False
    k = 0
    while k < len(stmts):
        stmt = stmts[k]
        last = k == len(stmts) - 1
        if isinstance(stmt, cst.If):
            if stmt.orelse is not None:
                return "an `if` with `else` (see where)"
            body = list(stmt.body.body)
            if _is_continue(body):
                # kept-element temporaries would be needed for every element by this filter
                if kept:
                    return "temporaries between filters"
                filters.append((stmt.test, True))
                continues = True
                k += 1
                continue
            if not last:
                return "statements after the filtering `if`"
            if kept:
                return "temporaries between filters"
            filters.append((stmt.test, False))
            stmts, k = body, 0
            continue
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 else None
        if isinstance(small, cst.Pass):
            k += 1
            continue
        if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
            (kept if filters else temps).append((small.targets[0].target.value, small.value))
            k += 1
            continue
        value = _appended(small, target)
        if value is not None and not last:
            return "appends more than once per element"
        if value is not None:
            if not filters:
                return "no condition: every element is kept (see elementwise)"
            return _Shape(tuple(temps), tuple(filters), tuple(kept), value, continues)
        return f"statement `{code(stmt)}` in a filtering loop" if small is None else \
            f"statement `{code(small)}` in a filtering loop"
    return "the append is not the last statement"


def _is_continue(body) -> bool:
    return len(body) == 1 and isinstance(body[0], cst.SimpleStatementLine) and len(body[0].body) == 1 \
        and isinstance(body[0].body[0], cst.Continue)
