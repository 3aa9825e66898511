"""Matrix products written as loops: `@` for matmul, matrix-vector and batched products,
`diagonal()` for traces and diagonals."""

from __future__ import annotations

import libcst as cst

from loopvec.analysis.module import code
from loopvec.analysis.nest import Nest, NestAccess
from loopvec.lift import as_operand
from loopvec.rewrite import SAFE, Decline, PatternContext, Rewrite

from ._nest_common import (NestPattern, OutputPlan, Ranks, Value, cast, extent_slice, factors, finish_value,
                           force_scalar_elements, index, is_int_dtype, prefix, ranks_for, rewrite, scalar_result)


class Matmul(NestPattern):
    """Matrix products (the catalogue's Pattern 5, and its trace/diagonal einsums).

    What it rewrites:
        * `C[i, j] += A[i, k] * B[k, j]` over i, j, k (either factor may be transposed,
          `A[k, i]`), matrix-vector and vector-matrix products, and the batched
          `C[b, i, j] += A[b, i, k] * B[b, k, j]` -- accumulated into an element, or into a
          scalar that is then stored (`acc = 0; for k: acc += ...; C[i, j] = acc`);
        * `out[b] = x[b] @ w[b]` (and `x[b] @ W`): one product per batch row;
        * `t = 0; for i: t += A[i, i]` (a trace) and `d[i] = A[i, i]` (a diagonal).

    Example:
        result = torch.zeros(m, n)
        for i in range(m):
            for j in range(n):
                for k in range(p):
                    result[i, j] += A[i, k] * B[k, j]

    Use instead:
        result = A.to(torch.get_default_dtype()) @ B.to(torch.get_default_dtype())
        (`result[i, j] += ...` sums in `result`'s dtype, so the operands are cast to it
        first; a non-zero or argument output keeps its values: `C[:m, :n] += A @ B`)

    When it declines:
        operands whose rank is not known (`A[i, k]` of a 3-D `A` is a row, and `@` would
        batch it differently -- einsum takes those), integer accumulators (no integer
        matmul on CUDA), products of three factors or with constants (see `einsum`),
        transposed outputs, index arithmetic, triangular ranges, break, side effects,
        and everything `loopvec.analysis.nest` refuses.
    """

    NAME = "matmul"
    DESCRIPTION = "matrix products, traces and diagonals written as nested loops -> @ / diagonal()"
    SAFETY = SAFE
    ORDER = 32

    def _match(self, nest: Nest, ctx: PatternContext) -> Rewrite | Decline:
        # out[i, j] = A[i, j] * i: the index as a number is not a product of tensors
        if nest.index_values:
            return Decline(self.NAME, f"the index `{nest.index_values[0]}` is used as a value")
        ranks = ranks_for(nest, ctx)
        if nest.kind == "store":
            return self._store(nest, ctx, ranks)
        found = factors(nest.value)
        # (A[i, k] + B[i, k]) * C[k, j]: not a product of accesses
        if found is None:
            return Decline(self.NAME, f"`{code(nest.value)}` is not a product of array elements")
        nodes, constants = found
        # 2 * A[i, k] * B[k, j]: einsum keeps the constant
        if constants:
            return Decline(self.NAME, "the product has a constant factor (see einsum)")
        accs = [a for a in nest.reads if any(a.node is n for n in nodes)]
        if len(nodes) == 1 and nest.scalar_result:
            return self._trace(nest, ctx, ranks, accs[0])
        if len(nodes) != 2 or len(accs) != 2:
            return Decline(self.NAME, f"`{code(nest.value)}` is not a product of two array elements")
        force_scalar_elements(nest, ranks, tuple(accs))
        return self._product(nest, ctx, ranks, accs[0], accs[1])

    # ------------------------------------------------------------------ products
    def _product(self, nest: Nest, ctx: PatternContext, ranks: Ranks, a: NestAccess, b: NestAccess):
        for acc in (a, b):
            # A[i, k] of a 3-D A is a row: `@` would treat the extra dim as a batch
            if ranks.elem(acc) != 0:
                return Decline(self.NAME, f"`{code(acc.node)}` is not known to be a single element "
                                          f"(rank of `{acc.array}` unknown or too high): see einsum")
            if not all(s.kind == "var" for s in acc.subs):
                return Decline(self.NAME, f"`{code(acc.node)}` is not indexed by loop variables alone")
        if len(nest.contracted) != 1:
            return Decline(self.NAME, f"contracts over {len(nest.contracted)} indices, not one")
        k = nest.contracted[0]
        form = _matmul_form(a, b, k, nest.free) or _matmul_form(b, a, k, nest.free)
        if form is None:
            return Decline(self.NAME, "the indices are not those of a (batched) matrix product: see einsum")
        left, left_t, right, right_t = form
        assumptions = list(ranks.assumed)
        operands = []
        # `@` insists on equal inner and matrix dims; only batch dims broadcast
        batch = set(nest.free[:-2]) if len(nest.free) == 3 else set()
        for acc, transposed in ((left, left_t), (right, right_t)):
            parts = [extent_slice(nest, acc, p, s.var, assumptions, strict=s.var not in batch)
                     for p, s in enumerate(acc.subs)]
            text = index(acc.array, parts)
            operands.append(f"{as_operand(text)}.T" if transposed else text)
        if nest.scalar_result:
            return scalar_result(self.NAME, nest, ctx, f"{operands[0]} @ {operands[1]}", True, assumptions)
        plan = OutputPlan.for_nest(nest, ctx, ranks)
        if nest.kind == "accumulate":
            # out[i, j] += ... sums in out's dtype: the operands are cast to it first
            if is_int_dtype(plan.dtype):
                return Decline(self.NAME, f"integer accumulator `{plan.dtype}`: integer matmul is not "
                                          "implemented on CUDA")
            product = f"{cast(operands[0], plan.dtype)} @ {cast(operands[1], plan.dtype)}"
            value = Value(product, 0, True, plan.dtype)
            statement, drop = plan.statement(value, "+=", assumptions)
        else:
            # acc = 0.0; acc += ...; out[i] = acc: the sum ends in out's dtype; where the
            # source names a float one, summing in it also takes mixed and integer operands
            dtype = plan.float_dtype
            product = f"{cast(operands[0], dtype)} @ {cast(operands[1], dtype)}"
            total = finish_value(nest, ctx, product, True, 0, ranks, plan.out_elem is not None)
            statement, drop = plan.statement(Value(total, 0, dtype=dtype if total == product else None), "=",
                                             assumptions)
        return rewrite(self.NAME, nest, ctx, statement, drop, assumptions)

    # ------------------------------------------------------------------ traces
    def _trace(self, nest: Nest, ctx: PatternContext, ranks: Ranks, a: NestAccess):
        subs = a.subs
        # t += A[i, i] walks the diagonal; t += A[i, j] is a plain sum (see reduction)
        if not (len(subs) == 2 and all(s.kind == "var" for s in subs) and subs[0].var == subs[1].var):
            return Decline(self.NAME, f"`{code(a.node)}` is not a diagonal element `A[i, i]`")
        var = subs[0].var
        assumptions = list(ranks.assumed)
        diag = _diagonal(nest, a, var, ranks)
        # `c + A[0, 0] + ...` is computed in result_type(A, c): int32 stays int32 where
        # .sum() widens it, bools count as int64, uint8 under `c = 0.0` sums as float
        dims = "" if ranks.of(a.array) == 2 else "-1, "
        init = code(nest.scalar_init)
        total = f"{diag}.sum({dims}dtype={ctx.torch}.result_type({a.array}, {init}))"
        return scalar_result(self.NAME, nest, ctx, total, True, assumptions, in_loop_dtype=True)

    # ------------------------------------------------------------------ stores
    def _store(self, nest: Nest, ctx: PatternContext, ranks: Ranks):
        value = nest.value
        if isinstance(value, cst.Subscript):
            return self._diagonal_store(nest, ctx, ranks)
        if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.MatrixMultiply):
            return self._batched(nest, ctx, ranks, value)
        return Decline(self.NAME, "a store that is neither a diagonal nor a per-row `@`")

    def _diagonal_store(self, nest: Nest, ctx: PatternContext, ranks: Ranks):
        a = nest.reads[0] if nest.reads else None
        if a is None or len(nest.free) != 1 or len(a.subs) != 2 or not all(s.kind == "var" for s in a.subs) \
                or a.subs[0].var != a.subs[1].var:
            return Decline(self.NAME, "the stored element is not a diagonal element `A[i, i]`")
        force_scalar_elements(nest, ranks, (a,))
        # A.diagonal() puts the diagonal last: only for a 2-D A is that the only dim
        if ranks.of(a.array) != 2:
            return Decline(self.NAME, f"`{a.array}` is not known to be 2-D")
        assumptions = list(ranks.assumed)
        diag = _diagonal(nest, a, a.subs[0].var, ranks)
        plan = OutputPlan.for_nest(nest, ctx, ranks)
        statement, drop = plan.statement(Value(diag, 0, fresh=False), "=", assumptions)
        return rewrite(self.NAME, nest, ctx, statement, drop, assumptions)

    def _batched(self, nest: Nest, ctx: PatternContext, ranks: Ranks, value: cst.BinaryOperation):
        if len(nest.levels) != 1:
            return Decline(self.NAME, "a per-row `@` inside more than one loop")
        var = nest.free[0]
        sides = []
        for side in (value.left, value.right):
            if isinstance(side, cst.Subscript) and any(side is r.node for r in nest.reads):
                acc = next(r for r in nest.reads if r.node is side)
                if len(acc.subs) != 1 or acc.subs[0].var != var:
                    return Decline(self.NAME, f"`{code(side)}` is not a row `x[{var}]`")
                elem = ranks.elem(acc)
                sides.append((acc, elem))
            elif isinstance(side, cst.Name) and side.value not in nest.vars:
                sides.append((side.value, ranks.of(side.value)))
            else:
                return Decline(self.NAME, f"`{code(side)}` is neither a row nor an array")
        (left, lrank), (right, rrank) = sides
        if lrank is None or rrank is None:
            return Decline(self.NAME, "the ranks of the operands are not known: add a shape hint")
        if not isinstance(left, NestAccess):
            return Decline(self.NAME, "the left operand does not depend on the loop")
        # x[b] @ w[b] is x @ w when both rows are matrices of one rank; x[b] @ W when W
        # has no more dims than a row (else its leading dims would meet the batch dim)
        if isinstance(right, NestAccess):
            ok = lrank >= 2 and rrank >= 2 and lrank == rrank
        else:
            ok = lrank >= 2 and (rrank == 1 or 2 <= rrank <= lrank)
        if not ok:
            return Decline(self.NAME, "the rows are not matrices of one rank: `@` would batch them differently")
        assumptions = list(ranks.assumed)
        lcode = index(left.array, [extent_slice(nest, left, 0, var, assumptions)])
        rcode = index(right.array, [extent_slice(nest, right, 0, var, assumptions)]) if isinstance(
            right, NestAccess) else right
        elem = lrank if rrank != 1 else lrank - 1
        trailing = None
        if lrank == 2 and rrank == 2:
            trailing = ((left.array, 1), (right.array, 2) if isinstance(right, NestAccess) else (right, 1))
        plan = OutputPlan.for_nest(nest, ctx, ranks)
        # rows of rank > 2 carry batch dims of their own, which broadcast against each other
        value = Value(f"{lcode} @ {rcode}", elem, trailing=trailing, mixed=lrank > 2)
        statement, drop = plan.statement(value, "=", assumptions)
        return rewrite(self.NAME, nest, ctx, statement, drop, assumptions)


