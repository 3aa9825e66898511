"""Sliding windows (2-D correlation, max/mean/sum pooling) -> `unfold` views and one
reduction over the window dims."""

from __future__ import annotations

import libcst as cst

from loopvec.analysis.module import code
from loopvec.analysis.nest import Nest, NestAccess, affine, measures, names_in
from loopvec.lift import as_operand
from loopvec.rewrite import SAFE, Decline, PatternContext, Rewrite

from ._nest_common import (NestPattern, NestDecline, OutputPlan, Ranks, Value, aligned, check_invariants,
                           force_scalar_elements, index, lift_elementwise, nonempty, prefix, ranks_for, require_ranks,
                           rewrite)
from loopvec.analysis import traverse

# full reductions of one window -> the same reduction over the window dims
_REDUCTIONS = {"sum": "sum", "mean": "mean", "prod": "prod", "max": "amax", "min": "amin", "amax": "amax",
               "amin": "amin", "nansum": "nansum", "nanmean": "nanmean"}


class Window(NestPattern):
    """Sliding-window loops: 2-D correlation and pooling.

    What it rewrites:
        Nests that store, for each output position, a full reduction (`.sum()`,
        `.mean()`, `.max()`, `.min()`, ...) of a window `X[i*s:i*s + k, ...]` -- alone or
        multiplied elementwise by loop-invariant tensors such as a kernel -- possibly
        combined with constants or other elements afterwards. Each window dim becomes
        `X.unfold(dim, size, step)` (a view), the reduction runs over the window dims.
        `unfold` works for every dtype and device, so integer images stay exact (conv2d
        and the pooling functions would need floats).

    Example:
        Y = torch.zeros(H - h + 1, W - w + 1)
        for i in range(H - h + 1):
            for j in range(W - w + 1):
                Y[i, j] = (X[i:i + h, j:j + w] * K).sum()

    Use instead:
        Y = torch.zeros(H - h + 1, W - w + 1)
        if H - h + 1 > 0 and W - w + 1 > 0:
            Y[:] = (X.unfold(0, h, 1).unfold(1, w, 1) * K).sum((-2, -1))
        (`unfold` raises for a window larger than the input, where the loop runs zero
        times: the guard keeps that case; writing into `Y` keeps its dtype and device)

    When it declines:
        windows that do not start at a multiple of the loop index (`X[i + 1:i + 3]`),
        widths that change with the index (`X[:i + 1]`), a step that is not a positive
        literal or a width that may be negative (an `int` argument: `x[i:i + k]` with
        `k < 0` wraps around), the same index in two window dims, windows whose array
        rank is unknown when a kernel meets them, windows used outside a full reduction,
        partial reductions (`.sum(0)`), triangular ranges, break, side effects.
    """

    NAME = "window"
    DESCRIPTION = "sliding windows (correlation, max/mean/sum pooling) -> unfold + one reduction"
    SAFETY = SAFE
    ORDER = 30

    def _match(self, nest: Nest, ctx: PatternContext) -> Rewrite | Decline:
        windows = [a for a in nest.reads if any(s.kind == "window" for s in a.subs)]
        if not windows:
            return Decline(self.NAME, "no window (`X[i:i + k]`) in the body")
        # Y[i, j] += ...: a window pattern stores one reduction per position
        if nest.kind != "store":
            return Decline(self.NAME, "the body does not store one value per output position")
        if nest.index_values:
            return Decline(self.NAME, f"the index `{nest.index_values[0]}` is used as a value")
        ranks = ranks_for(nest, ctx)
        reductions = _reductions(nest.value, ctx, windows)
        inside = {id(a.node) for node, _ in reductions for a in windows if _contains(node, a.node)}
        if len(inside) != len(windows):
            return Decline(self.NAME, "a window is used outside a full reduction (`.sum()`, `.max()`, ...)")
        plain = [a for a in nest.reads if id(a.node) not in inside]
        force_scalar_elements(nest, ranks, tuple(plain))
        require_ranks(plain, ranks)
        assumptions = list(ranks.assumed)
        operands: dict[int, str] = {}
        for node, method in reductions:
            operands[id(node)] = self._reduction(nest, ctx, ranks, node, method, windows, assumptions)
        for a in plain:
            operands[id(a.node)] = aligned(nest, a, nest.free, 0, ranks, assumptions)
        plan = OutputPlan.for_nest(nest, ctx, ranks)
        outside = nest.value.visit(_Blank({id(node) for node, _ in reductions}))
        check_invariants(nest, ctx, outside, 0, ranks, plan.out_elem is not None)
        lifted = lift_elementwise(nest, ctx, nest.value, operands)
        # the reduced value is one number per position; a wider element is filled with it
        statement, _ = plan.statement(Value(lifted, 0), "=", assumptions, keep=True)
        guard = nonempty(nest, nest.free)
        return rewrite(self.NAME, nest, ctx, f"if {guard}:\n    {statement}", False, assumptions)

    def _reduction(self, nest: Nest, ctx: PatternContext, ranks: Ranks, node: cst.Call, method: str,
                   windows: list[NestAccess], assumptions: list[str]) -> str:
        inner = node.func.value if isinstance(node.func, cst.Attribute) and not _is_torch(node, ctx) \
            else node.args[0].value
        mine = [a for a in windows if _contains(inner, a.node)]
        views = {id(a.node): self._unfold(nest, ctx, a, assumptions) for a in mine}
        shapes = {_window_shape(a) for a in mine}
        # X[i:i + 2] * Y[i:i + 3]: windows of different shapes do not meet elementwise
        if len(shapes) != 1:
            raise NestDecline("windows of different shapes in one reduction")
        count = len(next(iter(shapes)))
        exact = all(ranks.of(a.array) == len(a.subs) for a in mine)
        bare = isinstance(inner, cst.Subscript) or (
            isinstance(inner, cst.Call) and _only_casts(inner) and len(mine) == 1)
        if not exact and not bare:
            # X of shape (H, W, C): a window is (h, w, C) but unfold gives (.., C, h, w),
            # so a kernel would meet the wrong dims
            raise NestDecline(f"the rank of `{mine[0].array}` is not known: add a shape hint "
                              f"(`# loopvec: shapes {mine[0].array}=[...]`) or unpack `{mine[0].array}.shape`")
        # K in (X[i:i + h, j:j + w] * K).sum(): its dims meet the window's from the right
        check_invariants(nest, ctx, inner, count if exact else 0, ranks, False)
        body = lift_elementwise(nest, ctx, inner, views)
        reducer = _REDUCTIONS[method]
        if exact:
            dims = "-1" if count == 1 else "(" + ", ".join(str(-k) for k in range(count, 0, -1)) + ")"
            return f"{as_operand(body)}.{reducer}({dims})"
        # a bare window of unknown rank: reduce all its dims at once
        return f"{as_operand(body)}.flatten({len(nest.free)}).{reducer}(-1)"

    def _unfold(self, nest: Nest, ctx: PatternContext, acc: NestAccess, assumptions: list[str]) -> str:
        """`X[i:i + h, j:j + w]` -> `X.unfold(0, h, 1).unfold(1, w, 1)` (+ `[:n]` if the
        loop walks fewer windows than fit)."""
        text = acc.array
        seen: list[str] = []
        parts: list[tuple[str, str | None]] = []
        for p, s in enumerate(acc.subs):
            if s.kind == "window":
                terms = s.start.terms
                # X[i + 1:i + 3], X[i:i + k, i:i + k]: not a plain grid of windows
                if len(terms) != 1 or s.start.offset != "0":
                    raise NestDecline(f"window `{s.code}` does not start at a multiple of one loop index")
                var, step = terms[0]
                # X[i*s:i*s + k] with s <= 0 or k < 0 (an int argument) wraps around or
                # repeats; unfold would raise where the loop returns
                if not (step.isdigit() and int(step) > 0):
                    raise NestDecline(f"window step `{step}` is not a positive integer literal")
                if not (s.size.isdigit() or measures(cst.parse_expression(s.size), ctx.info, nest.sizes)):
                    raise NestDecline(f"window size `{s.size}` may be negative (not a literal or an array's size)")
                text = f"{as_operand(text)}.unfold({p}, {s.size}, {step})"
                parts.append((":" if _counts_all(nest, acc, p, var, s.size, step) else prefix(nest, var), var))
            elif s.kind == "var":
                parts.append((":" if nest.covers(acc.array, p, s.var) else prefix(nest, s.var), s.var))
                var = s.var
            else:
                raise NestDecline(f"`{code(acc.node)}` mixes windows with other indices")
            if var in seen:
                raise NestDecline(f"`{code(acc.node)}` uses `{var}` in two dims")
            seen.append(var)
        order = nest.free
        if any(v not in order for v in seen) or seen != sorted(seen, key=order.index):
            raise NestDecline(f"the dims of `{code(acc.node)}` are not in the order of `{code(nest.target.node)}`")
        merged: list[str] = []
        k = 0
        for part, var in parts:
            while order[k] != var:
                merged.append("None")
                k += 1
            merged.append(part)
            k += 1
        merged += ["None"] * (len(order) - k)
        return index(text, merged)


