"""Conditional maps: each element takes one of several branches -> `torch.where`."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from loopvec.analysis.facts import Signature
from loopvec.analysis.loops import Access, Loop
from loopvec.analysis.module import code
from loopvec.assemble import collect, store
from loopvec.conditions import MASK, NOT_LITERAL, CondLifter, Val, conjoin, name_mask
from loopvec.guards import between_problem, collected_list, map_loop_problem, output_read_problem, used_after_problem
from loopvec.lift import LiftError, LiftScope, Lifted, as_operand, paren
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite


class Where:
    """Conditional map loops (the catalogue's Pattern 3 and "Complex Control Flow").

    What it rewrites:
        A map loop (or a comprehension fed to `torch.tensor/stack/cat`) whose value per
        element is chosen by conditions on that element: `if/elif/else` branches that each
        append once to the same list, branches that assign a temporary used afterwards,
        conditional expressions (`a if c else b`), and conditional stores into a
        preallocated, cloned or argument tensor (`if c: out[i] = a`, with or without
        `else`). Branches may compute with different functions.

    Example:
        result = []
        for x in data:
            if x > threshold:
                result.append(x * 2)
            else:
                result.append(x * 3)
        result = torch.tensor(result)

    Use instead:
        result = torch.where(data > threshold, data * 2, data * 3) if len(data) else torch.tensor([])
        (`if/elif/else` nests the `where`s; a branch that is undefined where it is not
        taken -- `y // d` under `d != 0`, `torch.log(x)` under `x > 0` -- runs on a safe
        stand-in there: `y // torch.where(d != 0, d, torch.ones_like(d))`. `if c: out[i] = a`
        becomes `out[keep] = a_on_kept.to(out.dtype)` in place, with `keep = c`; so do
        stores whose branches cannot share one `where` (different dtypes, or a condition
        on an array whose rank may differ from the values'), since masks line up by the
        leading dimension and `out[i] = v` casts each value on its own.)

    When it declines:
        break/return, side effects, random numbers, partial or strided ranges, iterating
        a Python list, a loop variable used after the loop, a condition that does not
        depend on the element, a condition that reads the output being built, a path
        that appends twice or to another list, an `if` without `else` around an append
        (a filter: see `boolean_mask`), appended branches whose dtypes may differ (`x * 2`
        vs `x / 2` is int64 vs float32 for an integer input, and `torch.tensor` of the list
        takes its dtype from the branches that ran; a hint such as
        `# loopvec: shapes data=[n]:float32` settles it), a Python number beside a tensor
        in a collected list, calls the lifting table does not know, ragged results.
    """

    NAME = "where"
    DESCRIPTION = "conditional maps (if/else appends, a if c else b, if c: out[i] = a) -> torch.where"
    SAFETY = SAFE
    ORDER = 5  # before elementwise: a conditional body is ours, with the dtype checks it needs

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        problem = map_loop_problem(loop)
        if problem:
            return Decline(self.NAME, problem)
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
            return Decline(self.NAME, "comprehension with an `if` filter (see boolean_mask)")
        scope = LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names))
        lifter = CondLifter(ctx, loop, scope)
        # no conditional expression: a plain map (see elementwise)
        if not lifter.has_condition(loop.element):
            return Decline(self.NAME, "no condition in the element")
        value = lifter.top_value(loop.element, (), "collect")
        new = collect(loop.collector, value.lifted, scope)
        return Rewrite(self.NAME, loop, (Edit(loop.collector.call, as_operand(new)),),
                       f"becomes `{new}`", SAFE, tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    # ------------------------------------------------------------------ for loops
    def _for(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        # total += x if x > 0 else 0: a reduction (see `reduction`)
        if loop.accumulators:
            return Decline(self.NAME, "accumulates into a name (a reduction)")
        problem = used_after_problem(loop, set())
        if problem:
            return Decline(self.NAME, problem)
        # out.append(x) and out2[i] = y: one loop, two outputs
        outputs = {a.target for a in loop.appends} | {w.array for w in loop.writes}
        if len(outputs) != 1:
            return Decline(self.NAME, "not exactly one output (one list or one tensor)")
        output = outputs.pop()
        # `if len(out) < k`, `out[i - 1]`, `out.sum()`: the condition reads what is being built
        problem = output_read_problem(loop, output)
        if problem:
            return Decline(self.NAME, problem)
        scope = LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names) | set(loop.assigned))
        lifter = CondLifter(ctx, loop, scope)
        # no if-statement and no `a if c else b`: a plain map (see elementwise)
        if not any(isinstance(s, cst.If) for s in loop.body) and not lifter.has_condition(loop.node.body):
            return Decline(self.NAME, "no condition in the body")
        walker = _Walker(lifter, loop)
        try:
            state = walker.run(loop.body, _State({}, None), (), top=True)
        except LiftError as exc:
            raise LiftError(lifter.explain(exc)) from None
        effect = state.effect
        if effect is None:
            return Decline(self.NAME, "no path appends or stores")
        if effect.kind == "append":
            return self._appended(loop, ctx, scope, walker, effect)
        return self._stored(loop, ctx, scope, walker, effect)

    def _appended(self, loop, ctx, scope, walker, effect) -> Rewrite | Decline:
        found = collected_list(loop, effect.target)
        if isinstance(found, str):
            return Decline(self.NAME, found)
        init, finish = found
        # `if c: out.append(x)` with no else: fewer elements than iterations (see boolean_mask)
        if effect.full is None:
            return Decline(self.NAME, effect.reason or "appends on some paths only: a filter (see boolean_mask)")
        problem = between_problem(loop, finish, {line.split(" = ")[0] for line in walker.lines})
        if problem:
            return Decline(self.NAME, problem)
        new = collect(finish, effect.full.lifted, scope)
        final = f"{finish.target} = {new}" if finish.target else f"return {new}"
        edits = (
            Edit(init.statement, None),
            Edit(loop.node, "\n".join(walker.lines) or None),
            Edit(finish.statement, final),
        )
        return Rewrite(self.NAME, loop, edits, f"becomes `{final}`", SAFE,
                       tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    def _stored(self, loop, ctx, scope, walker, effect) -> Rewrite | Decline:
        write = effect.write
        out = write.array
        init = loop.setup.get(out)
        if write.array in scope.loop_names:
            return Decline(self.NAME, f"`{out}` is bound in the loop")
        lines = list(walker.lines)
        if effect.full is not None:
            stored = store(init, write, effect.full.lifted, scope, loop)
            lines.append(stored.statement)
            edits = [Edit(loop.node, "\n".join(lines))]
            if stored.drop_init:
                edits.insert(0, Edit(init.statement, None))
            return Rewrite(self.NAME, loop, tuple(edits), f"becomes `{stored.statement}`", SAFE,
                           tuple(dict.fromkeys(scope.assumptions)), ctx.imports)
        # some paths keep out[i] as it was: write only where a branch stored, in place
        if init is None or init.kind not in ("like", "alloc", "clone", "param"):
            return Decline(self.NAME, f"`{out}` is not a tensor allocated, cloned or passed in before the loop")
        # a second masked store would see the first one's writes through the condition
        if len(effect.leaves) > 1 and any(r.array == out for r in loop.reads):
            return Decline(self.NAME, f"conditions or values read `{out}` while several branches store into it")
        dom = loop.domain
        covers = out in dom.arrays or (init.kind in ("like", "clone") and init.ref in dom.arrays) or (
            bool(dom.arrays) and f"len({out}) == len({dom.arrays[0]})" in scope.assumptions)
        target = out if covers else f"{out}[:{dom.extent}]"
        taken: set[str] = set()
        named: dict[str, cst.Name] = {}
        for leaf in effect.leaves:
            lines += self._masked_store(loop, ctx, scope, walker.l, leaf, out, init, target, taken, named)
        last = lines[-1].replace("\n    ", " ")
        return Rewrite(self.NAME, loop, (Edit(loop.node, "\n".join(lines)),), f"becomes `{last}`", SAFE,
                       tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    def _masked_store(self, loop, ctx, scope, lifter, leaf, out: str, init, target: str, taken: set[str],
                      named) -> list[str]:
        """`out[keep] = value computed on the kept elements only` for one storing path."""
        pred = Lifted(leaf.pred.node.visit(_Rename(named)), True, "bool")
        problem = lifter.one_per_element(leaf.info, "each condition")
        if problem:
            scope.assumptions.append(problem)
        if not leaf.val.lifted.batched:
            value = leaf.val.literal
            rhs = leaf.val.lifted.code
            if value is NOT_LITERAL and not _python_scalar_param(loop, ctx.info, leaf.node):
                # out[keep] = row raises for a row of another dtype; out[i] = row casts it
                rhs = f"{ctx.torch}.as_tensor({rhs}, dtype={out}.dtype, device={out}.device)"
            statement = cst.parse_statement(f"{target}[{MASK}] = {rhs}\n")
            if isinstance(value, int) and -128 <= value <= 127 or isinstance(value, float) and 0 <= value <= 127:
                lines, (statement,) = name_mask(loop, [statement], pred, taken)
                return [*lines, code(statement)]
            # out[keep] = low raises for a uint8 `out` and low = -0.25 even where nothing is
            # kept; the loop raises only when it stores: store only when something is kept
            lines, (statement,) = name_mask(loop, [statement], pred, taken, extra_uses=1)
            keep = lines[0].split(" = ")[0] if lines else code(paren(pred.node))
            return [*lines, f"if {keep}.any():\n    {code(statement)}"]
        saved = lifter.snapshot()
        lifter.restore(leaf.saved)
        masked = CondLifter(ctx, loop, scope, mask=cst.Name(MASK))
        masked.sigs, masked.full_temps, masked.leaves = dict(lifter.sigs), set(lifter.full_temps), lifter.leaves
        try:
            value = masked.top_value(leaf.node, (), "store")
            rhs = value.lifted.node
        except LiftError:
            # computed on every element (guarded where the path does not hold), then masked
            value = leaf.val
            rhs = cst.Subscript(value=paren(leaf.val.lifted.node),
                                slice=[cst.SubscriptElement(cst.Index(cst.Name(MASK)))])
        finally:
            lifter.restore(saved)
        # out[keep] = v raises unless v has out's dtype (out[i] = v casts): cast unless it has
        same = init is not None and init.kind in ("like", "clone") and init.ref is not None \
            and not _has_dtype_keyword(init) and value.sig == ("sym", "id", frozenset({init.ref}))
        rhs_code = code(rhs) if same else f"{code(paren(rhs))}.to({out}.dtype)"
        statement = cst.parse_statement(f"{target}[{MASK}] = {rhs_code}\n")
        lines, (statement,) = name_mask(loop, [statement], pred, taken)
        if lines:
            named[code(leaf.pred.node)] = cst.Name(lines[0].split(" = ")[0])
        return [*lines, code(statement)]


def _has_dtype_keyword(init) -> bool:
    value = init.value
    return isinstance(value, cst.Call) and any(a.keyword is not None and a.keyword.value == "dtype"
                                               for a in value.args)


def _python_scalar_param(loop: Loop, info, node: cst.BaseExpression) -> bool:
    """`node` is a parameter declared a Python number (`k: float`, or `k=float` in a hint)."""
    return isinstance(node, cst.Name) and Signature(info, loop.function).scalar(node.value) is not None


class _Rename(cst.CSTTransformer):
    """Sub-conditions that already have a name (`~keep` for the else branch of `keep`)."""

    def __init__(self, named: dict[str, cst.Name]) -> None:
        self.named = named

    def on_leave(self, original_node, updated_node):
        if self.named and isinstance(original_node, cst.BaseExpression):
            name = self.named.get(code(original_node.with_changes(lpar=[], rpar=[])) if original_node.lpar
                                  else code(original_node))
            if name is not None:
                return name
        return updated_node


# --------------------------------------------------------------------------- the body walker


@dataclass(frozen=True)
class _Leaf:
    """One path that appends or stores: its condition, value, source and the temps it saw."""

    pred: Lifted | None
    val: Val
    node: cst.BaseExpression
    saved: tuple
    info: tuple = (frozenset(), True)  # leaf info of the conditions on the path


@dataclass
class _Effect:
    kind: str  # append | store
    target: str
    write: Access | None
    full: Val | None  # the value on every path, merged; None if some path skips it
    leaves: list = field(default_factory=list)  # one _Leaf per path that appends or stores
    reason: str | None = None  # why `full` is None


@dataclass
class _State:
    env: dict  # temp name -> Val (None: not defined on every path)
    effect: _Effect | None


class _Walker:
    """Walks a loop body path by path; straight-line temporaries at the top become
    whole-array statements (`lines`), branch temporaries are merged with `torch.where`."""

    def __init__(self, lifter: CondLifter, loop: Loop) -> None:
        self.l = lifter
        self.loop = loop
        self.lines: list[str] = []

    def run(self, stmts, state: _State, path: tuple, top: bool) -> _State:
        for stmt in stmts:
            if isinstance(stmt, cst.If):
                state = self._if(stmt, state, path, top)
                continue
            if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
                raise LiftError("compound statement in the loop body")
            small = stmt.body[0]
            if isinstance(small, cst.Pass):
                continue
            if isinstance(small, cst.Assign) and len(small.targets) == 1:
                target = small.targets[0].target
                if isinstance(target, cst.Name):
                    self._bind(target.value, self.l.value(small.value, path), state, top)
                    continue
                if isinstance(target, cst.Subscript):
                    state = self._store(target, small.value, state, path)
                    continue
            if isinstance(small, cst.Expr):
                app = next((a for a in self.loop.appends if a.statement is small), None)
                if app is not None:
                    self._effect(state, "append", app, app.value, path)
                    continue
            raise LiftError(f"statement `{code(small)}` in the loop body")
        return state

    def _store(self, target: cst.Subscript, value: cst.BaseExpression, state: _State, path: tuple) -> _State:
        """`out[i] = a if c else b` is `if c: out[i] = a else: out[i] = b`: when the branches
        cannot share one `torch.where`, each still gets a masked store of its own."""
        if isinstance(value, cst.IfExp) and self.l.batched(value.test):
            test = self.l.predicate(value.test, path)
            branches = []
            for branch, pred in ((value.body, test), (value.orelse, self.l.neg(test))):
                saved = self.l.snapshot()
                inner = self._store(target, branch, _State(dict(state.env), state.effect), (*path, pred))
                self.l.restore(saved)
                branches.append(inner)
            return self._merge(test, state, *branches)
        self._effect(state, "store", self._write(target), value, path)
        return state

    def _write(self, target: cst.Subscript) -> Access:
        write = next(w for w in self.loop.writes if w.node is target)
        dom = self.loop.domain
        # out[2*i] = ..., out[i, j] = ...: not one row per iteration
        if dom.index is None or write.index != (dom.index,):
            raise LiftError(f"`{code(target)}` is not written at the loop index")
        return write

    def _effect(self, state: _State, kind: str, what, value: cst.BaseExpression, path: tuple) -> None:
        # out.append(a); out.append(b): two elements per iteration
        if state.effect is not None:
            raise LiftError("a path appends or stores more than once")
        val = self.l.top_value(value, path, "collect" if kind == "append" else "store")
        target = what.target if kind == "append" else what.array
        write = what if kind == "store" else None
        state.effect = _Effect(kind, target, write, val, [_Leaf(conjoin(path), val, value, self.l.snapshot(),
                                                                          self.l.path_info(path))])

    def _bind(self, name: str, val: Val, state: _State, top: bool) -> None:
        scope = self.l.scope
        self.l.full_temps.discard(name)
        self.l.unmerged.pop(name, None)
        self.l.leaves[name] = val.info
        if top and val.lifted.batched:
            self.lines.append(f"{name} = {val.lifted.code}")
            lifted = Lifted(cst.Name(name), True, val.lifted.kind, fresh=val.lifted.fresh)
            val = Val(lifted, val.sig, name, info=val.info)
        if val.lifted.batched:
            self.l.full_temps.add(name)
        scope.temps[name] = val.lifted
        self.l.sigs[name] = val.sig
        state.env[name] = val

    def _branch(self, stmts, state: _State, path: tuple) -> _State:
        saved = self.l.snapshot()
        out = self.run(stmts, _State(dict(state.env), state.effect), path, top=False)
        self.l.restore(saved)
        return out

    def _if(self, stmt: cst.If, state: _State, path: tuple, top: bool) -> _State:
        test = self.l.predicate(stmt.test, path)
        then = self._branch(stmt.body.body, state, (*path, test))
        orelse = stmt.orelse
        rest = [] if orelse is None else [orelse] if isinstance(orelse, cst.If) else list(orelse.body.body)
        other = self._branch(rest, state, (*path, self.l.neg(test)))
        return self._merge(test, state, then, other)

    def _merge(self, test: Lifted, before: _State, a: _State, b: _State) -> _State:
        scope = self.l.scope
        env = dict(before.env)
        for name in set(a.env) | set(b.env):
            va, vb = a.env.get(name), b.env.get(name)
            if va is before.env.get(name) and vb is before.env.get(name):
                continue
            merged = None
            if va is not None and vb is not None:
                try:
                    merged = va if va is vb else self.l.merge(test, va, vb, "inner")
                except LiftError as exc:
                    self.l.unmerged[name] = str(exc)
            env[name] = merged
            self.l.full_temps.discard(name)
            if merged is None:
                # read later, it would be the value of an earlier iteration on some path
                scope.temps.pop(name, None)
                self.l.sigs.pop(name, None)
            else:
                scope.temps[name] = merged.lifted
                self.l.sigs[name] = merged.sig
                self.l.leaves[name] = merged.info
                self.l.full_temps.add(name)
        return _State(env, self._merge_effect(test, before.effect, a.effect, b.effect))

    def _merge_effect(self, test: Lifted, before, a: _Effect | None, b: _Effect | None) -> _Effect | None:
        if before is not None and (a is not before or b is not before):
            raise LiftError("a path appends or stores more than once")
        if a is None and b is None:
            return None
        if a is not None and b is not None:
            if (a.kind, a.target) != (b.kind, b.target):
                raise LiftError(f"branches write different outputs (`{a.target}`, `{b.target}`)")
            leaves = a.leaves + b.leaves
            full, reason = None, a.reason or b.reason
            if a.full is not None and b.full is not None:
                context = "collect" if a.kind == "append" else "store"
                try:
                    full = self.l.merge(test, a.full, b.full, context)
                except LiftError as exc:
                    if a.kind == "append":
                        raise
                    reason = str(exc)
            return _Effect(a.kind, a.target, a.write or b.write, full, leaves, reason)
        one = a if a is not None else b
        if one.kind == "append":
            raise LiftError("appends on some paths only: a filter (see boolean_mask)")
        return _Effect(one.kind, one.target, one.write, None, one.leaves, "stores on some paths only")
