"""Per-item calls of torch functions that already batch over leading dimensions."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from loopvec.analysis.facts import UNKNOWN, Rank, declared_ranks
from loopvec.analysis.loops import Loop, names_in
from loopvec.analysis.module import code, dotted, only
from loopvec.assemble import collect, store
from loopvec.lift import ALL, DIM_FUNCTIONS, DIM_METHODS, FUNCTIONAL, LAST, MATMUL, REDUCE_ALL, REQUIRED, TUPLE_DIMS, \
    UNARY, Lifted, LiftError, LiftScope, Op, as_operand, dims_code, lift, literal_dim, literal_dims, shift_dims
from loopvec.analysis import traverse
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite

from ._map_shape import MapShape, map_loop

# a batch of one stays a batch of one through these (per-element, no tensor arguments)
_B1_METHODS = {"detach", "cpu", "float", "double", "half", "bfloat16", "contiguous", "clone", "to"} | UNARY
_B1_FUNCTIONS = {f"torch.{n}" for n in UNARY} | {f"torch.nn.functional.{n}" for n in FUNCTIONAL}
_VIEW_METHODS = {"detach", "cpu", "float", "double", "half", "bfloat16", "contiguous", "to"}


# --------------------------------------------------------------------------- the lifter


@dataclass
class B1:
    """A value that is a batch of one per iteration: `x[i].unsqueeze(0)`, `conv2d(...)` of it.

    `node` is the stacked array (row i is iteration i's only row), so `torch.cat` of
    the per-iteration values is `node` itself and `torch.stack` is `node.unsqueeze(1)`.
    """

    node: cst.BaseExpression
    rank: Rank  # of the per-iteration value (one more than the item it came from)
    fresh: bool
    producer: str | None = None  # a model whose output type is not known to be a tensor


@dataclass
class Held:
    """What a rule made of one call (or `x[k]`, `a @ b`): its lifted value, the rank of one
    iteration's value, and the batch of one it is, if it is one."""

    lifted: Lifted
    rank: Rank = UNKNOWN
    b1: B1 | None = None


@dataclass
class BatchLifter:
    """Lifts a loop-body expression that calls batched torch ops, over the shared lifter.

    The table's rules are the scope's `calls` rule. They are applied innermost first --
    each rule reads the ranks and batches of one of its operands -- before the shared
    lifter lifts the expression; everything around them (operators, elementwise
    functions) is the shared lifter's.
    """

    scope: LiftScope
    ctx: PatternContext
    ranks: dict[str, Rank]  # declared ranks of the function's names
    values: dict[str, Rank] = field(default_factory=dict)  # per-item ranks of lifted names
    b1: dict[str, B1] = field(default_factory=dict)  # temporaries that are batches of one
    used: list[str] = field(default_factory=list)  # what was batched, for the message
    assumed: list[str] = field(default_factory=list)  # what a rewrite relies on beyond the data
    held: dict[int, tuple[cst.CSTNode, Held]] = field(default_factory=dict)  # what the rules made of nodes

    @classmethod
    def for_loop(cls, loop: Loop, ctx: PatternContext) -> BatchLifter:
        scope = LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names) | set(loop.assigned))
        lifter = cls(scope, ctx, declared_ranks(loop, ctx.info))
        scope.use_calls(lifter._rule)
        for name, array in loop.domain.elements:
            lifter.values[name] = lifter._array_rank(array).minus(1)
        return lifter

    # ------------------------------------------------------------------ ranks
    def _array_rank(self, array: str) -> Rank:
        declared = self.ranks.get(array)
        if declared is None:
            return UNKNOWN
        return declared

    def rank_of(self, node: cst.BaseExpression) -> Rank:
        """What is known about the rank of one iteration's value of `node`."""
        held = self._held_of(node)
        if held is not None:
            return held.b1.rank if held.b1 is not None else held.rank
        if isinstance(node, cst.Name):
            if node.value in self.b1:
                return self._b1_of(node).rank
            return self.values.get(node.value, UNKNOWN)
        if isinstance(node, cst.Subscript):
            dom = self.scope.domain
            if (len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index)
                    and isinstance(node.slice[0].slice.value, cst.Name)
                    and node.slice[0].slice.value.value == dom.index):
                base = dotted(node.value)
                if base is not None:
                    return self._array_rank(base).minus(1)
            return UNKNOWN
        if isinstance(node, (cst.UnaryOperation,)):
            return self.rank_of(node.expression)
        if isinstance(node, cst.BinaryOperation) and not isinstance(node.operator, cst.MatrixMultiply):
            left, right = self._batched(node.left), self._batched(node.right)
            if left and right:
                a, b = self.rank_of(node.left), self.rank_of(node.right)
                return Rank(max(a.lo, b.lo), a.exact if a.exact == b.exact else None)
            side = node.left if left else node.right
            other = node.right if left else node.left
            r = self.rank_of(side)
            # broadcasting against an invariant tensor may add dims; a number does not
            return r if isinstance(other, (cst.Integer, cst.Float)) else Rank(r.lo, None)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            name = node.func.attr.value
            if name in _B1_METHODS and self._batched(node.func.value):
                return self.rank_of(node.func.value)
        return UNKNOWN

    def _batched(self, node: cst.BaseExpression) -> bool:
        return bool(names_in(node) & self.scope.loop_names)

    # ------------------------------------------------------------------ the rule
    def _rule(self, node: cst.BaseExpression, scope: LiftScope) -> Lifted | None:
        """The scope's `calls` rule: a table call, a batch of one, or a matrix product."""
        if isinstance(node, cst.Call):
            held = self.call(node) if self._batched(node) else None
        elif isinstance(node, cst.Subscript):
            held = self.subscript(node)
        elif isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.MatrixMultiply):
            held = self.matmul(node.left, node.right, self.source(node))
            if held is None:
                raise LiftError(f"`{code(node)}` per element")
        else:
            return None
        if held is None:
            return None
        self.held[id(node)] = (node, held)
        return held.lifted

    def _apply_rules(self, node: cst.CSTNode) -> None:
        """The rules for every call, `x[k]` and `a @ b` in `node`, innermost first."""
        if isinstance(node, (cst.Lambda, cst.ListComp, cst.GeneratorExp)):
            return
        for child in traverse.children(node):
            self._apply_rules(child)
        if isinstance(node, (cst.Call, cst.Subscript, cst.BinaryOperation)):
            self.scope.rule(node)

    def _held_of(self, node: cst.BaseExpression) -> Held | None:
        kept = self.held.get(id(node))
        return kept[1] if kept is not None and kept[0] is node else None

    def _b1_of(self, node: cst.BaseExpression) -> B1 | None:
        """The batch of one `node` is: a rule's, or a temporary's."""
        held = self._held_of(node)
        if held is not None:
            return held.b1
        if isinstance(node, cst.Name):
            return self.b1.get(node.value)
        return None

    def _hold(self, value: Lifted, rank: Rank, what: str) -> Held:
        self.used.append(what)
        return Held(value, rank)

    def _hold_b1(self, value: B1, what: str | None) -> Held:
        if what:
            self.used.append(what)
        # anything but a batch-first consumer sees row i as `node[i:i+1]`
        return Held(Lifted(_method(value.node, "unsqueeze", "1"), True, "tensor", fresh=value.fresh), value.rank, value)

    # ------------------------------------------------------------------ entry points
    def lift_value(self, node: cst.BaseExpression) -> Lifted | B1:
        """Like `lift`, but a value that is a batch of one per iteration stays a `B1`."""
        self._apply_rules(node)
        lifted = lift(node, self.scope)
        return self._b1_of(node) or lifted

    def temps(self, statements) -> list[str]:
        """`t = expr` statements of the body, in order, as whole-array statements."""
        out: list[str] = []
        for stmt in statements:
            small = only(stmt)
            if not (isinstance(small, cst.Assign) and len(small.targets) == 1
                    and isinstance(small.targets[0].target, cst.Name)):
                raise LiftError(f"statement `{code(stmt)}` in the loop body")
            name = small.targets[0].target.value
            value = self.lift_value(small.value)
            rank = self.rank_of(small.value)
            if isinstance(value, B1):
                out.append(f"{name} = {code(value.node)}")
                self.values.pop(name, None)
                self.b1[name] = B1(cst.Name(name), value.rank, value.fresh, value.producer)
                self.scope.temps[name] = Lifted(_method(cst.Name(name), "unsqueeze", "1"), True, "tensor",
                                                fresh=value.fresh)
                continue
            if not value.batched:
                raise LiftError(f"`{name}` does not depend on the loop")
            self.scope.temps[name] = Lifted(cst.Name(name), True, value.kind, fresh=value.fresh)
            self.values[name] = rank
            out.append(f"{name} = {value.code}")
        return out

    # ------------------------------------------------------------------ calls
    def call(self, node: cst.Call) -> Held | None:
        """What `node` is when it is a batched call this lifter knows; else None."""
        qual = self.ctx.info.qualname(node.func)
        if qual in DIM_FUNCTIONS:
            return self._apply(node, DIM_FUNCTIONS[qual], qual.rsplit(".", 1)[-1], method=False)
        if qual in MATMUL:
            return self._matmul_call(node, qual)
        if qual in _B1_FUNCTIONS:
            return self._b1_passthrough(node, method=False)
        if qual is None and isinstance(node.func, cst.Attribute):
            name = node.func.attr.value
            receiver = node.func.value
            if not self._batched(receiver):
                return None
            if name == "unsqueeze" and self._is_zero_arg(node, "dim"):
                return self._batch_of_one(receiver)
            if name == "squeeze" and self._is_zero_arg(node, "dim") and self._is_b1(receiver):
                return self._unbatch_one(receiver)
            if name in _B1_METHODS and self._is_b1(receiver):
                return self._b1_passthrough(node, method=True)
            if name in ("matmul", "mm", "bmm", "mv"):
                return self._matmul_call(node.with_changes(
                    func=cst.parse_expression(f"{self.ctx.torch}.{name}"),
                    args=[cst.Arg(receiver), *node.args]), f"torch.{name}")
            if name == "permute":
                return self._permute(node)
            if name in DIM_METHODS:
                return self._apply(node, DIM_METHODS[name], name, method=True)
            if name in ("cuda", "cpu") and not node.args:
                obj = lift(receiver, self.scope)
                return self._hold(Lifted(_method(obj.node, name), True, "tensor", fresh=False),
                                  self.rank_of(receiver), name)
        return None

    def subscript(self, node: cst.Subscript) -> Held | None:
        """`x[i][None]`, `x[i:i+1]`: a batch of one; `b[0]` of a batch of one: its row."""
        if len(node.slice) != 1 or not self._batched(node):
            return None
        sl = node.slice[0].slice
        if isinstance(sl, cst.Index) and isinstance(sl.value, cst.Name) and sl.value.value == "None":
            return self._batch_of_one(node.value)
        if isinstance(sl, cst.Index) and literal_dim(sl.value) == 0 and self._is_b1(node.value):
            return self._unbatch_one(node.value)
        dom = self.scope.domain
        if (isinstance(sl, cst.Slice) and sl.step is None and dom.index is not None
                and isinstance(sl.lower, cst.Name) and sl.lower.value == dom.index
                and sl.upper is not None and code(sl.upper).replace(" ", "") in (f"{dom.index}+1", f"1+{dom.index}")
                and not self._batched(node.value)):
            row = cst.Subscript(value=node.value, slice=[cst.SubscriptElement(cst.Index(cst.Name(dom.index)))])
            return self._batch_of_one(row)
        return None

    def _is_zero_arg(self, node: cst.Call, keyword: str) -> bool:
        if len(node.args) != 1 or node.args[0].star:
            return False
        arg = node.args[0]
        if arg.keyword is not None and arg.keyword.value != keyword:
            return False
        return literal_dim(arg.value) == 0

    def _is_b1(self, node: cst.BaseExpression) -> bool:
        return self._b1_of(node) is not None

    def _batch_of_one(self, item: cst.BaseExpression) -> Held | None:
        value = lift(item, self.scope)
        if not value.batched or value.kind != "tensor":
            return None
        return self._hold_b1(B1(value.node, Rank(self.rank_of(item).lo + 1,
                                                 None if self.rank_of(item).exact is None
                                                 else self.rank_of(item).exact + 1), value.fresh), None)

    def _unbatch_one(self, node: cst.BaseExpression) -> Held:
        b = self._b1_of(node)
        if b.producer is not None:
            # out[0] is row 0 of a tensor, but the first element of a tuple
            self.assumed.append(f"`{b.producer}` returns a tensor")
        return self._hold(Lifted(b.node, True, "tensor", fresh=b.fresh), b.rank.minus(1), "row of a batch of one")

    def _b1_passthrough(self, node: cst.Call, method: bool) -> Held | None:
        """relu(conv2d(x[i:i+1], w)): still a batch of one, with no tensor arguments."""
        if method:
            receiver, args = node.func.value, node.args
        else:
            if not node.args or node.args[0].keyword is not None or node.args[0].star:
                return None
            receiver, args = node.args[0].value, node.args[1:]
        if not self._is_b1(receiver):
            return None
        # the elementwise tables take numbers, dtypes and devices besides the tensor; one
        # that depends on the row is not a pass-through
        if any(a.star or self._batched(a.value) for a in args):
            return None
        if any(a.keyword is not None and a.keyword.value == "inplace" for a in args):
            return None
        b = self._b1_of(receiver)
        fn = node.func.attr.value if method else (self.ctx.info.qualname(node.func) or "").rsplit(".", 1)[-1]
        if method:
            new = node.with_changes(func=node.func.with_changes(value=_paren(b.node)))
        else:
            new = node.with_changes(args=[node.args[0].with_changes(value=b.node), *args])
        # .float() of a float tensor, .detach(), .cpu() on the CPU: the same storage
        fresh = b.fresh if method and fn in _VIEW_METHODS else True
        return self._hold_b1(B1(new, b.rank, fresh), None)

    # ------------------------------------------------------------------ table calls
    def _bind(self, node: cst.Call, op: Op, method: bool, what: str) -> dict[str, cst.Arg]:
        params = op.params if method else ("input", *op.params)
        bound: dict[str, cst.Arg] = {}
        positional = [a for a in node.args if a.keyword is None]
        for a in node.args:
            if a.star:
                raise LiftError(f"starred arguments in `{what}`")
        if len(positional) > len(params):
            raise LiftError(f"`{what}` with more positional arguments than loopvec knows")
        for p, a in zip(params, positional):
            bound[p] = a
        for a in node.args:
            if a.keyword is None:
                continue
            key = a.keyword.value
            if key not in params and key not in op.kwonly:
                raise LiftError(f"`{what}` with keyword `{key}`")
            if key in bound:
                raise LiftError(f"`{what}` with `{key}` given twice")
            bound[key] = a
        for key in op.forbid:
            if key in bound and not (isinstance(bound[key].value, cst.Name) and bound[key].value.value == "False"):
                raise LiftError(f"`{what}` with `{key}=` returns more than one tensor")
        return bound

    def _apply(self, node: cst.Call, op: Op, name: str, method: bool) -> Held | None:
        what = self.source(node.func)
        bound = self._bind(node, op, method, what)
        input_expr = node.func.value if method else (bound["input"].value if "input" in bound else None)
        if input_expr is None:
            raise LiftError(f"`{what}` without its input")
        if not self._batched(input_expr):
            # the loop-dependent part is another argument: not a per-item call of this op
            if any(self._batched(a.value) for a in node.args):
                raise LiftError(f"`{what}` with a per-element argument other than its input")
            return None
        for key, arg in bound.items():
            if key != "input" and self._batched(arg.value):
                raise LiftError(f"`{what}` with a per-element `{key}`")
        # a batch of one into a layer that takes a batch first
        if op.b1 is not None and self._is_b1(input_expr):
            return self._apply_b1(node, op, input_expr, what, method)
        if self._is_b1(input_expr):
            kept = self._keep_b1(node, op, bound, input_expr, method, name)
            if kept is not None:
                return kept
        rank = self.rank_of(input_expr).at_least(op.min_rank)
        value = lift(input_expr, self.scope)
        if not value.batched or value.kind != "tensor":
            raise LiftError(f"`{what}` on a per-element Python number")
        if op.item is None:
            raise LiftError(f"`{what}` treats dim 0 of its input as the batch: a single item is not one")
        if op.item == "exact" and rank.exact != op.spatial + 1:
            raise LiftError(self._rank_advice(input_expr, what, f"exactly {op.spatial + 1} dims per item"))
        if op.item == "lo1" and rank.lo < 1:
            raise LiftError(self._rank_advice(input_expr, what, "at least one dim per item"))
        new_args: dict[str, cst.BaseExpression] = {}
        extra: dict[str, str] = {}
        flatten = False
        rename = None
        dims_used = False
        removed = 0
        for param, default in op.dims:
            arg = bound.get(param)
            is_none = arg is not None and isinstance(arg.value, cst.Name) and arg.value.value == "None"
            # dim=None means every dim to fftn and sum, but not the default dim=1 of normalize
            if is_none and default not in (ALL, REDUCE_ALL):
                raise LiftError(f"`{what}` with `{param}=None`")
            if arg is not None and not is_none:
                dims_used = True
                new_args[param] = shift_dims(arg.value)
                removed = len(literal_dims(arg.value) or ())
                continue
            if default == REQUIRED:
                raise LiftError(f"`{what}` without `{param}=`: the dim it picks depends on the rank")
            if default == LAST:
                dims_used = True
                continue
            if isinstance(default, int):
                dims_used = True
                extra[param] = str(default + 1)
                continue
            if default == ALL:
                if "s" in bound and not (isinstance(bound["s"].value, cst.Name) and bound["s"].value.value == "None"):
                    # s= without dim= transforms the last len(s) dims, and raises on an item
                    # with fewer: they are the item's own dims
                    continue
                extra[param] = self._all_dims(value, rank, op, what, input_expr)
                continue
            if default == REDUCE_ALL:
                keep = bound.get("keepdim")
                if keep is not None and not (isinstance(keep.value, cst.Name) and keep.value.value == "False"):
                    raise LiftError(f"`{what}` over the whole item with keepdim")
                if rank.lo < 1:
                    raise LiftError(self._rank_advice(input_expr, what, "at least one dim per item"))
                rename = op.rename
                removed = "all"
                if rank.exact is not None and (rename or name) in TUPLE_DIMS:
                    extra[param] = "1" if rank.exact == 1 else dims_code(tuple(range(1, rank.exact + 1)))
                else:
                    # prod, argmax, norm take one dim: the item's dims flattened into one
                    flatten = True
                    extra[param] = "1"
        # `dim=None` written out: the stated dims take its place
        for param in [p for p in extra if p in bound]:
            new_args[param] = cst.parse_expression(extra.pop(param))
        # torch accepts dim=0 and dim=-1 on a 0-d tensor as if it were 1-d: softmax(v, -1)
        # of a 0-d v is 1.0, the batched softmax(V, -1) mixes rows
        if dims_used and rank.lo < 1:
            raise LiftError(self._rank_advice(input_expr, what, "at least one dim per item"))
        batched = value.node
        if flatten:
            batched = _method(batched, "flatten", "1")
        call = self._rebuild(node, op, bound, method, batched, new_args, extra, rename)
        out_rank = self._out_rank(op, rank, bound, removed)
        fresh = op.fresh or value.fresh
        return self._hold(Lifted(call, True, "tensor", fresh=fresh), out_rank, name)

    def _apply_b1(self, node: cst.Call, op: Op, input_expr: cst.BaseExpression, what: str, method: bool) -> Held:
        b = self._b1_of(input_expr)
        item_rank = b.rank.minus(1)
        if op.b1 == "exact" and item_rank.exact != op.spatial + 1:
            raise LiftError(self._rank_advice(input_expr, what, f"exactly {op.spatial + 1} dims per item",
                                              item=True))
        if op.b1 == "lo1" and item_rank.lo < 1:
            raise LiftError(self._rank_advice(input_expr, what, "at least one dim per item", item=True))
        if method:
            new = node.with_changes(func=node.func.with_changes(value=_paren(b.node)))
        else:
            args = list(node.args)
            k = next(i for i, a in enumerate(args) if a.value is input_expr)
            args[k] = args[k].with_changes(value=b.node)
            new = node.with_changes(args=args)
        # layers that take a batch first keep the rank of their input
        return self._hold_b1(B1(new, b.rank, True), what.rsplit(".", 1)[-1])

    def _keep_b1(self, node, op: Op, bound, input_expr: cst.BaseExpression, method: bool, name: str) -> Held | None:
        """softmax(model(x[i:i+1]), dim=1): a dim past the batch of one names the same dim of
        the batch, so the call stays as written. None when some dim could be dim 0."""
        b = self._b1_of(input_expr)
        item_lo = b.rank.minus(1).lo
        if not op.dims or op.item != "any" or item_lo < op.min_rank:
            return None
        removed = 0
        for param, default in op.dims:
            arg = bound.get(param)
            given = arg is not None and not (isinstance(arg.value, cst.Name) and arg.value.value == "None")
            if not given:
                # trailing dims by default (or all of them) may reach the batch-of-one dim
                if not (isinstance(default, int) and default >= 1):
                    return None
                continue
            dims = literal_dims(arg.value)
            # dim 0 is the batch of one; -k reaches it when the item has fewer than k dims
            if dims is None or any(d == 0 or (d < 0 and -d > item_lo) for d in dims):
                return None
            removed += len(dims)
        if method:
            new = node.with_changes(func=node.func.with_changes(value=_paren(b.node)))
        else:
            new = node.with_changes(args=[a.with_changes(value=b.node) if a.value is input_expr else a
                                          for a in node.args])
        keep = bound.get("keepdim")
        keeps = keep is not None and code(keep.value) == "True"
        if op.out == "same" or keeps:
            rank = b.rank
        elif op.out == "reduce" and keep is None:
            rank = Rank(max(b.rank.lo - removed, 1), None if b.rank.exact is None else b.rank.exact - removed)
        else:
            rank = Rank(1, None)
        return self._hold_b1(B1(new, rank, op.fresh or b.fresh), name)

    def _rebuild(self, node, op, bound, method, batched, new_args, extra, rename) -> cst.Call:
        args = []
        for a in node.args:
            key = a.keyword.value if a.keyword is not None else next(k for k, v in bound.items() if v is a)
            if key == "input":
                args.append(a.with_changes(value=batched))
            elif key in new_args:
                args.append(a.with_changes(value=new_args[key]))
            else:
                args.append(a)
        text = ", ".join([code(a.value) if a.keyword is None else f"{a.keyword.value}={code(a.value)}"
                          for a in args] + [f"{k}={v}" for k, v in extra.items()])
        if method:
            attr = rename or node.func.attr.value
            return cst.parse_expression(f"{code(_paren(batched))}.{attr}({text})")
        func = code(node.func)
        if rename:
            func = func.rsplit(".", 1)[0] + "." + rename
        return cst.parse_expression(f"{func}({text})")

    def _all_dims(self, value: Lifted, rank: Rank, op: Op, what: str, input_expr) -> str:
        """`dim=` naming every dim of each item, on the stacked array."""
        if rank.exact is not None:
            return dims_code(tuple(range(1, rank.exact + 1))) if rank.exact else "()"
        # dim=() means "every dim" to most ops: only fftn/ifftn read it as "none", like a 0-d item
        if rank.lo < 1 and not op.empty_dims_ok:
            raise LiftError(self._rank_advice(input_expr, what, "at least one dim per item"))
        node = value.node
        if not isinstance(node, (cst.Name, cst.Attribute)):
            # tuple(range(1, (a * b).ndim)) would compute the argument twice
            raise LiftError(self._rank_advice(input_expr, what, "a known number of dims per item"))
        return f"tuple(range(1, {code(node)}.ndim))"

    def _out_rank(self, op: Op, rank: Rank, bound, removed) -> Rank:
        if op.out == "same":
            return rank
        if op.out == "minus1":
            return rank.minus(1)
        if op.out == "minus2":
            return rank.minus(2)
        if op.out == "plus1":
            return Rank(rank.lo + 1, None if rank.exact is None else rank.exact + 1)
        if op.out == "reduce":
            keep = bound.get("keepdim")
            if keep is not None and not (isinstance(keep.value, cst.Name) and keep.value.value == "False"):
                return rank if isinstance(keep.value, cst.Name) and keep.value.value == "True" else UNKNOWN
            if removed == "all":
                return Rank(0, 0)
            return rank.minus(removed) if isinstance(removed, int) and removed else UNKNOWN
        return UNKNOWN

    def source(self, node: cst.BaseExpression) -> str:
        """`node` as the user wrote it."""
        return code(node)

    def _rank_advice(self, node: cst.BaseExpression, what: str, need: str, item: bool = False,
                     invariant: bool = False) -> str:
        if invariant and isinstance(node, cst.Name):
            arrays, dims = [node.value], "[...]"
        else:
            arrays, dims = [a for _, a in self.scope.domain.elements] or list(self.scope.domain.arrays), "[n,...]"
        hint = f" (say so with `# loopvec: shapes {arrays[0]}={dims}` on the def line)" if arrays else ""
        return f"`{what}` is exact only with {need}, and the rank of `{self.source(node)}` is not declared{hint}"

    def _permute(self, node: cst.Call) -> Held:
        args = node.args
        if any(a.star or a.keyword is not None for a in args):
            raise LiftError("`permute` with keywords or starred arguments")
        dims_nodes = [a.value for a in args]
        if len(dims_nodes) == 1 and isinstance(dims_nodes[0], (cst.Tuple, cst.List)):
            dims_nodes = [el.value for el in dims_nodes[0].elements]
        dims = [literal_dim(d) for d in dims_nodes]
        if any(d is None for d in dims):
            raise LiftError("`permute` with dims that are not integer literals")
        receiver = node.func.value
        value = lift(receiver, self.scope)
        if value.kind != "tensor":
            raise LiftError("`permute` of a per-element Python number")
        shifted = ["0"] + [str(d + 1) if d >= 0 else str(d) for d in dims]
        new = cst.parse_expression(f"{code(_paren(value.node))}.permute({', '.join(shifted)})")
        # permute names every dim: the item has exactly len(dims) of them
        return self._hold(Lifted(new, True, "tensor", fresh=value.fresh), Rank(len(dims), len(dims)), "permute")

    # ------------------------------------------------------------------ matrix products
    def matmul(self, left: cst.BaseExpression, right: cst.BaseExpression, what: str) -> Held | None:
        """`a @ b` per item: which batched spelling is exact depends on both ranks."""
        lb, rb = self._batched(left), self._batched(right)
        if not (lb or rb):
            return None
        a, b = self._operands(left, right)
        if a.kind not in ("tensor", "invariant") or b.kind not in ("tensor", "invariant"):
            raise LiftError(f"`{what}` of a per-element Python number")
        ra = self.rank_of(left) if lb else self._invariant_rank(left)
        rb_ = self.rank_of(right) if rb else self._invariant_rank(right)
        A, B = code(_paren(a.node)), code(_paren(b.node))
        if lb and rb:
            # both per item: equal ranks (after 1-d operands gain their matrix dim) keep
            # every batch dim aligned; mixed ranks would broadcast the row dim against another
            if ra.exact is None or rb_.exact is None:
                raise LiftError(self._rank_advice(left, what, "known ranks of both operands"))
            ea, eb = ra.exact, rb_.exact
            if ea == 0 or eb == 0:
                return None
            ma, mb = max(ea, 2), max(eb, 2)
            if ma != mb:
                raise LiftError(f"`{what}` of operands of different ranks per item")
            lhs = f"{A}.unsqueeze(-2)" if ea == 1 else A
            rhs = f"{B}.unsqueeze(-1)" if eb == 1 else B
            text = f"{lhs} @ {rhs}"
            if ea == 1 and eb == 1:
                text = f"({text}).squeeze(-1).squeeze(-1)"
            elif ea == 1:
                text = f"({text}).squeeze(-2)"
            elif eb == 1:
                text = f"({text}).squeeze(-1)"
            k = ma - (ea == 1) - (eb == 1)
            out = Rank(k, k)
        elif lb:
            # v @ W with W of rank <= 2: W's dims are the last ones, the rows are a batch
            if rb_.exact is None or rb_.exact > 2:
                raise LiftError(self._rank_advice(right, what, f"`{code(right)}` of at most 2 dims", invariant=True)
                                if rb_.exact is None else f"`{what}` with a right operand of more than 2 dims")
            w = rb_.exact
            text = f"{A} @ {B}"
            out = Rank(max(ra.lo - (w == 1), 0), None if ra.exact is None else max(ra.exact - (w == 1), 0))
        else:
            # W @ v: a matrix item is a batch of products; a vector item is a row of V @ W.mT
            if ra.exact is None or ra.exact > 2:
                raise LiftError(self._rank_advice(left, what, f"`{code(left)}` of at most 2 dims", invariant=True)
                                if ra.exact is None else f"`{what}` with a left operand of more than 2 dims")
            if rb_.exact is None:
                raise LiftError(self._rank_advice(right, what, "a known number of dims per item"))
            if rb_.exact >= 2:
                text = f"{A} @ {B}"
                k = rb_.exact - (ra.exact == 1)
            elif rb_.exact == 1:
                text = f"{B} @ {A}.mT" if ra.exact == 2 else f"{B} @ {A}"
                k = ra.exact - 1
            else:
                return None
            out = Rank(k, k)
        return self._hold(Lifted(cst.parse_expression(text), True, "tensor"), out, "@")

    def _operands(self, left: cst.BaseExpression, right: cst.BaseExpression) -> tuple[Lifted, Lifted]:
        """Both operands of a product, lifted. Their ranks are checked here, operand by
        operand, so the lifter's note that walked arrays must share a rank is not needed."""
        walked, notes = list(self.scope.walked), len(self.scope.assumptions)
        a, b = lift(left, self.scope), lift(right, self.scope)
        added = self.scope.assumptions[notes:]
        self.scope.assumptions[notes:] = [n for n in added if "have the same number of dimensions" not in n]
        self.scope.walked[:] = walked + [w for w in self.scope.walked if w not in walked][:1]
        return a, b

    def _invariant_rank(self, node: cst.BaseExpression) -> Rank:
        if isinstance(node, cst.Name):
            return self.ranks.get(node.value, UNKNOWN)
        # W.T, W.mT, W.t() keep the rank of a matrix
        if isinstance(node, cst.Attribute) and node.attr.value in ("T", "mT"):
            r = self._invariant_rank(node.value)
            return r if r.exact == 2 else UNKNOWN
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "t" \
                and not node.args:
            r = self._invariant_rank(node.func.value)
            return r if r.exact is not None and r.exact <= 2 else UNKNOWN
        return UNKNOWN

    def _matmul_call(self, node: cst.Call, qual: str) -> Held | None:
        what = self.source(node.func)
        if len(node.args) != 2 or any(a.keyword is not None or a.star for a in node.args):
            if any(self._batched(a.value) for a in node.args):
                raise LiftError(f"`{what}` with keywords")
            return None
        left, right = node.args[0].value, node.args[1].value
        if qual == "torch.matmul":
            return self.matmul(left, right, what)
        lb, rb = self._batched(left), self._batched(right)
        if not (lb or rb):
            return None
        a, b = self._operands(left, right)
        A, B = code(_paren(a.node)), code(_paren(b.node))
        t = self.ctx.torch
        # mm, bmm and mv fix their operands' ranks, so the batched form needs no declaration
        if qual == "torch.mm":
            text = f"{t}.bmm({A}, {B})" if lb and rb else f"{t}.matmul({a.code}, {b.code})"
            rank = Rank(2, 2)
        elif qual == "torch.bmm":
            text = f"{t}.matmul({a.code}, {b.code})"
            rank = Rank(3, 3)
        else:  # mv: matrix @ vector
            if lb and rb:
                text = f"({A} @ {B}.unsqueeze(-1)).squeeze(-1)"
            elif lb:
                text = f"{A} @ {B}"
            else:
                text = f"{B} @ {A}.mT"
            rank = Rank(1, 1)
        return self._hold(Lifted(cst.parse_expression(text), True, "tensor"), rank, qual.rsplit(".", 1)[-1])


