"""Sums of products over index sets written as nested loops -> one `torch.einsum`."""

from __future__ import annotations

from loopvec.analysis.module import code
from loopvec.analysis.nest import Nest
from loopvec.rewrite import SAFE, Decline, PatternContext, Rewrite

from ._nest_common import (NestPattern, OutputPlan, Value, cast, einsum_spec, factors, finish_value,
                           force_scalar_elements, is_int_dtype, number, ranks_for, rewrite, scalar_result)


class Einsum(NestPattern):
    """Sums of products over index sets (the catalogue's "Einstein Summation").

    What it rewrites:
        Nests whose innermost statement adds a product of array elements (times numeric
        constants) into an output element, `out[b, o] += input[b, i] * weight[o, i]`, or
        into a scalar that is stored after the inner loops (`acc = 0; for j: acc +=
        W[i][j] * x[j]; res[i] = acc`), or into a number used after the nest (`s = 0.0`
        then `s += A[i, j] * B[i, j]`). The subscript string comes from the nest: one
        letter per loop variable, and letters for the trailing dims of elements that are
        rows or planes (`input[b, i]` of a 4-D `input` is an [H, W] plane).

    Example:
        output = torch.zeros(B, O, H, W)
        for b in range(B):
            for o in range(O):
                for i in range(I):
                    output[b, o] += input[b, i] * weight[o, i]

    Use instead:
        output = torch.einsum('bihw,oi->bohw', input.to(torch.get_default_dtype()),
                              weight.to(torch.get_default_dtype()))
        (`output[b, o] += ...` sums in `output`'s dtype, so the operands are cast to it
        first; when `matmul` recognises `@`, `.T` or a batched product it goes first)
        One or two factors only: with three, einsum contracts pairwise and a term the
        loop makes nan (0 * inf) can come out finite; `broadcast` multiplies those out.
        A dim the loop walks with another array's extent is cut to it (`weight[:, :I]`):
        einsum stretches size-1 dims, the loop would read only what the extent says.

    When it declines:
        bodies that are not products (`(a - b) ** 2`: see broadcast), integer outputs
        (no integer einsum on CUDA), an output index no factor uses, a summed index no
        factor uses, windows and index arithmetic (see window), triangular ranges,
        break, side effects. An array whose rank is unknown is taken to have one dim per
        index (recorded as an assumption; einsum raises if it has more).
    """

    NAME = "einsum"
    DESCRIPTION = "sums of products over nested index loops -> torch.einsum"
    SAFETY = SAFE
    ORDER = 34

    def _match(self, nest: Nest, ctx: PatternContext) -> Rewrite | Decline:
        # out[i, j] = a[i] * b[j]: nothing is summed (see broadcast)
        if nest.kind == "store":
            return Decline(self.NAME, "a plain store sums nothing (see broadcast)")
        if nest.index_values:
            return Decline(self.NAME, f"the index `{nest.index_values[0]}` is used as a value")
        found = factors(nest.value)
        # (x[i] - y[j]) ** 2, A[i, k] + B[k, j]: not a product of elements
        if found is None or not found[0]:
            return Decline(self.NAME, f"`{code(nest.value)}` is not a product of array elements")
        nodes, constants = found
        # x[b, i] * A[i, j] * y[b, j]: einsum sums over i before multiplying by y, so
        # 0 * inf terms (nan in the loop) can vanish; one product per term needs two factors
        if len(nodes) > 2:
            return Decline(self.NAME, "three or more factors: einsum would contract them pairwise (see broadcast)")
        # 0 * A[i, k] * B[k, j]: the loop's 0 * inf is nan, the factored 0 * sum may not be
        if any(number(c) in (0, None) for c in constants):
            return Decline(self.NAME, "a zero constant factor")
        accs = [a for a in nest.reads if any(a.node is n for n in nodes)]
        if len(accs) != len(nodes):
            return Decline(self.NAME, "a factor is not an array element indexed by the loop")
        for acc in accs:
            if not acc.simple:
                return Decline(self.NAME, f"`{code(acc.node)}` is not indexed by plain loop variables")
        used = {v for a in accs for v in a.vars}
        missing = [v for v in nest.free if v not in used]
        # for j: out[i, j] += a[i]: einsum has no letter for j to broadcast along
        if missing:
            return Decline(self.NAME, f"the output index `{missing[0]}` is not used by any factor")
        ranks = ranks_for(nest, ctx)
        force_scalar_elements(nest, ranks, tuple(accs))
        assumptions = list(ranks.assumed)
        for acc in accs:
            if ranks.elem(acc) is None:
                # einsum checks each operand's rank against its subscripts and raises
                ranks.known[acc.array] = len(acc.subs)
                assumptions.append(f"`{acc.array}` is {len(acc.subs)}-D")
        spec = einsum_spec(nest, accs, ranks, assumptions)
        scale = " * ".join(code(c) for c in constants)

        def total(dtype: str | None) -> str:
            if dtype is None and len(accs) == 2:
                # A[i, j] * B[i, j] promotes float32 with float64; einsum refuses mixed dtypes
                a, b = (acc.array for acc in accs)
                dtype = f"{ctx.torch}.promote_types({a}.dtype, {b}.dtype)" if a != b else None
            ops = ", ".join(cast(op, dtype) for op in spec.operands)
            text = f"{ctx.torch}.einsum({spec.spec!r}, {ops})"
            return f"{scale} * {text}" if scale else text

        # a one-operand einsum is a sum: it widens narrow integers as .sum() does
        keeps = len(accs) > 1 and not scale
        if nest.scalar_result:
            return scalar_result(self.NAME, nest, ctx, total(None), keeps, assumptions)
        plan = OutputPlan.for_nest(nest, ctx, ranks)
        if nest.kind == "accumulate":
            # out[...] += ... sums in out's dtype: the operands are cast to it first
            if is_int_dtype(plan.dtype):
                return Decline(self.NAME, f"integer output `{plan.dtype}`: integer einsum is not implemented on CUDA")
            value = Value(total(plan.dtype), spec.elem_rank, True, plan.dtype, spec.trailing, mixed=spec.mixed)
            statement, drop = plan.statement(value, "+=", assumptions)
        else:
            dtype = plan.float_dtype
            text = finish_value(nest, ctx, total(dtype), keeps, spec.elem_rank, ranks, plan.out_elem is not None)
            value = Value(text, spec.elem_rank, True, dtype if text == total(dtype) else None, spec.trailing,
                          mixed=spec.mixed)
            statement, drop = plan.statement(value, "=", assumptions)
        return rewrite(self.NAME, nest, ctx, statement, drop, assumptions)