def _matmul_form(a: NestAccess, b: NestAccess, k: str, free: tuple[str, ...]):
    """(left, transpose?, right, transpose?) when `a * b` summed over k is `left @ right`."""
    va, vb = [s.var for s in a.subs], [s.var for s in b.subs]
    if k not in va or k not in vb or len(set(va)) != len(va) or len(set(vb)) != len(vb):
        return None
    if len(va) == 2 and len(vb) == 2:
        i = va[1] if va[0] == k else va[0]
        j = vb[1] if vb[0] == k else vb[0]
        if i != j and free == (i, j):
            return a, va != [i, k], b, vb != [k, j]
    if len(va) == 2 and vb == [k]:
        i = va[1] if va[0] == k else va[0]
        if free == (i,):
            return a, va != [i, k], b, False
    if va == [k] and len(vb) == 2:
        j = vb[1] if vb[0] == k else vb[0]
        if free == (j,):
            return a, False, b, vb != [k, j]
    if va == [k] and vb == [k] and free == ():
        return a, False, b, False
    if len(va) == 3 and va[2] == k:
        bt, i = va[0], va[1]
        if vb == [bt, k, vb[2]] and len(vb) == 3 and free == (bt, i, vb[2]) and len({bt, i, vb[2]}) == 3:
            return a, False, b, False
        if len(vb) == 2 and vb[0] == k and free == (bt, i, vb[1]) and len({bt, i, vb[1]}) == 3:
            return a, False, b, False
    return None


def _diagonal(nest: Nest, a: NestAccess, var: str, ranks: Ranks) -> str:
    """`A.diagonal()`, cut to the loop's extent unless that is one of A's dims."""
    # range(len(A)) on a wide A walks min(m, n) = m diagonal elements; a tall A raises
    if nest.covers(a.array, 0, var) or nest.covers(a.array, 1, var):
        return f"{a.array}.diagonal()"
    cut = prefix(nest, var)
    return f"{a.array}.diagonal()[{cut}]" if ranks.of(a.array) == 2 else f"{a.array}.diagonal()[..., {cut}]"