def _paren(node: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) or node.lpar:
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _method(node: cst.BaseExpression, name: str, *args: str) -> cst.BaseExpression:
    return cst.parse_expression(f"{code(_paren(node))}.{name}({', '.join(args)})")


# --------------------------------------------------------------------------- assembling


def inline_last_temp(shape: MapShape) -> MapShape:
    """`y = f(x[i]); out.append(y)` -> `out.append(f(x[i]))`: one statement, no temporary."""
    if not shape.temps or not isinstance(shape.value, cst.Name):
        return shape
    small = only(shape.temps[-1])
    if not (isinstance(small, cst.Assign) and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)
            and small.targets[0].target.value == shape.value.value):
        return shape
    name = shape.value.value
    # the temporary feeds an earlier statement too (`y = y * 2` chains): keep it
    if name in names_in(small.value):
        return shape
    return MapShape(shape.kind, shape.temps[:-1], small.value, shape.finish, shape.init, shape.append,
                    shape.write_array)


def finish_value(shape: MapShape, value: Lifted | B1, lifter: BatchLifter) -> str:
    """The expression equal to the collected list: `torch.cat` of batches of one is the batch."""
    finish = shape.finish
    if isinstance(value, B1):
        call = finish.call
        extra_positional = any(a.keyword is None for a in call.args[1:])
        kwargs = {a.keyword.value: a.value for a in call.args[1:] if a.keyword is not None}
        if finish.kind == "cat" and not extra_positional and set(kwargs) <= {"dim"} and \
                ("dim" not in kwargs or literal_dim(kwargs["dim"]) == 0):
            node = value.node if value.fresh else _method(value.node, "clone")
            return code(node)
        value = Lifted(_method(value.node, "unsqueeze", "1"), True, "tensor", fresh=value.fresh)
    return collect(finish, value, lifter.scope)