class _Blank(cst.CSTTransformer):
    """The expression with the given nodes (the window reductions) replaced by `0`."""

    def __init__(self, nodes: set[int]) -> None:
        self.nodes = nodes

    def on_leave(self, original_node, updated_node):
        return cst.Integer("0") if id(original_node) in self.nodes else updated_node


def _is_torch(node: cst.Call, ctx: PatternContext) -> bool:
    qual = ctx.info.qualname(node.func)
    return qual is not None and qual.startswith("torch.")


def _reductions(value: cst.BaseExpression, ctx: PatternContext, windows) -> list[tuple[cst.Call, str]]:
    """Full reductions whose argument holds a window: `w.sum()`, `torch.max(w)`, ..."""
    found: list[tuple[cst.Call, str]] = []

    class _Finder(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> bool:
            func = node.func
            qual = ctx.info.qualname(func)
            if qual is not None and qual.startswith("torch.") and qual[6:] in _REDUCTIONS:
                # torch.sum(w, 0), torch.max(a, b): not a full reduction of one window
                if len(node.args) == 1 and node.args[0].keyword is None and _holds(node.args[0].value, windows):
                    found.append((node, qual[6:]))
                    return False
            elif isinstance(func, cst.Attribute) and func.attr.value in _REDUCTIONS and qual is None:
                if _holds(func.value, windows):
                    # w.sum(0), w.max(dim=1): a partial reduction keeps dims
                    if node.args:
                        raise NestDecline(f"`{code(node)}` reduces only some dims of the window")
                    found.append((node, func.attr.value))
                    return False
            return True

    traverse.visit(value, _Finder())
    return found


def _holds(node: cst.CSTNode, windows) -> bool:
    return any(_contains(node, a.node) for a in windows)


def _contains(tree: cst.CSTNode, node: cst.CSTNode) -> bool:
    """`node` is `tree` or lies inside it."""
    seen: list[bool] = []

    class _Find(cst.CSTVisitor):
        def on_visit(self, n: cst.CSTNode) -> bool:
            if n is node:
                seen.append(True)
            return not seen

    traverse.visit(tree, _Find())
    return bool(seen)


def _only_casts(node: cst.Call) -> bool:
    """`w.float()`, `w.double()`: the bare window, cast."""
    return isinstance(node.func, cst.Attribute) and node.func.attr.value in {"float", "double", "long", "int"} \
        and not node.args and isinstance(node.func.value, cst.Subscript)


def _window_shape(acc: NestAccess) -> tuple[str, ...]:
    return tuple(s.size or "" for s in acc.subs if s.kind == "window")


def _counts_all(nest: Nest, acc: NestAccess, pos: int, var: str, size: str, step: str) -> bool:
    """The loop's extent for `var` is the number of windows `unfold` makes: `D - k + 1`
    (any form with the same terms, `n - 2` for `n - 3 + 1`) for step 1,
    `(D - k) // s + 1`, or `D // k` for non-overlapping windows."""
    extent = nest.level(var).extent
    dims = [f"{acc.array}.shape[{pos}]", f"{acc.array}.size({pos})"] + ([f"len({acc.array})"] if pos == 0 else [])
    dims += [name for name, found in nest.sizes.items() if (acc.array, pos) in found]
    forms = []
    for d in dims:
        if step == "1" and _same_affine(extent, f"{d} - ({size}) + 1"):
            return True
        forms += [f"({d}-{size})//{step}+1"]
        if step == size:
            forms.append(f"{d}//{size}")
    return extent.replace(" ", "") in {f.replace(" ", "") for f in forms}


def _same_affine(a: str, b: str) -> bool:
    na, nb = cst.parse_expression(a), cst.parse_expression(b)
    names = names_in(na) | names_in(nb)
    fa, fb = affine(na, names), affine(nb, names)
    return fa is not None and fb is not None and dict(fa.terms) == dict(fb.terms) and fa.offset == fb.offset
