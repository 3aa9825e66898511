"""Elementwise bodies over several indices -> one broadcast expression (and a sum over
the summed indices)."""

from __future__ import annotations

from loopvec.analysis.nest import Nest
from loopvec.lift import as_operand
from loopvec.rewrite import SAFE, Decline, PatternContext, Rewrite

from ._nest_common import (NestPattern, OutputPlan, Value, aligned, check_invariants, finish_value,
                           force_scalar_elements, lift_elementwise, ranks_for, require_ranks, rewrite, scalar_result,
                           trailing_dims)


class Broadcast(NestPattern):
    """Elementwise bodies over several indices (the catalogue's Pattern 6).

    What it rewrites:
        Nests whose innermost statement computes a value from array elements with
        operators and elementwise functions (the shared lifting table) and stores it,
        `result[b, c] = image[b, c] * mask`, or adds it up over the indices the output
        does not name, `D[i, j] += (X[i, k] - Y[j, k]) ** 2` (also through a scalar:
        `s = 0.0; for k: s += ...; D[i, j] = s ** 0.5`). Each element becomes its whole
        array with its dims moved into the order of the loop variables and `None` where
        it lacks one (`a[i] * b[j]` -> `a[:, None] * b[None, :]`); summed indices become
        a `.sum(dims)`.

    Example:
        result = torch.zeros(B, C, H, W)
        for b in range(B):
            for c in range(C):
                result[b, c] = image[b, c] * mask  # mask is [H, W]

    Use instead:
        result = torch.zeros(B, C, H, W)
        if B > 0 and C > 0:
            result[:] = image * mask
        (writing into `result` casts to its dtype like `result[b, c] = v` did; the
        allocation goes -- `out = (a[:, None] * b[None]).to(dtype)` -- when the value's
        shape is provably the allocation's, which `mask`'s unknown dims prevent: with no
        iteration the loop never checks them against `image`'s, hence the guard.
        `D[i, j] += v` sums in `D`'s dtype: `.sum(2, dtype=...)`; every term is
        computed as the loop computes it, so nan and inf come out where the loop's do)

    When it declines:
        arrays whose rank is unknown where alignment depends on it (hint the shape or
        unpack `x.shape`), diagonals (`A[i, i]`: see matmul), index arithmetic and
        windows, loop indices used as numbers, calls the lifting table does not know,
        sums of Python ints (`acc += int(a) * int(b)` never overflows; an int64 sum
        wraps), `s = 0` integer accumulators feeding further arithmetic, triangular
        ranges, an output read in the body, break, side effects.
    """

    NAME = "broadcast"
    DESCRIPTION = "elementwise bodies over several indices (outer products, pairwise distances) -> broadcasting"
    SAFETY = SAFE
    ORDER = 36

    def _match(self, nest: Nest, ctx: PatternContext) -> Rewrite | Decline:
        # out[i, j] = i * n + j: the index as a number would need an arange per dim
        if nest.index_values:
            return Decline(self.NAME, f"the index `{nest.index_values[0]}` is used as a value")
        # one loop: the elementwise and reduction patterns own it
        if len(nest.levels) < 2:
            return Decline(self.NAME, "a single loop (see elementwise / reduction)")
        accs = nest.reads
        ranks = ranks_for(nest, ctx)
        force_scalar_elements(nest, ranks, accs)
        require_ranks(accs, ranks)
        assumptions = list(ranks.assumed)
        elems = [ranks.elem(a) for a in accs]
        plan = OutputPlan.for_nest(nest, ctx, ranks) if nest.target is not None else None
        width = max(elems, default=0)
        if plan is not None and plan.out_elem is not None:
            width = max(width, plan.out_elem)
        # a[i] * M with M a matrix: M's dims meet the element's trailing dims, which
        # only line up when every element is padded to the same width
        order = nest.free + nest.contracted
        operands = {id(a.node): aligned(nest, a, order, width - e, ranks, assumptions) for a, e in zip(accs, elems)}
        bounded = plan is not None and plan.out_elem is not None
        invariants = check_invariants(nest, ctx, nest.value, width, ranks, bounded)
        lifted = lift_elementwise(nest, ctx, nest.value, operands, summed=nest.kind != "store")
        # image[b, c] * mask: the element's dims are image's only if nothing else has
        # dims (mask [5, W] against image [B, C, 1, W] widens it, unless no iteration runs);
        # out elements wider than every operand element are filled, not computed
        mixed = width > 0 and sum(1 for e in elems if e) + len(invariants) > 1
        trailing = trailing_dims(accs, elems) if width == max(elems, default=0) and not mixed else None
        used = {v for a in accs for v in a.vars}
        complete = all(v in used for v in nest.free)
        dims = tuple(range(len(nest.free), len(order)))
        dims_code = (str(dims[0]) if len(dims) == 1 else str(dims)) if dims else ""
        if nest.kind == "store":
            value = Value(lifted, width, fresh=_fresh(lifted, operands), trailing=trailing, complete=complete,
                          mixed=mixed)
            statement, drop = plan.statement(value, "=", assumptions)
        elif nest.scalar_result:
            total = f"{as_operand(lifted)}.sum({dims_code})"
            return scalar_result(self.NAME, nest, ctx, total, False, assumptions)
        elif nest.kind == "accumulate":
            # out[i, j] += v adds each term into out's dtype: the sum runs in it too
            text = f"{as_operand(lifted)}.sum({dims_code}, dtype={plan.dtype})" if dims else lifted
            value = Value(text, width, fresh=bool(dims) or _fresh(lifted, operands),
                          dtype=plan.dtype if dims else None, trailing=trailing, complete=complete, mixed=mixed)
            statement, drop = plan.statement(value, "+=", assumptions)
        else:
            total = f"{as_operand(lifted)}.sum({dims_code})"
            text = finish_value(nest, ctx, total, False, width, ranks, bounded)
            value = Value(text, width, fresh=True, trailing=trailing, complete=complete, mixed=mixed)
            statement, drop = plan.statement(value, "=", assumptions)
        return rewrite(self.NAME, nest, ctx, statement, drop, assumptions)


def _fresh(lifted: str, operands: dict[int, str]) -> bool:
    """A bare operand (`out[i, j] = A[j, i]` -> `A.T`) is a view of an input; arithmetic is new."""
    return lifted not in operands.values() and lifted.strip("()") not in operands.values()