def build_rewrite(pattern: str, loop: Loop, ctx: PatternContext, shape: MapShape, lifter: BatchLifter,
                  lines: list[str], value: Lifted | B1, safety: str = SAFE,
                  assumptions: tuple[str, ...] = ()) -> Rewrite:
    """Edits for a lifted map loop: the collected or stored value takes the loop's place."""
    assumptions = tuple(dict.fromkeys([*lifter.scope.assumptions, *assumptions, *lifter.assumed]))
    if shape.kind == "comprehension":
        new = finish_value(shape, value, lifter)
        return Rewrite(pattern, loop, (Edit(loop.collector.call, as_operand(new)),), f"becomes `{new}`",
                       safety, assumptions, ctx.imports)
    if shape.kind == "append":
        new = finish_value(shape, value, lifter)
        finish = shape.finish
        final = f"{finish.target} = {new}" if finish.target else f"return {new}"
        edits = (Edit(shape.init.statement, None), Edit(loop.node, "\n".join(lines) or None),
                 Edit(finish.statement, final))
        return Rewrite(pattern, loop, edits, f"becomes `{final}`", safety, assumptions, ctx.imports)
    if isinstance(value, B1):
        value = Lifted(_method(value.node, "unsqueeze", "1"), True, "tensor", fresh=value.fresh)
    write = loop.writes[0]
    if write.array in lifter.scope.loop_names:
        raise LiftError(f"`{write.array}` is bound in the loop")
    stored = store(shape.init, write, value, lifter.scope, loop)
    edits = [Edit(loop.node, "\n".join([*lines, stored.statement]))]
    if stored.drop_init:
        edits.insert(0, Edit(shape.init.statement, None))
    return Rewrite(pattern, loop, tuple(edits), f"becomes `{stored.statement}`", safety, assumptions,
                   ctx.imports)


