"""Gathers and scatters: reads and writes at indices taken from another tensor."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from loopvec.analysis.bindings import allocated_rank, full_dtype_problem, function_bindings, measures, sizes_of
from loopvec.analysis.facts import python_lists
from loopvec.analysis.loops import Init, Loop, names_in
from loopvec.analysis.module import code, dotted, number_value, only
from loopvec.assemble import collect, store
from loopvec.guards import collected_list, map_loop_problem, used_after_problem
from loopvec.lift import Lifted, LiftError, LiftScope, as_operand, lift
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite


class Gather:
    """Indexed reads and writes (the catalogue's "Gather and Scatter").

    What it rewrites:
        * gathers: `out[i] = data[idx[i]]`, `for i, k in enumerate(idx): out[i] = data[k]`,
          `rows.append(data[k])` + `torch.stack(rows)` (and comprehensions), including
          per-row picks `data[i, labels[i]]`;
        * indexed stores of one value: `out[i, labels[i]] = 1` (one-hot), `out[idx[i]] = 0`;
        * scatter-adds and counts: `out[idx[i]] += v[i]`, `counts[l] += 1` for `l in labels`.

    Example:
        out = torch.zeros(len(idx), data.shape[1])
        for i in range(len(idx)):
            out[i] = data[idx[i]]

        onehot = torch.zeros(len(labels), C)
        for i in range(len(labels)):
            onehot[i, labels[i]] = 1

        counts = torch.zeros(C)
        for l in labels:
            counts[l] += 1

    Use instead:
        out = data[idx].to(torch.get_default_dtype())   # the allocation's dtype; a copy
        onehot[torch.arange(len(labels), device=labels.device), labels] = 1
        counts.index_add_(0, torch.where(labels < 0, labels + len(counts), labels),
                          torch.ones_like(labels, dtype=counts.dtype))
        (`index_add_` sums repeated indices as the loop does, where `counts[labels] += 1`
        would count each index once. It rejects negative indices, which Python indexing
        wraps, so they are wrapped first; like the loop it raises on an index out of range;
        unlike `bincount` it raises on a bool/uint8 index, which the loop reads as a mask,
        and on a value whose shape is not a row's, rather than give another answer. The
        one-hot store is an indexed assignment because `F.one_hot` and `scatter_` reject
        the negative labels the loop wraps.)

    When it declines:
        a plain store of per-element values at gathered indices (`out[idx[i]] = v[i]`:
        with repeated indices the last write wins, which no vectorized op promises),
        an allocation whose row shape cannot be tied to the gathered rows (`torch.zeros(n, D)`
        with `data` possibly 1-D would broadcast each scalar over a row), the output read in
        the body, `*=` and other updates without an index_add_ twin, loop-carried reads,
        break/return, side effects, partial or strided ranges, Python lists (iterated,
        indexed with, or counted into), loop variables used after the loop.
    """

    NAME = "gather"
    DESCRIPTION = "indexed reads/writes (out[i] = data[idx[i]], one-hot, scatter-add, counts) -> advanced indexing / index_add_"
    SAFETY = SAFE
    ORDER = 15

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        problem = map_loop_problem(loop)
        if problem:
            return Decline(self.NAME, problem)
        # `for v in values` where values = [..] or `values: list[int]`: no tensor to index with
        lists = python_lists(loop, ctx.info)
        if lists:
            return Decline(self.NAME, f"`{lists[0]}` is a Python list, not a tensor")
        try:
            if loop.kind == "comprehension":
                return self._comprehension(loop, ctx)
            return self._for(loop, ctx)
        except LiftError as exc:
            return Decline(self.NAME, str(exc))

    # ------------------------------------------------------------------ comprehension
    def _comprehension(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        # [data[k] for k in idx if k > 0]: a filter changes the length
        if loop.conditions:
            return Decline(self.NAME, "comprehension with a condition")
        scope = _scope(loop, ctx)
        read = gathered_read(loop.element, scope, ctx)
        new = collect(loop.collector, read.lifted, scope)
        return Rewrite(self.NAME, loop, (Edit(loop.collector.call, as_operand(new)),),
                       f"becomes `{new}`", SAFE, _assumptions(scope, read.indices), ctx.imports)

    # ------------------------------------------------------------------ for loops
    def _for(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        # total += x[idx[i]]: a reduction of a gather, not a gather
        if loop.accumulators:
            return Decline(self.NAME, "accumulates into a name (a reduction)")
        # `t = data[k]; out[i] = t * 2`: temporaries are the elementwise pattern's business
        if len(loop.body) != 1:
            return Decline(self.NAME, "the body is not a single statement")
        problem = used_after_problem(loop, set())
        if problem:
            return Decline(self.NAME, problem)
        small = only(loop.body[0])
        scope = _scope(loop, ctx)
        if len(loop.appends) == 1 and not loop.writes and small is loop.appends[0].statement:
            return self._appended(loop, ctx, scope)
        if len(loop.writes) == 1 and not loop.appends:
            if isinstance(small, cst.AugAssign) and small.target is loop.writes[0].node:
                return self._scatter_add(loop, ctx, scope, small)
            if isinstance(small, cst.Assign) and len(small.targets) == 1 \
                    and small.targets[0].target is loop.writes[0].node:
                return self._assigned(loop, ctx, scope, small)
        return Decline(self.NAME, "body is not one append, one `out[...] = ...` or one `out[...] += ...`")

    def _appended(self, loop: Loop, ctx: PatternContext, scope: LiftScope) -> Rewrite | Decline:
        app = loop.appends[0]
        found = collected_list(loop, app.target)
        if isinstance(found, str):
            return Decline(self.NAME, found)
        init, finish = found
        read = gathered_read(app.value, scope, ctx)
        new = collect(finish, read.lifted, scope)
        final = f"{finish.target} = {new}" if finish.target else f"return {new}"
        edits = (Edit(init.statement, None), Edit(loop.node, None), Edit(finish.statement, final))
        return Rewrite(self.NAME, loop, edits, f"becomes `{final}`", SAFE,
                       _assumptions(scope, read.indices), ctx.imports)

    def _assigned(self, loop: Loop, ctx: PatternContext, scope: LiftScope, small: cst.Assign) -> Rewrite | Decline:
        write = loop.writes[0]
        target = small.targets[0].target
        assert isinstance(target, cst.Subscript)
        out = write.array
        # out[i] = out.sum(): the value sees earlier iterations' writes
        if out in names_in(small.value) or out.split(".")[0] in scope.loop_names:
            return Decline(self.NAME, f"the value reads `{out}`, which the loop writes")
        dom = loop.domain
        if dom.index is not None and write.index == (dom.index,) and _single_level(target):
            return self._stored_gather(loop, ctx, scope, small, write)
        return self._index_store(loop, ctx, scope, small, target)

    # ------------------------------------------------------------------ out[i] = data[idx[i]]
    def _stored_gather(self, loop, ctx, scope, small, write) -> Rewrite | Decline:
        read = gathered_read(small.value, scope, ctx)
        init = loop.setup.get(write.array)
        # `out` a parameter or built elsewhere: its rows may be wider than data's
        if init is None or init.kind not in ("alloc", "like", "clone") or not isinstance(init.value, cst.Call):
            return Decline(self.NAME, f"`{write.array}` is not allocated in this function: "
                                      "cannot tie its row shape to the gathered rows")
        problem = _row_shape_problem(init, read, loop) or full_dtype_problem(init)
        if problem:
            return Decline(self.NAME, problem)
        stored = store(init, write, read.lifted, scope, loop, shape_proven=True)
        edits = [Edit(loop.node, stored.statement)]
        if stored.drop_init:
            edits.insert(0, Edit(init.statement, None))
        return Rewrite(self.NAME, loop, tuple(edits), f"becomes `{stored.statement}`", SAFE,
                       _assumptions(scope, read.indices), ctx.imports)

    # ------------------------------------------------------------------ out[i, labels[i]] = 1
    def _index_store(self, loop, ctx, scope, small, target: cst.Subscript) -> Rewrite | Decline:
        base = dotted(target.value)
        # out[k][j] = ...: chained subscripts index a temporary view, not `out` at (k, j)
        if base is None or not _single_level(target):
            return Decline(self.NAME, f"`{code(target)}` is not a single subscript of a named tensor")
        problem = _not_a_tensor(loop.setup.get(base), base)
        if problem:
            return Decline(self.NAME, problem)
        value = small.value
        index = vector_index(target, scope, ctx)
        # out[i, 0] = x[i]: a store at the loop index is a map (elementwise), not a scatter
        if not index.gathered:
            return Decline(self.NAME, f"`{code(target)}` is not written at a gathered index")
        # out[idx[i]] = v[i]: with a repeated index the last write wins, which no vectorized
        # store promises (torch leaves the order of duplicate writes unspecified)
        if names_in(value) & scope.loop_names:
            return Decline(self.NAME, f"stores per-element values at gathered indices `{code(target)}`: "
                                      "repeated indices would keep an unspecified one")
        new = f"{base}[{index.code}] = {code(value)}"
        return Rewrite(self.NAME, loop, (Edit(loop.node, new),), f"becomes `{new}`", SAFE,
                       _assumptions(scope, index.indices), ctx.imports)

    # ------------------------------------------------------------------ out[idx[i]] += v[i]
    def _scatter_add(self, loop, ctx, scope, small: cst.AugAssign) -> Rewrite | Decline:
        target = small.target
        assert isinstance(target, cst.Subscript)
        base = dotted(target.value)
        op = small.operator
        # out[k] *= v: products and other ops have no index_add_ twin
        if not isinstance(op, (cst.AddAssign, cst.SubtractAssign)):
            spelled = code(small)[len(code(target)):].split("=")[0].strip() + "="
            return Decline(self.NAME, f"`{spelled}` into `{code(target)}`: only `+=` and `-=` have an "
                                      "index_add_ twin")
        if base is None or not _single_level(target) or len(target.slice) != 1:
            return Decline(self.NAME, f"`{code(target)}` is not `out[index]`")
        # out[k] += out.sum(): the value sees earlier iterations' additions
        if base in names_in(small.value) or base.split(".")[0] in scope.loop_names:
            return Decline(self.NAME, f"the value reads `{base}`, which the loop writes")
        comp = classify(target.slice[0].slice, scope, ctx)
        # out[i] += v[i]: one row per iteration is an elementwise update, not a scatter
        if comp.kind != "gather":
            return Decline(self.NAME, f"`{code(target)}` is not written at a gathered index")
        init = loop.setup.get(base)
        problem = _not_a_tensor(init, base)
        if problem:
            return Decline(self.NAME, problem)
        one_d = init is not None and allocated_rank(init) == 1
        value = lift(small.value, scope)
        idx = comp.code
        wrapped = f"{ctx.torch}.where({idx} < 0, {idx} + len({base}), {idx})"
        if value.batched:
            # out[k] += v[i] with out 2-D and v 1-D adds one number to a whole row; index_add_
            # wants v's rows shaped like out's, so that must follow from the allocation
            if not one_d:
                problem = _scatter_rows_problem(init, small.value, scope, loop)
                if problem:
                    return Decline(self.NAME, problem)
            # out[k] += v casts v into out's dtype at every step; index_add_ wants them equal
            source = f"{as_operand(value.code)}.to({base}.dtype)"
            if isinstance(op, cst.SubtractAssign):
                source = f"{source}.neg()"
        elif number_value(small.value) is not None:
            amount = code(small.value)
            if isinstance(op, cst.SubtractAssign):
                amount = amount[1:] if amount.startswith("-") else f"-{amount}"
            if one_d:
                source = (f"{ctx.torch}.ones_like({idx}, dtype={base}.dtype)" if amount == "1"
                          else f"{ctx.torch}.full_like({idx}, {amount}, dtype={base}.dtype)")
            else:
                source = f"{base}.new_full((len({idx}), *{base}.shape[1:]), {amount})"
        else:
            # out[k] += w with w a tensor: its shape against a row is not known here
            return Decline(self.NAME, f"adds the loop-invariant `{code(small.value)}`: only numbers are supported")
        new = f"{base}.index_add_(0, {wrapped}, {source})"
        assumptions = _assumptions(scope, (comp.array,))
        return Rewrite(self.NAME, loop, (Edit(loop.node, new),), f"becomes `{new}`", SAFE, assumptions, ctx.imports)


# --------------------------------------------------------------------------- index vocabulary


@dataclass(frozen=True)
class Component:
    """One position of an index: what it is per iteration and what it is over the loop.

    kind: arange (the loop index `i`), gather (`idx[i]` or the element `k` of `idx`),
    const (an integer literal), slice (`:`).
    """

    kind: str
    code: str
    array: str | None = None  # for gathers: the index tensor's own name (for .device)


def classify(sl: cst.BaseSlice, scope: LiftScope, ctx: PatternContext) -> Component:
    dom = scope.domain
    if isinstance(sl, cst.Slice):
        if sl.lower is None and sl.upper is None and sl.step is None:
            return Component("slice", ":")
        raise LiftError(f"slice `{code(sl)}` next to a gathered index")
    assert isinstance(sl, cst.Index)
    node = sl.value
    if isinstance(node, cst.Name) and node.value == dom.index:
        return Component("arange", f"{ctx.torch}.arange({dom.extent}, device={{device}})")
    if isinstance(node, cst.Name) and node.value in scope.elements:
        arrays = dict(dom.elements)
        return Component("gather", scope.elements[node.value].code, arrays[node.value])
    if isinstance(number_value(node), int):
        return Component("const", code(node))
    if isinstance(node, cst.Subscript) and len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index):
        inner = node.slice[0].slice.value
        head = dotted(node.value)
        if head is not None and isinstance(inner, cst.Name) and inner.value == dom.index:
            if head.split(".")[0] in scope.loop_names:
                raise LiftError(f"`{code(node)}` indexes with an array bound in the loop")
            # perm[i] over range(len(x)) reads only perm's first len(x) entries
            whole = head if head in dom.arrays else f"{head}[:{dom.extent}]"
            return Component("gather", whole, head)
    raise LiftError(f"index `{code(node)}` is neither the loop index, a gathered index nor a literal")


@dataclass(frozen=True)
class VectorIndex:
    code: str  # the index of the vectorized subscript, without brackets
    consumed: int  # dimensions the index selects away (integers and tensors, not slices)
    gathered: bool
    indices: tuple[str, ...]  # index tensors, for the assumptions


def vector_index(node: cst.Subscript, scope: LiftScope, ctx: PatternContext) -> VectorIndex:
    comps = [classify(el.slice, scope, ctx) for el in node.slice]
    batched = [c for c in comps if c.kind in ("arange", "gather")]
    # data[:, idx[i]]: the gathered dimension would land where the slice's was, not in front
    if comps[0].kind not in ("arange", "gather"):
        raise LiftError(f"`{code(node)}` does not index its first dimension with the loop")
    gathers = [c for c in comps if c.kind == "gather"]
    device = f"{gathers[0].array}.device" if gathers else "None"
    text = ", ".join(c.code.replace("{device}", device) for c in comps)
    consumed = sum(1 for c in comps if c.kind != "slice")
    return VectorIndex(text, consumed, bool(gathers) and bool(batched),
                       tuple(c.array for c in gathers if c.array))


@dataclass(frozen=True)
class GatheredRead:
    lifted: Lifted
    array: str  # the tensor read from
    consumed: int
    indices: tuple[str, ...]


def gathered_read(node: cst.BaseExpression, scope: LiftScope, ctx: PatternContext) -> GatheredRead:
    """`data[idx[i]]` (optionally `.clone()`/`.contiguous()`) as `data[idx]`: a fresh copy.

    `.detach()` is not stripped: the gathered copy would keep data's autograd history.
    """
    call_wrapped = node
    while isinstance(call_wrapped, cst.Call) and isinstance(call_wrapped.func, cst.Attribute) \
            and call_wrapped.func.attr.value in ("clone", "contiguous") and not call_wrapped.args:
        call_wrapped = call_wrapped.func.value
    node = call_wrapped
    if not isinstance(node, cst.Subscript):
        raise LiftError(f"`{code(node)}` is not a gathered read `data[idx[i]]`")
    array = dotted(node.value)
    # data[idx[i]][0]: the second subscript indexes the gathered row, not data
    if array is None:
        raise LiftError(f"`{code(node)}` does not read a named tensor")
    if array.split(".")[0] in scope.loop_names:
        raise LiftError(f"`{array}` is bound in the loop")
    index = vector_index(node, scope, ctx)
    if not index.gathered:
        raise LiftError(f"`{code(node)}` does not read at a gathered index")
    # advanced indexing always copies, so the result never aliases `data`
    new = cst.parse_expression(f"{array}[{index.code}]")
    return GatheredRead(Lifted(new, True, "tensor", fresh=True), array, index.consumed, index.indices)


# --------------------------------------------------------------------------- guards and helpers


def _scope(loop: Loop, ctx: PatternContext) -> LiftScope:
    return LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names) | set(loop.assigned))


def _assumptions(scope: LiftScope, indices) -> tuple[str, ...]:
    notes = list(scope.assumptions)
    for name in dict.fromkeys(indices):
        notes.append(f"`{name}` is a 1-D tensor of integer indices (a bool or uint8 tensor would index as a mask)")
    return tuple(dict.fromkeys(notes))


def _single_level(node: cst.Subscript) -> bool:
    return not isinstance(node.value, cst.Subscript)


def _not_a_tensor(init: Init | None, name: str) -> str | None:
    # counts = [0] * C: a Python list has no index_add_, and a histogram of a list is
    # plain Python; a tensor is allocated here or passed in
    if init is None or init.kind not in ("alloc", "like", "clone", "param"):
        return f"`{name}` is not a tensor allocated in this function or passed in"
    return None


def _row_shape_problem(init: Init, read: GatheredRead, loop: Loop) -> str | None:
    """Why a row of the allocation may not have the shape of one gathered value.

    `out[i] = v` broadcasts v into the row: a 1-D `data` gathered into `torch.zeros(n, D)`
    fills each row with one number, which `data[idx]` would not. The allocation's row
    sizes must therefore be data's own trailing sizes (`data.shape[1]`, a name bound to
    it, or `zeros_like(data)`).
    """
    bindings = function_bindings(loop.function)
    if init.kind in ("like", "clone"):
        if init.ref == read.array and read.consumed == 1 and read.array.split(".")[0] not in bindings.rebound:
            return None
        return f"`{init.name}` is shaped like `{init.ref}`, not like the rows of `{read.array}`"
    sizes = sizes_of(init)
    if sizes is None:
        return f"cannot read the sizes of `{code(init.value)}`"
    for k, size in enumerate(sizes[1:]):
        dim = read.consumed + k
        if not measures(size, read.array, dim, bindings, direct=False):
            return (f"cannot prove `{code(size)}` is `{read.array}.shape[{dim}]`: a narrower "
                    f"`{read.array}` would be broadcast over each row of `{init.name}`")
    return None


def _scatter_rows_problem(init: Init | None, value: cst.BaseExpression, scope: LiftScope, loop: Loop) -> str | None:
    """Why `v[i]` may not have the shape of a row of the multi-dimensional output."""
    what = f"cannot prove `{code(value)}` has the shape of a row of the output"
    if init is None or init.kind not in ("alloc", "like", "clone"):
        return what
    # only a plain per-element read has a known shape: v[i] is a row of v
    array = None
    if isinstance(value, cst.Name) and value.value in scope.elements:
        array = dict(scope.domain.elements)[value.value]
    elif isinstance(value, cst.Subscript) and len(value.slice) == 1 and _single_level(value) \
            and isinstance(value.slice[0].slice, cst.Index):
        inner = value.slice[0].slice.value
        if isinstance(inner, cst.Name) and inner.value == scope.domain.index:
            array = dotted(value.value)
    if array is None:
        return what
    bindings = function_bindings(loop.function)
    if init.kind in ("like", "clone"):
        return None if init.ref == array and array.split(".")[0] not in bindings.rebound else what
    sizes = sizes_of(init)
    if not sizes or len(sizes) < 2:
        return what
    for k, size in enumerate(sizes[1:]):
        if not measures(size, array, 1 + k, bindings, direct=False):
            return (f"cannot prove `{code(size)}` is `{array}.shape[{1 + k}]`: a narrower `{array}` "
                    f"would add one number to a whole row")
    return None
