"""Reductions: loops that fold every element into one value (sums, products, counts,
running max/min and their index, any/all flags) and row-wise reductions collected into
a tensor."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from loopvec import exprs
from loopvec.analysis.facts import Signature
from loopvec.analysis.loops import Loop, find_setup, names_in
from loopvec.analysis.module import code, fresh_name, number_value, only, used_names
from loopvec.assemble import collect
from loopvec.guards import body_problem, collected_list, used_after_problem
from loopvec.lift import ROW_REDUCTION_DTYPE, ROW_REDUCTIONS, Lifted, LiftError, LiftScope, \
    is_predicate, lift, lift_temps
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite

from ._reduce_ops import DtypeClasses, is_atom, nonempty
from loopvec.analysis import traverse

_OPS = {"AddAssign": "+", "SubtractAssign": "-", "MultiplyAssign": "*"}
_FOLD = {"+": "sum", "-": "sum", "*": "prod"}
_IDENTITY = {"+": 0, "-": 0, "*": 1}
# tensors a loop may accumulate into in place (`acc += row`): fresh, so no one else sees them
_INPLACE_INITS = {"alloc", "like", "clone", "scalar-tensor"}

# full reductions of one row -> the same reduction of every row over dim 1
_INF_CALLS = {"math.inf", "torch.inf", "numpy.inf"}


class Reduction:
    """Reduction loops (the catalogue's Pattern 4).

    What it rewrites:
        * `total = 0` then `total += v` / `-= v` / `*= v` for every element (sums, dot
          products, sums of expressions, products), optionally `mean = total / len(x)`
          right after the loop;
        * `acc = torch.zeros(d)` then `acc += row` (column sums into a fresh tensor);
        * `if cond: count += 1` (counts) and `if cond: total += v` (masked sums);
        * `if v > best: best = v` (or `best = max(best, v)`), optionally with
          `best_i = i`: running max/min and argmax/argmin;
        * `found = False` then `if cond: found = True` (any/all flags, `break` allowed);
        * `torch.stack/tensor([row.mean() for row in X])` and the same as an append loop:
          row-wise reductions.

    Example:
        total = 0
        for x in data:
            total += x ** 2
        mean_square = total / len(data)

    Use instead:
        mean_square = (data ** 2).mean(0)      # when a hint or annotation says data is floating
        total = (data ** 2).sum(0) if len(data) else 0
        Without a dtype the fold keeps the loop's: `0 + x` is uint8 for uint8 x (and wraps)
        but int64 for bool x, so the sum becomes
        `t.sum(0, dtype=torch.result_type(t, 0))`; an empty loop leaves the Python start;
        a running max becomes a masked `.max()` and the first index reaching it (NaN never
        wins a `>`), returned as `data[k]` like the loop's element; rows reduce as
        `X.reshape(len(X), -1).mean(1)` unless the rank is known (`X.mean(1)`).

    When it declines:
        `break` (except in a flag), partial or strided ranges, Python lists, an
        accumulator read in the loop (`total += x * total`) or by another one, random
        numbers or other side effects, `/=` and other non-associative chains, Python-int
        accumulation (unbounded, unlike an int64 sum), accumulators that do not start as
        a number or a fresh tensor, `max(v, best)` (it keeps NaN), a running max from a
        tensor of unknown dtype, row reductions whose result meets other per-row values,
        tensor operands that may have more dims than one element (they would broadcast
        against the loop dimension once batched).
    """

    NAME = "reduction"
    DESCRIPTION = "accumulator loops (sum/prod/mean/count/max/argmax/any) and row reductions -> torch reductions"
    SAFETY = SAFE
    ORDER = 20

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        try:
            if loop.kind == "comprehension":
                return self._comprehension(loop, ctx)
            return self._for(loop, ctx)
        except LiftError as exc:
            return Decline(self.NAME, str(exc))

    # ------------------------------------------------------------------ guards
    def _problem(self, loop: Loop, facts: Signature, allow: frozenset[str] = frozenset()) -> str | None:
        # iterating a generator, a dict, range(n) alone: no tensor to reduce over
        if loop.domain is None:
            return loop.domain_problem or "iteration loopvec cannot describe"
        # range(1, n), range(0, n, 2): the whole-array reduction would include skipped rows
        if not loop.domain.full:
            return "partial or strided range: a whole-array reduction would include elements the loop skips"
        # `values: list[float]`: iterating a list yields Python numbers, not tensor rows
        lists = [a for a in loop.domain.arrays if facts.not_a_tensor(a)]
        if lists:
            return f"`{lists[0]}` is annotated as a Python value, not a tensor"
        # for i in range(n): total += i * i -- Python numbers, no tensor to reduce
        dom = loop.domain
        if not dom.arrays and not any(r.index[:1] == (dom.index,) for r in loop.reads):
            return f"`{dom.extent}` iterations over no tensor: nothing to vectorize"
        # a break stops the fold early; print, random draws: running once is not n times
        return body_problem(loop, allow, carried=False, where="in a reduction loop")

    def _rewrite(self, loop, ctx, scope: LiftScope, facts: Signature, edits, message: str) -> Rewrite | Decline:
        walked = _walked(loop)
        element_ranks = {facts.exact_rank(a) for a in walked}
        element_rank = None if None in element_ranks or not element_ranks else min(element_ranks) - 1
        for e in edits:
            if not e.code:
                continue
            new = cst.parse_module(e.code + "\n")
            # (scores > t).mean() for t in thresholds: per element scores [n] meets a number,
            # batched it meets thresholds [k] -- a tensor invariant may not reach the loop dim
            for name in sorted(_operands(new, ctx.info) - walked):
                rank = facts.exact_rank(name) if facts.tensor(name) is not None else 0
                if rank is None or (rank > 0 and (element_rank is None or rank > element_rank)):
                    return Decline(self.NAME, f"tensor `{name}` may have more dims than one element of "
                                              f"`{sorted(walked)[0]}`: batched, it would broadcast against "
                                              f"the loop dimension")
            # x[i] * w[i] with x [n, d] and w [n]: per element a row times a number, batched
            # a broadcast along the wrong axis -- exact only when the walked arrays share a rank
            for arrays in _mixed_operands(new, walked, ctx.info):
                ranks = {facts.exact_rank(a) for a in arrays}
                if None in ranks or len(ranks) > 1:
                    scope.assumptions.append(f"{' and '.join(f'`{a}`' for a in sorted(arrays))} have the same rank")
        # lift's note about an invariant operand is settled when hints give its rank
        declared = {name: facts.exact_rank(name) for name in facts.params}
        proven = {name for name in facts.params
                  if facts.scalar(name) is not None
                  or (declared[name] is not None and element_rank is not None and declared[name] <= element_rank)}
        scope.assumptions[:] = [a for a in scope.assumptions if not (
            a.endswith("is a number or has no more dimensions than one element") and a.split("`")[1] in proven)]
        message = " ".join(message.split())  # one line, also for an `if` block
        return Rewrite(self.NAME, loop, tuple(edits), message, SAFE, tuple(dict.fromkeys(scope.assumptions)),
                       ctx.imports)

    # ------------------------------------------------------------------ for loops
    def _for(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        facts = Signature(ctx.info, loop.function)
        body = list(loop.body)
        if not body:
            return Decline(self.NAME, "empty or one-line body")
        last = body[-1]
        # where the accumulating statements start: everything before is a temporary
        k = len(body)
        while k > 0 and _aug(body[k - 1]) is not None:
            k -= 1
        if k < len(body):
            return self._accumulate(loop, ctx, facts, body[:k], body[k:])
        if isinstance(last, cst.If):
            return self._if(loop, ctx, facts, body[:-1], last)
        small = only(last)
        if isinstance(small, cst.Assign) and isinstance(small.value, cst.Call):
            return self._max_call(loop, ctx, facts, body[:-1], small)
        if loop.appends:
            return self._appended(loop, ctx, facts)
        return Decline(self.NAME, "no accumulator: the body does not fold into one value")

    def _scope(self, loop: Loop, ctx: PatternContext) -> LiftScope:
        return LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names) | set(loop.assigned))

    def _classes(self, loop: Loop, ctx: PatternContext, facts: Signature) -> DtypeClasses:
        names = {p: facts.floating(p) or facts.scalar(p) == "float" for p in facts.params}
        arrays = {p: _dtype_set(facts, p) for p in facts.params}
        for name, array in loop.domain.elements:
            names[name] = facts.floating(array)
            arrays[name] = _dtype_set(facts, array)
        return DtypeClasses(ctx.info, names, arrays)

    def _temps(self, temps, scope: LiftScope, classes: DtypeClasses, state) -> list[str]:
        # total = x * 2; total += y: the value restarts every turn, it is not a fold
        for stmt in temps:
            small = only(stmt)
            if isinstance(small, cst.Assign):
                bound = {t.target.value for t in small.targets if isinstance(t.target, cst.Name)}
                if bound & set(state):
                    raise LiftError(f"`{sorted(bound & set(state))[0]}` is reassigned in the loop body")
        lines = lift_temps(temps, scope)
        for stmt in temps:
            small = only(stmt)
            classes.names[small.targets[0].target.value] = classes.inexact(small.value)
        return lines

    # ------------------------------------------------------------------ total += v
    def _accumulate(self, loop, ctx, facts, temps, statements) -> Rewrite | Decline:
        problem = self._problem(loop, facts)
        if problem:
            return Decline(self.NAME, problem)
        # `y = total * 2` in the body: a loop-carried read, not a fold
        if loop.carried:
            return Decline(self.NAME, f"loop-carried dependency: {loop.carried[0]}")
        accs = [_aug(s) for s in statements]
        targets = [a.target.value for a in accs]
        # total += a; total += b: two updates per turn interleave with other reads
        if len(set(targets)) != len(targets):
            return Decline(self.NAME, f"`{targets[0]}` is updated twice per iteration")
        for acc in accs:
            op = type(acc.operator).__name__
            # total /= x, total **= x: quotient chains overflow where c / prod(x) does not
            if op not in _OPS:
                return Decline(self.NAME, f"`{code(acc.operator).strip()}` chain has no exact whole-array form")
        # total += x * total, b += a: an accumulator read inside the loop is not a fold
        read = set()
        for stmt in [*temps, *statements]:
            small = only(stmt)
            # assignments read their value; `assert total > 0`, `f(total)` read the whole line
            value = getattr(small, "value", None) if small is not None else None
            read |= names_in(value) if isinstance(value, cst.BaseExpression) else names_in(small or stmt)
        clash = sorted((read | names_in(loop.node.iter)) & set(targets))
        if clash:
            return Decline(self.NAME, f"`{clash[0]}` is read inside the loop, not only accumulated")
        problem = used_after_problem(loop, set(targets))
        if problem:
            return Decline(self.NAME, problem)
        inits = {}
        for t in targets:
            init = loop.setup.get(t)
            # total = something else, or total += ... with total set in another block
            if init is None or init.interleaved or not (
                    (init.kind == "scalar" and number_value(init.value) is not None)
                    or init.kind in _INPLACE_INITS):
                return Decline(self.NAME, f"`{t}` does not start as a number or a fresh tensor right before the loop")
            inits[t] = init
        scope = self._scope(loop, ctx)
        classes = self._classes(loop, ctx, facts)
        lines = self._temps(temps, scope, classes, targets)
        edits: list[Edit] = []
        extent = nonempty(loop.domain.extent)
        mean = self._mean_fold(loop, targets, inits, accs) if len(accs) == 1 else None
        for acc in accs:
            t = acc.target.value
            op = _OPS[type(acc.operator).__name__]
            value = lift(acc.value, scope)
            # total += 1, total += scale: the same value each turn is not a reduction of the data
            if not value.batched:
                return Decline(self.NAME, f"`{code(acc.value)}` does not depend on the loop element")
            init = inits[t]
            inexact = classes.inexact(acc.value)
            if init.kind in _INPLACE_INITS:
                update = self._inplace(t, op, value, init, facts, classes.dtypes(acc.value), scope)
                # torch.tensor(0.0) += rows of [3]: the loop fails on its first row, but with no
                # rows it fails nowhere -- the update must not run then either
                if not self._row_shaped(init, loop, facts):
                    update = f"if {extent}:\n    {update}"
                lines.append(update)
                continue
            c = number_value(init.value)
            replacement = self._mean(mean, value, inexact) if mean is not None else None
            if replacement is not None:
                edits.append(Edit(mean.statement, replacement))
            else:
                lines += self._scalar(t, op, value, c, code(init.value), inexact, extent, scope)
            edits.append(Edit(init.statement, None))
        edits.append(Edit(loop.node, "\n".join(lines) or None))
        shown = [e.code for e in edits if e.code and e.target is not loop.node] + lines
        return self._rewrite(loop, ctx, scope, facts, tuple(edits), f"becomes `{shown[-1]}`")

    def _scalar(self, t, op, value: Lifted, c, c_code, inexact, extent, scope) -> list[str]:
        """`t = c; for ...: t op= v` with a Python number c."""
        fold = _FOLD[op]
        torch = scope.torch
        if value.kind == "float":
            # Python floats: float64 arithmetic giving a Python float
            total = exprs.method(exprs.method(value.node, fold), "item")
            expr = _combine(c, c_code, op, total)
            # an int start stays an int when the loop does not run
            return [_assign(t, expr if isinstance(c, float) else exprs.ifexp(expr, extent, c_code))]
        if value.kind != "tensor":
            # int(x) per element: Python ints never overflow, an int64 sum does
            raise LiftError(f"accumulates Python {value.kind}s: an int64 tensor reduction can overflow where "
                            f"Python ints do not")
        pre: list[str] = []
        v = value.code
        if inexact or isinstance(c, float):
            # floating elements keep their dtype; a float start promotes ints the same way
            total = exprs.method(value.node, fold, "0")
            skip_c = inexact
        else:
            # int start: x + 0 keeps uint8/int8/int32 (wrapping) but makes bool int64
            if not is_atom(v):
                pre.append(f"{t} = {v}")
                v = t
            total = exprs.method(v, fold, "0", dtype=exprs.call(f"{torch}.result_type", v, c_code))
            skip_c = True
        expr = _combine(c, c_code, op, total) if skip_c else exprs.binop(c_code, op, total)
        return [*pre, _assign(t, exprs.ifexp(expr, extent, c_code))]

    def _inplace(self, t, op, value: Lifted, init, facts, dtypes, scope) -> str:
        """`acc = torch.zeros(d); for ...: acc op= row`: one in-place update, acc keeps its dtype."""
        if value.kind != "tensor":
            raise LiftError(f"accumulates Python {value.kind}s into a tensor")
        fold = _FOLD[op]
        sym = {"+": "+=", "-": "-=", "*": "*="}[op]
        # acc += row adds in acc's dtype when it is wider (a float32 buffer for float16 rows)
        # and ors into a bool acc: the fold runs in acc's dtype unless neither can happen
        if _known_not_bool(init, facts) and dtypes is not None and not dtypes & {"float16", "bfloat16"}:
            return f"{t} {sym} {exprs.render(exprs.method(value.node, fold, '0'))}"
        return f"{t} {sym} {exprs.render(exprs.method(value.node, fold, '0', dtype=exprs.attr(t, 'dtype')))}"

    def _row_shaped(self, init, loop: Loop, facts: Signature) -> bool:
        """The in-place accumulator has the shape of one row of a walked array."""
        value = init.value
        walked = _walked(loop)
        if init.kind in ("like", "clone") and init.ref:
            # torch.zeros_like(X[0]), X[0].clone()
            ref = cst.parse_expression(init.ref)
            return (isinstance(ref, cst.Subscript) and code(ref.value) in walked and len(ref.slice) == 1
                    and number_value(ref.slice[0].slice.value if isinstance(ref.slice[0].slice, cst.Index)
                                       else None) == 0)
        if init.kind != "alloc" or not isinstance(value, cst.Call):
            return False
        sizes = [a.value for a in value.args if a.keyword is None]
        if (init.call or "").endswith("full"):
            sizes = sizes[:1]
        if len(sizes) != 1:
            return False
        size = code(sizes[0])
        for a in walked:
            # torch.zeros(X.shape[1:]), or torch.zeros(X.shape[1]) for a 2-D X
            if size in (f"{a}.shape[1:]", f"{a}.size()[1:]"):
                return True
            if size in (f"{a}.shape[1]", f"{a}.size(1)") and facts.exact_rank(a) == 2:
                return True
        return False

    # ------------------------------------------------------------------ mean = total / len(x)
    def _mean_fold(self, loop: Loop, targets, inits, accs):
        t = targets[0]
        init = inits[t]
        if init.kind != "scalar" or number_value(init.value) != 0 or _OPS[type(accs[0].operator).__name__] != "+":
            return None
        block, k = loop.block, loop.block_index
        if k < 0 or k + 1 >= len(block):
            return None
        stmt = block[k + 1]
        small = only(stmt)
        if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
            value, target = small.value, small.targets[0].target.value
        elif isinstance(small, cst.Return) and small.value is not None:
            value, target = small.value, None
        else:
            return None
        if not (isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Divide)
                and isinstance(value.left, cst.Name) and value.left.value == t):
            return None
        dom = loop.domain
        measures = {dom.extent} | {f"len({a})" for a in dom.arrays} | {f"{a}.shape[0]" for a in dom.arrays}
        if code(value.right) not in measures:
            return None
        # `total` itself is needed later: keep the sum
        later = block[k + 2:]
        if any(t in names_in(s) for s in later) and target != t:
            return None
        return _Mean(stmt, target)

    def _mean(self, mean: _Mean, value: Lifted, inexact: bool) -> str | None:
        """`mean = total / len(x)` as one statement, or None to keep the sum and the division."""
        if value.kind == "float":
            new = exprs.render(exprs.method(exprs.method(value.node, "mean"), "item"))
        elif value.kind == "tensor" and inexact:
            new = exprs.render(exprs.method(value.node, "mean", "0"))
        else:
            # mean() rejects integer tensors, where total / n is a true division
            return None
        return f"{mean.target} = {new}" if mean.target else f"return {new}"

    # ------------------------------------------------------------------ if ...:
    def _if(self, loop, ctx, facts, temps, stmt: cst.If) -> Rewrite | Decline:
        # if/else: two different updates per element
        if stmt.orelse is not None:
            return Decline(self.NAME, "`if` with an `else` branch in a reduction")
        inner = list(stmt.body.body) if isinstance(stmt.body, cst.IndentedBlock) else []
        smalls = [only(s) for s in inner]
        if any(s is None for s in smalls):
            return Decline(self.NAME, "compound statement under the `if`")
        if len(smalls) == 1 and isinstance(smalls[0], cst.AugAssign):
            return self._conditional_accumulate(loop, ctx, facts, temps, stmt.test, smalls[0])
        flag = smalls[0]
        if (isinstance(flag, cst.Assign) and _bool_literal(flag.value) is not None
                and (len(smalls) == 1 or (len(smalls) == 2 and isinstance(smalls[1], cst.Break)))):
            return self._flag(loop, ctx, facts, temps, stmt.test, flag)
        return self._running(loop, ctx, facts, temps, stmt.test, smalls)

    def _condition(self, test, scope: LiftScope) -> Lifted:
        # `if x:` on a float tensor is `x != 0` (NaN is true): only comparisons lift as masks
        if not is_predicate(test):
            raise LiftError(f"condition `{code(test)}` is not a comparison")
        cond = lift(test, scope)
        # the same branch for every element: not a per-element condition
        if not cond.batched:
            raise LiftError(f"condition `{code(test)}` does not depend on the loop element")
        return cond

    def _conditional_accumulate(self, loop, ctx, facts, temps, test, acc: cst.AugAssign) -> Rewrite | Decline:
        problem = self._problem(loop, facts)
        if problem:
            return Decline(self.NAME, problem)
        if loop.carried:
            return Decline(self.NAME, f"loop-carried dependency: {loop.carried[0]}")
        if not isinstance(acc.target, cst.Name):
            return Decline(self.NAME, "accumulates into a subscript under a condition")
        t = acc.target.value
        op = _OPS.get(type(acc.operator).__name__)
        if op not in ("+", "-"):
            return Decline(self.NAME, f"conditional `{code(acc.operator).strip()}` has no exact whole-array form")
        used = names_in(test) | names_in(acc.value)
        for s in temps:
            used |= names_in(s)
        if t in used:
            return Decline(self.NAME, f"`{t}` is read inside the loop, not only accumulated")
        problem = used_after_problem(loop, {t})
        if problem:
            return Decline(self.NAME, problem)
        init = loop.setup.get(t)
        c = number_value(init.value) if init is not None and init.kind == "scalar" else None
        if init is None or init.interleaved or (c is None and init.kind not in _INPLACE_INITS):
            return Decline(self.NAME, f"`{t}` does not start as a number or a fresh tensor right before the loop")
        scope = self._scope(loop, ctx)
        classes = self._classes(loop, ctx, facts)
        lines = self._temps(temps, scope, classes, {t})
        cond = self._condition(test, scope)
        step = number_value(acc.value)
        edits = [Edit(loop.node, None)]
        if step is not None:
            # if x > t: count += 1 -- a Python int count is exact: int(mask.sum())
            if not (isinstance(step, int) and isinstance(c, int)):
                return Decline(self.NAME, "a count needs an int start and an int step (a Python int count is exact)")
            count = exprs.call("int", exprs.method(cond.node, "sum"))
            count = count if step == 1 else exprs.binop(str(step), "*", count)
            lines.append(_assign(t, _combine(c, code(init.value), op, count)))
            edits.insert(0, Edit(init.statement, None))
        else:
            value = lift(acc.value, scope)
            if not value.batched or value.kind != "tensor":
                return Decline(self.NAME, f"`{code(acc.value)}` is not a per-element tensor")
            # a [n, 1] mask (elements of shape [1] are truthy too) must still pick whole rows
            mask = cond.node if self._rank_one(cond, loop, facts, scope.info) else exprs.method(cond.node, "flatten")
            picked = fresh_name("picked", _used(loop))
            lines.append(_assign(picked, exprs.subscript(value.node, mask)))
            picked_value = Lifted(cst.Name(picked), True, "tensor")
            inexact = classes.inexact(acc.value)
            if init.kind in _INPLACE_INITS:
                update = self._inplace(t, op, picked_value, init, facts, classes.dtypes(acc.value), scope)
                if not self._row_shaped(init, loop, facts):
                    update = f"if len({picked}):\n    {update}"
                lines.append(update)
            else:
                lines += self._scalar(t, op, picked_value, c, code(init.value), inexact, f"len({picked})", scope)
                edits.insert(0, Edit(init.statement, None))
        edits[-1] = Edit(loop.node, "\n".join(lines))
        return self._rewrite(loop, ctx, scope, facts, tuple(edits), f"becomes `{lines[-1]}`")

    def _rank_one(self, cond: Lifted, loop: Loop, facts: Signature, info) -> bool:
        """Every array the condition reads is known to be 1-D, so the batched mask is [n]."""
        arrays = _operands(cond.node, info) & _walked(loop)
        return bool(arrays) and all(facts.exact_rank(a) == 1 for a in arrays)

    # ------------------------------------------------------------------ found = True
    def _flag(self, loop, ctx, facts, temps, test, flag: cst.Assign) -> Rewrite | Decline:
        # a break after setting the flag changes nothing but the work done
        problem = self._problem(loop, facts, allow=frozenset({"break"}))
        if problem:
            return Decline(self.NAME, problem)
        if loop.carried:
            return Decline(self.NAME, f"loop-carried dependency: {loop.carried[0]}")
        if len(flag.targets) != 1 or not isinstance(flag.targets[0].target, cst.Name):
            return Decline(self.NAME, "flag is not a plain name")
        name = flag.targets[0].target.value
        problem = used_after_problem(loop, {name})
        if problem:
            return Decline(self.NAME, problem)
        init = self._init(loop, name, ctx)
        start = _bool_literal(init.value) if init is not None and init.value is not None else None
        set_to = _bool_literal(flag.value)
        # found = found_before or ...: a flag that may already be set is not any()
        if init is None or init.interleaved or start is None or start == set_to:
            return Decline(self.NAME, f"`{name}` does not start as the opposite bool literal right before the loop")
        used = names_in(test)
        for s in temps:
            used |= names_in(s)
        if name in used:
            return Decline(self.NAME, f"`{name}` is read inside the loop")
        scope = self._scope(loop, ctx)
        classes = self._classes(loop, ctx, facts)
        lines = self._temps(temps, scope, classes, {name})
        # `if not (x < t): ok = False` is `ok = all(x < t)`
        negated = isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not)
        cond = self._condition(test.expression if negated else test, scope)
        reduce = exprs.method(cond.node, "all" if negated else "any")
        lines.append(_assign(name, exprs.call("bool", reduce) if set_to != negated else exprs.unary("not", reduce)))
        edits = (Edit(init.statement, None), Edit(loop.node, "\n".join(lines)))
        return self._rewrite(loop, ctx, scope, facts, edits, f"becomes `{lines[-1]}`")

    def _init(self, loop: Loop, name: str, ctx: PatternContext):
        if loop.block_index < 0:
            return None
        return find_setup(name, loop.block, loop.block_index, ctx.info, set())

    # ------------------------------------------------------------------ if v > best: best = v
    def _max_call(self, loop, ctx, facts, temps, small: cst.Assign) -> Rewrite | Decline:
        """`best = max(best, v)`: the builtin returns v only when `v > best`, like the `if` form."""
        call = small.value
        fn = ctx.info.builtin_name(call.func)
        if fn not in ("max", "min") or len(call.args) != 2 or any(a.keyword or a.star for a in call.args) \
                or len(small.targets) != 1 or not isinstance(small.targets[0].target, cst.Name):
            return Decline(self.NAME, "no accumulator: the body does not fold into one value")
        best = small.targets[0].target.value
        first, second = call.args[0].value, call.args[1].value
        # max(v, best) keeps a NaN v and replaces on ties: not the running-max fold
        if not (isinstance(first, cst.Name) and first.value == best):
            return Decline(self.NAME, f"`{fn}(v, {best})` keeps NaN and ties differently: write `{fn}({best}, v)`")
        op = ">" if fn == "max" else "<"
        return self._running_core(loop, ctx, facts, temps, best, op, second, None)

    def _running(self, loop, ctx, facts, temps, test, smalls) -> Rewrite | Decline:
        # for i in x.nonzero(): an iteration loopvec cannot describe has no index to track
        if loop.domain is None:
            return Decline(self.NAME, loop.domain_problem or "iteration loopvec cannot describe")
        if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
            return Decline(self.NAME, "`if` body is not a running max/min, flag or accumulation")
        assigns = [s for s in smalls if isinstance(s, cst.Assign) and len(s.targets) == 1
                   and isinstance(s.targets[0].target, cst.Name)]
        if len(assigns) != len(smalls) or len(assigns) not in (1, 2):
            return Decline(self.NAME, "`if` body is not a running max/min, flag or accumulation")
        left, right = test.left, test.comparisons[0].comparator
        sym = {cst.GreaterThan: ">", cst.GreaterThanEqual: ">=", cst.LessThan: "<", cst.LessThanEqual: "<="}.get(
            type(test.comparisons[0].operator))
        if sym is None:
            return Decline(self.NAME, "running comparison is not <, <=, > or >=")
        # `best < v` is `v > best`
        if isinstance(left, cst.Name) and left.value in {a.targets[0].target.value for a in assigns}:
            left, right = right, left
            sym = {">": "<", ">=": "<=", "<": ">", "<=": ">="}[sym]
        if not isinstance(right, cst.Name):
            return Decline(self.NAME, "the condition does not compare with the running value")
        best = right.value
        value_assign = [a for a in assigns if a.targets[0].target.value == best]
        index_assign = [a for a in assigns if a.targets[0].target.value != best]
        if len(value_assign) != 1:
            return Decline(self.NAME, f"`{best}` is not set to the compared value")
        # if v > best: best = w -- the kept value must be the compared one
        if not value_assign[0].value.deep_equals(left):
            return Decline(self.NAME, f"`{best}` is set to something other than the compared `{code(left)}`")
        index = None
        if index_assign:
            dom = loop.domain
            value = index_assign[0].value
            # best_i = i + 1, best_i = x: only the loop index itself is an argmax
            if dom.index is None or not (isinstance(value, cst.Name) and value.value == dom.index):
                return Decline(self.NAME, "the second name under the `if` is not set to the loop index")
            index = index_assign[0].targets[0].target.value
        return self._running_core(loop, ctx, facts, temps, best, sym, left, index)

    def _running_core(self, loop, ctx, facts, temps, best, sym, expr, index) -> Rewrite | Decline:
        problem = self._problem(loop, facts)
        if problem:
            return Decline(self.NAME, problem)
        allowed_carry = f"`{best}` is read before it is assigned"
        others = [r for r in loop.carried if not r.startswith(allowed_carry)]
        if others:
            return Decline(self.NAME, f"loop-carried dependency: {others[0]}")
        state = {best} | ({index} if index else set())
        used = names_in(expr)
        for s in temps:
            used |= names_in(s)
        if used & state:
            return Decline(self.NAME, f"`{sorted(used & state)[0]}` is read inside the loop beyond the comparison")
        problem = used_after_problem(loop, state)
        if problem:
            return Decline(self.NAME, problem)
        init = self._init(loop, best, ctx)
        if init is None or init.interleaved or init.value is None or not self._plain_start(init.value, expr, loop, ctx):
            return Decline(self.NAME, f"`{best}` does not start as a number or the first element right before the loop")
        if index is not None:
            index_init = self._init(loop, index, ctx)
            if index_init is None or index_init.interleaved:
                return Decline(self.NAME, f"`{index}` is not set right before the loop")
        scope = self._scope(loop, ctx)
        classes = self._classes(loop, ctx, facts)
        lines = self._temps(temps, scope, classes, state)
        value = lift(expr, scope)
        # max over Python floats would give a Python float, not a view into a tensor
        if not value.batched or value.kind != "tensor":
            return Decline(self.NAME, f"`{code(expr)}` is not a per-element tensor")
        v = value.code
        if not is_atom(v):
            vals = fresh_name("values", _used(loop))
            lines.append(f"{vals} = {v}")
            v = vals
        mask = fresh_name("above" if sym[0] == ">" else "below", _used(loop))
        extreme = "max" if sym[0] == ">" else "min"
        # ties: a strict comparison keeps the first extreme, a non-strict one the last
        pick = "[0, 0]" if len(sym) == 1 else "[-1, 0]"
        # NaN never passes the comparison, so it is masked out before max/min
        position = f"int({scope.torch}.nonzero({mask} & ({v} == {v}[{mask}].{extreme}())){pick})"
        lines.append(f"{mask} = {v} {sym} {best}")
        if index is not None:
            lines.append(f"if {mask}.any():\n    {index} = {position}\n    {best} = {v}[{index}]")
        else:
            lines.append(f"if {mask}.any():\n    {best} = {v}[{position}]")
        what = f"arg{extreme}" if index else f"running {extreme}"
        return self._rewrite(loop, ctx, scope, facts, (Edit(loop.node, "\n".join(lines)),),
                             f"{what} becomes `{lines[-2]}` and a masked `.{extreme}()`")

    def _plain_start(self, value: cst.BaseExpression, expr, loop: Loop, ctx: PatternContext) -> bool:
        """A start the comparison treats like the loop does once batched.

        A Python number compares the same against a 0-d element and against the whole
        array; a 0-d tensor of another dtype would not (dim tensors win promotion).
        """
        if number_value(value) is not None:
            return True
        inner = value.expression if isinstance(value, cst.UnaryOperation) and isinstance(
            value.operator, cst.Minus) else value
        if ctx.info.qualname(inner) in _INF_CALLS:
            return True
        if isinstance(inner, cst.Call) and ctx.info.builtin_name(inner.func) == "float" and len(inner.args) == 1 \
                and isinstance(inner.args[0].value, cst.SimpleString) \
                and inner.args[0].value.evaluated_value.strip().lower() in ("inf", "-inf", "+inf", "nan", "infinity",
                                                                            "-infinity"):
            return True
        # best = data[0] with `for x in data`: the same dtype as every compared element
        if isinstance(value, cst.Subscript) and len(value.slice) == 1 and isinstance(value.slice[0].slice, cst.Index):
            k = number_value(value.slice[0].slice.value)
            array = code(value.value)
            element = {name: arr for name, arr in loop.domain.elements}
            same = (isinstance(expr, cst.Name) and element.get(expr.value) == array) or (
                isinstance(expr, cst.Subscript) and code(expr.value) == array and loop.domain.index is not None
                and len(expr.slice) == 1 and code(expr.slice[0].slice) == loop.domain.index)
            return isinstance(k, int) and k in (0, -1) and same
        return False

    # ------------------------------------------------------------------ row-wise reductions
    def _comprehension(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        facts = Signature(ctx.info, loop.function)
        problem = self._problem(loop, facts)
        if problem:
            return Decline(self.NAME, problem)
        # [row.sum() for row in X if row[0] > 0]: a filter changes the length
        if loop.conditions:
            return Decline(self.NAME, "comprehension with a condition")
        scope = self._scope(loop, ctx)
        value = self._rowwise(loop.element, loop, scope, facts)
        new = self._collect(loop.collector, value, loop, scope, facts)
        return self._rewrite(loop, ctx, scope, facts, (Edit(loop.collector.call, new),),
                             f"becomes `{new}`")

    def _appended(self, loop: Loop, ctx: PatternContext, facts: Signature) -> Rewrite | Decline:
        problem = self._problem(loop, facts)
        if problem:
            return Decline(self.NAME, problem)
        if loop.carried:
            return Decline(self.NAME, f"loop-carried dependency: {loop.carried[0]}")
        if len(loop.appends) != 1 or loop.writes or len(loop.body) != 1 \
                or only(loop.body[0]) is None or not isinstance(only(loop.body[0]), cst.Expr):
            return Decline(self.NAME, "body is not one `append` of a row reduction")
        app = loop.appends[0]
        problem = used_after_problem(loop, set())
        if problem:
            return Decline(self.NAME, problem)
        found = collected_list(loop, app.target)
        if isinstance(found, str):
            return Decline(self.NAME, found)
        init, finish = found
        scope = self._scope(loop, ctx)
        value = self._rowwise(app.value, loop, scope, facts)
        new = self._collect(finish, value, loop, scope, facts)
        final = f"{finish.target} = {new}" if finish.target else f"return {new}"
        edits = (Edit(init.statement, None), Edit(loop.node, None), Edit(finish.statement, final))
        return self._rewrite(loop, ctx, scope, facts, edits, f"becomes `{final}`")

    def _collect(self, finish, value: Lifted, loop, scope, facts) -> str:
        if finish.kind == "cat":
            raise LiftError("torch.cat of row reductions (0-d tensors cannot be concatenated)")
        new = collect(finish, value, scope)
        # reshape(len(X), -1) needs at least one row, where torch.tensor([...]) of no rows is
        # an empty tensor (float32, or the dtype it is given)
        if finish.kind == "tensor" and ".reshape(" in value.code and not new.endswith(".tensor([])"):
            dtype = [a for a in finish.call.args if a.keyword is not None and a.keyword.value == "dtype"]
            empty = f"{scope.torch}.tensor([], dtype={code(dtype[0].value)})" if dtype else f"{scope.torch}.tensor([])"
            new = exprs.render(exprs.ifexp(new, nonempty(loop.domain.extent), empty))
        return new

    def _rowwise(self, element: cst.BaseExpression, loop: Loop, scope: LiftScope, facts: Signature) -> Lifted:
        """Lift an element expression whose per-row values come from full reductions of rows."""
        finder = _RowReductions(self, loop, scope, facts)
        traverse.visit(element, finder)
        if finder.error:
            raise LiftError(finder.error)
        if not finder.found:
            raise LiftError("no row reduction in the collected value")
        # row.sum() / scale: a [n] batch against an invariant of unknown shape may broadcast wrongly
        free = _operands(element, scope.info, skip=set(finder.found))
        if free:
            raise LiftError(f"a row reduction is combined with `{sorted(free)[0]}`, whose shape per row is unknown")
        found = finder.found
        scope.use_calls(lambda node, _: found[id(node)][1] if found.get(id(node), (None,))[0] is node else None)
        try:
            return lift(element, scope)
        finally:
            scope.use_calls(None)

    def reduce_rows(self, call: cst.Call, loop: Loop, scope: LiftScope, facts: Signature) -> Lifted | str:
        """`row.mean()` -> `X.mean(1)` (or an error message)."""
        info = scope.info
        func = call.func
        qual = info.qualname(func)
        if qual is not None:
            module, _, name = qual.rpartition(".")
            if module != "torch" or name not in ROW_REDUCTIONS:
                return ""
            positional = [a for a in call.args if a.keyword is None]
            if len(positional) != 1 or positional[0].star:
                return f"`{code(func)}` with more than the tensor argument"
            subject = positional[0].value
            kwargs = [a for a in call.args if a.keyword is not None]
        elif isinstance(func, cst.Attribute) and func.attr.value in ROW_REDUCTIONS:
            name = func.attr.value
            subject = func.value
            if any(a.keyword is None or a.star for a in call.args):
                return f"`.{name}(...)` with positional arguments (a dim or an order)"
            kwargs = list(call.args)
        else:
            return ""
        if names_in(subject).isdisjoint(set(loop.domain.names) | set(loop.assigned)):
            return ""
        batched = ROW_REDUCTIONS[name]
        if batched is None:
            return f"`{name}` needs a dim"
        extra: dict[str, cst.BaseExpression] = {}
        for kw in kwargs:
            if kw.keyword.value != "dtype" or name not in ROW_REDUCTION_DTYPE:
                return f"`{name}(..., {kw.keyword.value}=...)`"
            extra["dtype"] = kw.value
        if _has_reduction(subject, info):
            return "a reduction inside a row reduction"
        inner = lift(subject, scope)
        if not inner.batched or inner.kind != "tensor":
            return f"`{code(subject)}` is not a per-row tensor"
        rows = self._rows(inner.node, loop, facts, info)
        # norm's first positional is the order p, not the dim
        dim = {"dim": "1"} if batched == "norm" else {}
        return Lifted(exprs.method(rows, batched, *([] if dim else ["1"]), **dim, **extra), True, "tensor")

    def _rows(self, v: cst.BaseExpression, loop: Loop, facts: Signature, info) -> cst.BaseExpression:
        """`v` as [n, elements of one row]: exact for any rank of the rows."""
        # an elementwise expression of walked arrays has the largest of their ranks
        arrays = _operands(v, info)
        ranks = [facts.exact_rank(a) if a in loop.domain.arrays else None for a in arrays]
        rank = max(ranks) if ranks and None not in ranks else None
        if rank == 2:
            return v
        if rank is not None and rank > 2:
            return exprs.method(v, "flatten", "1")
        return exprs.method(v, "reshape", loop.domain.extent, "-1")


class _RowReductions(cst.CSTVisitor):
    """Each full reduction of a loop row, innermost first, with its batched form (`found`:
    id -> (call, lifted)); or the first reason one cannot be batched (`error`)."""

    def __init__(self, pattern: Reduction, loop: Loop, scope: LiftScope, facts: Signature) -> None:
        self.pattern, self.loop, self.scope, self.facts = pattern, loop, scope, facts
        self.found: dict[int, tuple[cst.Call, Lifted]] = {}
        self.error = ""
        self._starts: list[int] = []

    def visit_Call(self, node: cst.Call) -> None:
        self._starts.append(len(self.found))

    def leave_Call(self, original: cst.Call) -> None:
        inner = len(self.found) > self._starts.pop()
        if self.error:
            return
        if inner:
            # (row - row.mean()).sum(): the inner [n] batch would broadcast against rows
            if _has_reduction(original, self.scope.info, top=True):
                self.error = "a row reduction inside another row reduction"
            return
        result = self.pattern.reduce_rows(original, self.loop, self.scope, self.facts)
        if isinstance(result, str):
            if result:
                self.error = result
            return
        self.found[id(original)] = (original, result)


@dataclass(frozen=True)
class _Mean:
    statement: cst.BaseStatement
    target: str | None  # None for `return total / len(x)`


# --------------------------------------------------------------------------- helpers


def _aug(stmt: cst.BaseStatement) -> cst.AugAssign | None:
    small = only(stmt)
    if isinstance(small, cst.AugAssign) and isinstance(small.target, cst.Name):
        return small
    return None


def _combine(c, c_code: str, op: str, total: cst.BaseExpression) -> cst.BaseExpression:
    """`c op total`, without the start when it is the fold's identity."""
    if c == _IDENTITY[op]:
        return exprs.unary("-", total) if op == "-" else total
    return exprs.binop(c_code, op, total)


def _assign(target: str, value: cst.BaseExpression) -> str:
    return f"{target} = {exprs.render(value)}"


def _bool_literal(node: cst.BaseExpression | None) -> bool | None:
    if isinstance(node, cst.Name) and node.value in ("True", "False"):
        return node.value == "True"
    return None


def _operands(node: cst.BaseExpression, info, skip: set[int] | frozenset[int] = frozenset()) -> set[str]:
    """Names read as values: not called builtins (`float(...)`) nor module prefixes (`torch.`),
    nor anything inside the calls whose ids are in `skip`."""
    out: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> bool:
            if id(call) in skip:
                return False
            func = call.func
            if isinstance(func, cst.Name) or info.qualname(func) is not None:
                for a in call.args:
                    traverse.visit(a.value, self)
                return False
            return True

        def visit_Attribute(self, attr: cst.Attribute) -> bool:
            if info.qualname(attr) is None:
                traverse.visit(attr.value, self)
            return False

        def visit_Arg(self, arg: cst.Arg) -> bool:
            traverse.visit(arg.value, self)
            return False

        def visit_Name(self, name: cst.Name) -> None:
            out.add(name.value)

    traverse.visit(node, _V())
    return out


def _walked(loop: Loop) -> set[str]:
    """Arrays whose leading dimension the loop walks: iterated, zipped, or read at `[i]`."""
    index = loop.domain.index
    return set(loop.domain.arrays) | {r.array for r in loop.reads if index and r.index[:1] == (index,)}


def _mixed_operands(node: cst.CSTNode, walked: set[str], info) -> list[frozenset[str]]:
    """Sets of walked arrays that meet as operands of one elementwise operation."""
    out: list[frozenset[str]] = []

    def arrays(n: cst.CSTNode) -> set[str]:
        return _operands(n, info) & walked

    class _V(cst.CSTVisitor):
        def _meet(self, operands) -> None:
            parts = [arrays(o) for o in operands]
            seen = set().union(*parts) if parts else set()
            if len(seen) > 1 and sum(1 for p in parts if p) > 1:
                out.append(frozenset(seen))

        def visit_BinaryOperation(self, n: cst.BinaryOperation) -> None:
            self._meet([n.left, n.right])

        def visit_Comparison(self, n: cst.Comparison) -> None:
            self._meet([n.left, *(t.comparator for t in n.comparisons)])

        def visit_Call(self, n: cst.Call) -> None:
            self._meet([a.value for a in n.args])

    traverse.visit(node, _V())
    return out


def _used(loop: Loop) -> set[str]:
    return used_names(loop.function) if loop.function is not None else set()


def _dtype_set(facts: Signature, name: str) -> set[str] | None:
    dtypes = facts.dtypes(name)
    return set(dtypes) if dtypes else None


def _known_not_bool(init, facts: Signature) -> bool:
    """The in-place accumulator's dtype is known and is not bool."""
    value = init.value
    if not isinstance(value, cst.Call):
        return False
    kwargs = {a.keyword.value: a.value for a in value.args if a.keyword is not None}
    if "dtype" in kwargs:
        return not code(kwargs["dtype"]).endswith("bool")
    if init.kind == "alloc" and not (init.call or "").startswith("new:"):
        return True  # torch.zeros(d): the default float dtype
    if init.kind == "scalar-tensor":
        args = [a.value for a in value.args if a.keyword is None]
        return len(args) == 1 and number_value(args[0]) is not None
    if init.kind in ("like", "clone") and init.ref:
        base = init.ref.split("[")[0]
        spec = facts.tensor(base)
        return bool(spec and spec.dtypes and "bool" not in spec.dtypes)
    return False


def _is_reduction_call(call: cst.Call, info) -> bool:
    qual = info.qualname(call.func)
    if qual is not None:
        return qual.startswith("torch.") and qual.count(".") == 1 and qual.rpartition(".")[2] in ROW_REDUCTIONS
    return isinstance(call.func, cst.Attribute) and call.func.attr.value in ROW_REDUCTIONS


def _has_reduction(node: cst.BaseExpression, info, top: bool = False) -> bool:
    """Whether `node` (only the node itself when `top`) is or holds a reduction call."""
    if top:
        return isinstance(node, cst.Call) and _is_reduction_call(node, info)
    found = False

    class _V(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            nonlocal found
            found = found or _is_reduction_call(call, info)

    traverse.visit(node, _V())
    return found