# --------------------------------------------------------------------------- the pattern


class BatchedOp:
    """Per-item calls of torch functions that batch over leading dimensions.

    What it rewrites:
        A map loop (append then `torch.stack/cat/tensor`, a comprehension fed to one of
        them, or `out[i] = ...`) whose body calls torch functions that already work on
        a batch: `torch.fft.*` (dims shifted, `s`/`norm` kept), `torch.linalg.*` on the
        trailing matrix dims, `softmax`/`log_softmax`/`cumsum`/`flip`/... with a dim,
        reductions (`row.sum(0)`, `row.max()`), `F.conv2d`/pooling on
        `x[i].unsqueeze(0)`, and `@`/`matmul`/`mm`/`bmm`/`mv` — with elementwise code
        around them lifted by the shared lifter.

    Example:
        freq_images = []
        for img in images:
            freq_images.append(torch.fft.fft2(img))
        freq_images = torch.stack(freq_images)

    Use instead:
        freq_images = torch.fft.fft2(images)
        (`torch.softmax(v, dim=0)` per item is `torch.softmax(X, dim=1)`; a negative dim
        stays; `torch.fft.fftn(v)` over every dim of the item is
        `torch.fft.fftn(X, dim=tuple(range(1, X.ndim)))`)

    When it declines:
        dims that are not integer literals; a dim argument (or a default that names
        trailing dims) when items might be 0-d — torch reads `dim=-1` of a 0-d tensor as
        its own axis — unless the rank is declared (`# loopvec: shapes x=[n,d]`, a shaped
        annotation, `n, d = x.shape`); the deprecated implicit dim of `F.softmax`;
        `torch.linalg.norm` without `dim`; ops that return tuples (`max(dim)`, `qr`);
        conv on items whose rank is not declared (a 2-D item in a batch of one is an
        unbatched single-channel input); `@` unless the ranks are declared; per-element
        arguments other than the input; loops with no batched op (see `elementwise`).
    """

    NAME = "batched_op"
    DESCRIPTION = "per-item fft/linalg/softmax/conv/matmul/reductions -> one call on the stacked tensor"
    SAFETY = SAFE
    ORDER = 40

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        shape = map_loop(loop)
        if isinstance(shape, str):
            return Decline(self.NAME, shape)
        shape = inline_last_temp(shape)
        lifter = BatchLifter.for_loop(loop, ctx)
        try:
            lines = lifter.temps(shape.temps)
            value = lifter.lift_value(shape.value)
            # x ** 2 + 1: nothing batched here (elementwise's loop)
            if not lifter.used:
                return Decline(self.NAME, "no batched torch op in the body (see elementwise)")
            return build_rewrite(self.NAME, loop, ctx, shape, lifter, lines, value)
        except LiftError as exc:
            return Decline(self.NAME, str(exc))
