"""Elementwise maps: one value per element, computed from that element alone."""

from __future__ import annotations

import libcst as cst

from loopvec.analysis.loops import Loop
from loopvec.analysis.module import only
from loopvec.assemble import collect, store
from loopvec.guards import collected_list, map_loop_problem, used_after_problem
from loopvec.lift import LiftError, LiftScope, lift, lift_temps
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite
from loopvec.analysis import traverse


class Elementwise:
    """Elementwise map loops (the catalogue's Pattern 1).

    What it rewrites:
        A loop, or a comprehension fed to `torch.tensor/stack/cat`, that computes one
        value per element from that element alone with operators, elementwise torch
        functions, tensor methods and `math.*` functions — collected with `append`, or
        stored with `out[i] = ...` into a preallocated tensor or an output argument.

    Example:
        result = []
        for x in data:
            result.append(x ** 2 + 3 * x + 1)
        result = torch.tensor(result)

    Use instead:
        result = data ** 2 + 3 * data + 1 if len(data) else torch.tensor([])
        (the `else` keeps `torch.tensor([])`'s float32 for an empty input; a preallocated
        `torch.zeros_like(x)` output keeps its dtype with `.to(x.dtype)`)

    When it declines:
        loop-carried reads (`out[i-1]`), break/return, side effects (print, random,
        appends elsewhere), partial or strided ranges, iterating a Python list, a loop
        variable used after the loop, conditions (see `where`, `boolean_mask`),
        calls the lifting table does not know, ragged results (`row[row > 0]`).
    """

    NAME = "elementwise"
    DESCRIPTION = "per-element maps (append/stack, comprehensions, out[i] = f(x[i])) -> whole-tensor expressions"
    SAFETY = SAFE
    ORDER = 10

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        problem = map_loop_problem(loop)
        if problem:
            return Decline(self.NAME, problem)
        # `x if c else 0.0`: the result dtype depends on which branch ran (see `where`)
        if _has_conditional(loop):
            return Decline(self.NAME, "conditional expression in the body (see `where`)")
        try:
            if loop.kind == "comprehension":
                return self._comprehension(loop, ctx)
            return self._for(loop, ctx)
        except LiftError as exc:
            return Decline(self.NAME, str(exc))

    # ------------------------------------------------------------------ comprehension
    def _comprehension(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        # [x for x in data if x > 0]: a filter changes the length (see boolean_mask)
        if loop.conditions:
            return Decline(self.NAME, "comprehension with a condition")
        scope = LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names))
        value = lift(loop.element, scope)
        new = collect(loop.collector, value, scope)
        return Rewrite(self.NAME, loop, (Edit(loop.collector.call, new),),
                       f"becomes `{new}`", SAFE, tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    # ------------------------------------------------------------------ for loops
    def _for(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        # total += x: a reduction, not a map (see `reduction`)
        if loop.accumulators:
            return Decline(self.NAME, "accumulates into a name (a reduction)")
        if not loop.body:
            return Decline(self.NAME, "empty or one-line body")
        last = loop.body[-1]
        temps = loop.body[:-1]
        problem = used_after_problem(loop, set())
        if problem:
            return Decline(self.NAME, problem)
        scope = LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names) | set(loop.assigned))
        if len(loop.appends) == 1 and not loop.writes and loop.appends[0].statement is only(last):
            return self._appended(loop, ctx, scope, temps)
        if len(loop.writes) == 1 and not loop.appends and _is_store(last, loop):
            return self._stored(loop, ctx, scope, temps)
        return Decline(self.NAME, "body is not temporaries followed by one append or one `out[i] = ...`")

    def _appended(self, loop, ctx, scope, temps) -> Rewrite | Decline:
        app = loop.appends[0]
        found = collected_list(loop, app.target)
        if isinstance(found, str):
            return Decline(self.NAME, found)
        init, finish = found
        lines = lift_temps(temps, scope)
        value = lift(app.value, scope)
        new = collect(finish, value, scope)
        final = f"{finish.target} = {new}" if finish.target else f"return {new}"
        edits = (
            Edit(init.statement, None),
            Edit(loop.node, "\n".join(lines) or None),
            Edit(finish.statement, final),
        )
        return Rewrite(self.NAME, loop, edits, f"becomes `{final}`", SAFE,
                       tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    def _stored(self, loop, ctx, scope, temps) -> Rewrite | Decline:
        write = loop.writes[0]
        dom = loop.domain
        # out[2*i] = ..., out[i, j] = ...: not one row per iteration
        if dom.index is None or write.index != (dom.index,):
            return Decline(self.NAME, f"`{write.array}[{', '.join(write.index)}]` is not written at the loop index")
        if write.array in scope.loop_names:
            return Decline(self.NAME, f"`{write.array}` is bound in the loop")
        init = loop.setup.get(write.array)
        lines = lift_temps(temps, scope)
        value = lift(only(loop.body[-1]).targets[0].target and only(loop.body[-1]).value, scope)
        stored = store(init, write, value, scope, loop)
        edits = [Edit(loop.node, "\n".join([*lines, stored.statement]))]
        if stored.drop_init:
            edits.insert(0, Edit(init.statement, None))
        return Rewrite(self.NAME, loop, tuple(edits), f"becomes `{stored.statement}`", SAFE,
                       tuple(dict.fromkeys(scope.assumptions)), ctx.imports)


def _has_conditional(loop: Loop) -> bool:
    found = []

    class _V(cst.CSTVisitor):
        def visit_IfExp(self, node) -> None:
            found.append(node)

    for node in (*loop.body, *([loop.element] if loop.element is not None else [])):
        traverse.visit(node, _V())
    return bool(found)


def _is_store(stmt: cst.BaseStatement, loop: Loop) -> bool:
    small = only(stmt)
    return (isinstance(small, cst.Assign) and len(small.targets) == 1
            and small.targets[0].target is loop.writes[0].node)
