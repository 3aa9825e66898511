"""Per-item calls of torch functions that already batch over leading dimensions."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from loopvec.analysis.loops import Loop, names_in
from loopvec.analysis.module import code, dotted
from loopvec.assemble import collect, store
from loopvec.guards import map_loop_problem, used_after_problem
from loopvec.lift import _FUNCTIONAL, _UNARY, Lifted, LiftError, LiftScope, as_operand, lift
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite

from ._dims import UNKNOWN, MapShape, Rank, declared_ranks, dims_code, literal_dim, literal_dims, map_shape, \
    only, shift_dims

# --------------------------------------------------------------------------- the table

LAST = "last"  # an absent dim means trailing dims: the same on the stacked array
ALL = "all"  # an absent dim means every dim of the item (fftn, fftshift)
REDUCE_ALL = "reduce-all"  # an absent dim reduces the whole item (sum(), max())
REQUIRED = "required"  # an absent dim is an error, or a deprecated implicit choice: decline


@dataclass(frozen=True)
class Op:
    """How one torch function (or tensor method) batches.

    `params` are the positional parameters after the input; `dims` maps each dim
    parameter to what its absence means (LAST, ALL, REDUCE_ALL, REQUIRED, or the
    non-negative default, which the stacked call must state shifted).
    `item` / `b1` say when a per-item input (`f(x[i])`) or a batch of one
    (`f(x[i].unsqueeze(0))`, then `torch.cat`) may become `f(x)`:
      "any"   for any rank (the op works on trailing dims),
      "lo1"   when each item has at least one dim,
      "exact" when each item has exactly `spatial + 1` dims (conv: a 2-D item would be
              an unbatched single-channel input, a different computation),
      None    never (interpolate treats dim 0 as the batch: an item is not a batch).
    """

    params: tuple[str, ...] = ()
    kwonly: tuple[str, ...] = ()
    dims: tuple[tuple[str, object], ...] = ()
    min_rank: int = 0  # the per-item call raises on items of lower rank
    item: str | None = "any"
    b1: str | None = None
    spatial: int = 0
    out: str = "same"  # same | reduce | minus1 | minus2 | none
    fresh: bool = True  # False: may return a view of its input (transpose, diagonal)
    empty_dims_ok: bool = False  # `dim=()` transforms nothing, like a 0-d item (fftn, ifftn)
    forbid: tuple[str, ...] = ()  # parameters that change the result's structure
    rename: str | None = None  # reduce-all spelling when the name differs (max() -> amax)


def _op(**kw) -> Op:
    kw["dims"] = tuple(kw.get("dims", {}).items())
    return Op(**kw)


FUNCTIONS: dict[str, Op] = {}
METHODS: dict[str, Op] = {}

for _name in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft"):
    FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("n", "dim", "norm"), dims={"dim": LAST}, min_rank=1)
for _name in ("fft2", "ifft2", "rfft2", "irfft2", "hfft2", "ihfft2"):
    FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("s", "dim", "norm"), dims={"dim": LAST}, min_rank=1)
for _name in ("fftn", "ifftn"):
    FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("s", "dim", "norm"), dims={"dim": ALL}, empty_dims_ok=True)
for _name in ("rfftn", "irfftn", "hfftn", "ihfftn"):
    FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("s", "dim", "norm"), dims={"dim": ALL}, min_rank=1)
for _name in ("fftshift", "ifftshift"):
    FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("dim",), dims={"dim": ALL}, min_rank=1)

# linear algebra on the trailing matrix dims: any leading dims are a batch already.
# Not det/logdet/slogdet: on a non-finite matrix the batched kernel's answer depends on
# the batch's memory layout (nan per matrix, -inf in a strided batch).
for _name, _params, _kwonly, _out in (
    ("inv", (), (), "same"), ("matrix_exp", (), (), "same"),
    ("cholesky", (), ("upper",), "same"), ("eigvalsh", ("UPLO",), (), "minus1"), ("svdvals", (), ("driver",), "minus1"),
    ("pinv", (), ("atol", "rtol", "hermitian"), "same"), ("matrix_power", ("n",), (), "same"),
    ("matrix_rank", (), ("atol", "rtol", "hermitian"), "minus2"), ("cond", ("p",), (), "minus2"),
):
    FUNCTIONS[f"torch.linalg.{_name}"] = _op(params=_params, kwonly=_kwonly, min_rank=2, out=_out)
FUNCTIONS["torch.linalg.matrix_norm"] = _op(params=("ord", "dim", "keepdim"), kwonly=("dtype",),
                                            dims={"dim": LAST}, min_rank=2, out="none")
FUNCTIONS["torch.linalg.vector_norm"] = _op(params=("ord", "dim", "keepdim"), kwonly=("dtype",),
                                            dims={"dim": REDUCE_ALL}, out="reduce")
# linalg.norm without dim is a vector or a matrix norm depending on the rank: only with dim
FUNCTIONS["torch.linalg.norm"] = _op(params=("ord", "dim", "keepdim"), kwonly=("dtype",),
                                     dims={"dim": REQUIRED}, out="reduce")
FUNCTIONS["torch.linalg.diagonal"] = _op(kwonly=("offset", "dim1", "dim2"),
                                         dims={"dim1": LAST, "dim2": LAST}, min_rank=2, out="minus1",
                                         fresh=False)
for _name, _out in (("inverse", "same"), ("matrix_exp", "same")):
    FUNCTIONS[f"torch.{_name}"] = _op(min_rank=2, out=_out)
    METHODS[_name] = FUNCTIONS[f"torch.{_name}"]

# softmax and friends: the dim is required (F.softmax's implicit dim depends on the rank)
for _qual in ("torch.softmax", "torch.log_softmax", "torch.special.softmax", "torch.special.log_softmax"):
    FUNCTIONS[_qual] = _op(params=("dim", "dtype"), dims={"dim": REQUIRED})
for _name in ("softmax", "log_softmax", "softmin"):
    FUNCTIONS[f"torch.nn.functional.{_name}"] = _op(params=("dim", "_stacklevel", "dtype"), dims={"dim": REQUIRED})
for _name in ("softmax", "log_softmax"):
    METHODS[_name] = _op(params=("dim",), kwonly=("dtype",), dims={"dim": REQUIRED})
FUNCTIONS["torch.nn.functional.normalize"] = _op(params=("p", "dim", "eps"), dims={"dim": 1})
FUNCTIONS["torch.nn.functional.glu"] = _op(params=("dim",), dims={"dim": LAST}, min_rank=1)

# scans and reorderings along a dim
for _name in ("cumsum", "cumprod", "logcumsumexp"):
    FUNCTIONS[f"torch.{_name}"] = _op(params=("dim",), kwonly=("dtype",), dims={"dim": REQUIRED})
    METHODS[_name] = FUNCTIONS[f"torch.{_name}"]
FUNCTIONS["torch.flip"] = _op(params=("dims",), dims={"dims": REQUIRED})
METHODS["flip"] = FUNCTIONS["torch.flip"]
FUNCTIONS["torch.roll"] = _op(params=("shifts", "dims"), dims={"dims": REQUIRED})
METHODS["roll"] = FUNCTIONS["torch.roll"]
FUNCTIONS["torch.argsort"] = _op(params=("dim", "descending"), kwonly=("stable",), dims={"dim": LAST})
METHODS["argsort"] = FUNCTIONS["torch.argsort"]
FUNCTIONS["torch.diff"] = _op(params=("n", "dim"), dims={"dim": LAST}, min_rank=1, forbid=("prepend", "append"),
                              out="none")
METHODS["diff"] = FUNCTIONS["torch.diff"]
for _name in ("transpose", "swapaxes", "swapdims"):
    _pair = ("axis0", "axis1") if _name == "swapaxes" else ("dim0", "dim1")
    FUNCTIONS[f"torch.{_name}"] = _op(params=_pair, dims={_pair[0]: REQUIRED, _pair[1]: REQUIRED}, fresh=False)
    METHODS[_name] = FUNCTIONS[f"torch.{_name}"]
for _name in ("movedim", "moveaxis"):
    FUNCTIONS[f"torch.{_name}"] = _op(params=("source", "destination"),
                                      dims={"source": REQUIRED, "destination": REQUIRED}, fresh=False)
    METHODS[_name] = FUNCTIONS[f"torch.{_name}"]
FUNCTIONS["torch.diagonal"] = _op(params=("offset", "dim1", "dim2"), dims={"dim1": 0, "dim2": 1}, min_rank=2,
                                  out="minus1", fresh=False)
METHODS["diagonal"] = FUNCTIONS["torch.diagonal"]
FUNCTIONS["torch.unsqueeze"] = _op(params=("dim",), dims={"dim": REQUIRED}, out="plus1", fresh=False)
METHODS["unsqueeze"] = FUNCTIONS["torch.unsqueeze"]
# squeeze() without a dim would squeeze the batch dimension too when there is one row
FUNCTIONS["torch.squeeze"] = _op(params=("dim",), dims={"dim": REQUIRED}, out="none", fresh=False)
METHODS["squeeze"] = FUNCTIONS["torch.squeeze"]
FUNCTIONS["torch.flatten"] = _op(params=("start_dim", "end_dim"), dims={"start_dim": 0, "end_dim": LAST},
                                 out="none", fresh=False)
METHODS["flatten"] = FUNCTIONS["torch.flatten"]

# reductions: with a dim they shift; without one they reduce the whole item
for _name in ("sum", "mean", "nansum", "nanmean", "amax", "amin", "logsumexp", "count_nonzero", "any", "all",
              "argmax", "argmin", "std", "var", "prod"):
    _default = REQUIRED if _name == "logsumexp" else REDUCE_ALL
    _params = ("dim",) if _name in ("count_nonzero",) else ("dim", "keepdim")
    _kwonly = {"sum": ("dtype",), "mean": ("dtype",), "nansum": ("dtype",), "nanmean": ("dtype",),
               "prod": ("dtype",), "std": ("correction", "unbiased"), "var": ("correction", "unbiased")}
    _op_entry = _op(params=_params, kwonly=_kwonly.get(_name, ()), dims={"dim": _default}, out="reduce")
    FUNCTIONS[f"torch.{_name}"] = _op_entry
    METHODS[_name] = _op_entry
# max()/min() without arguments reduce the item; with a dim they return (values, indices)
for _name in ("max", "min"):
    METHODS[_name] = _op(dims={"dim": REDUCE_ALL}, out="reduce", rename=f"a{_name}")
    FUNCTIONS[f"torch.{_name}"] = METHODS[_name]
METHODS["norm"] = _op(params=("p", "dim", "keepdim"), kwonly=("dtype",), dims={"dim": REDUCE_ALL}, out="reduce")

# layers that take a batch first: pooling and conv see `x[i].unsqueeze(0)` as a batch of one
_F = "torch.nn.functional."
for _k in (1, 2, 3):
    FUNCTIONS[f"{_F}conv{_k}d"] = _op(params=("weight", "bias", "stride", "padding", "dilation", "groups"),
                                     item="exact", b1="exact", spatial=_k, out="same")
    FUNCTIONS[f"{_F}conv_transpose{_k}d"] = _op(
        params=("weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
        item="exact", b1="exact", spatial=_k, out="same")
    # each channel pools on its own: a 2-D item in a batch of one is one channel, the same
    FUNCTIONS[f"{_F}max_pool{_k}d"] = _op(
        params=("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
        item="exact", b1="any", spatial=_k, out="same", forbid=("return_indices",))
    FUNCTIONS[f"{_F}avg_pool{_k}d"] = _op(
        params=("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
        + (("divisor_override",) if _k > 1 else ()), item="exact", b1="any", spatial=_k, out="same")
    FUNCTIONS[f"{_F}adaptive_avg_pool{_k}d"] = _op(params=("output_size",), item="exact", b1="any", spatial=_k)
    FUNCTIONS[f"{_F}adaptive_max_pool{_k}d"] = _op(params=("output_size", "return_indices"), item="exact",
                                                  b1="any", spatial=_k, forbid=("return_indices",))
FUNCTIONS[f"{_F}interpolate"] = _op(
    params=("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"),
    item=None, b1="any")
FUNCTIONS[f"{_F}group_norm"] = _op(params=("num_groups", "weight", "bias", "eps"), item=None, b1="any")
FUNCTIONS[f"{_F}linear"] = _op(params=("weight", "bias"), min_rank=1, item="any", b1="lo1")
FUNCTIONS[f"{_F}layer_norm"] = _op(params=("normalized_shape", "weight", "bias", "eps"), min_rank=1)

# reductions that take a tuple of dims (the others reduce a flattened item)
_TUPLE_DIMS = {"sum", "mean", "nansum", "nanmean", "amax", "amin", "std", "var", "count_nonzero", "any", "all",
               "vector_norm"}
# matrix products: exact only for some ranks of their operands (see `_matmul`)
MATMUL = {"torch.matmul", "torch.mm", "torch.bmm", "torch.mv"}
# a batch of one stays a batch of one through these (per-element, no tensor arguments)
_B1_METHODS = {"detach", "cpu", "float", "double", "half", "bfloat16", "contiguous", "clone", "to"} | _UNARY
_B1_FUNCTIONS = {f"torch.{n}" for n in _UNARY} | {f"{_F}{n}" for n in _FUNCTIONAL}
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
class BatchLifter:
    """Lifts a loop-body expression that calls batched torch ops, over the shared lifter.

    Calls from the table are lifted here, innermost first, and stand in the expression
    as placeholder names that `loopvec.lift` resolves through `scope.temps`; everything
    around them (operators, elementwise functions) is the shared lifter's.
    """

    scope: LiftScope
    ctx: PatternContext
    ranks: dict[str, Rank]  # declared ranks of the function's names
    values: dict[str, Rank] = field(default_factory=dict)  # per-item ranks of lifted names
    b1: dict[str, B1] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)  # what was batched, for the message
    origin: dict[str, str] = field(default_factory=dict)  # placeholder -> the source it stands for
    assumed: list[str] = field(default_factory=list)  # what a rewrite relies on beyond the data
    count: int = 0

    @classmethod
    def for_loop(cls, loop: Loop, ctx: PatternContext) -> BatchLifter:
        scope = LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names) | set(loop.assigned))
        lifter = cls(scope, ctx, declared_ranks(loop, ctx.info))
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
        if isinstance(node, cst.Name):
            if node.value in self.b1:
                return self.b1[node.value].rank
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

    # ------------------------------------------------------------------ placeholders
    def _hold(self, value: Lifted, rank: Rank, what: str) -> cst.Name:
        name = f"__lv{self.count}"
        self.count += 1
        self.scope.loop_names.add(name)
        self.scope.temps[name] = value
        self.values[name] = rank
        self.used.append(what)
        return cst.Name(name)

    def _hold_b1(self, value: B1, what: str | None) -> cst.Name:
        name = f"__lv{self.count}"
        self.count += 1
        self.scope.loop_names.add(name)
        # anything but a batch-first consumer sees row i as `node[i:i+1]`
        self.scope.temps[name] = Lifted(_method(value.node, "unsqueeze", "1"), True, "tensor", fresh=value.fresh)
        self.b1[name] = value
        if what:
            self.used.append(what)
        return cst.Name(name)

    # ------------------------------------------------------------------ entry points
    def prelift(self, node: cst.BaseExpression) -> cst.BaseExpression:
        """`node` with every batched call replaced by a placeholder name."""
        return node.visit(_Prelift(self))

    def lift_value(self, node: cst.BaseExpression) -> Lifted | B1:
        """Like `lift`, but a value that is a batch of one per iteration stays a `B1`."""
        return self._lift_held(self.prelift(node))

    def _lift_held(self, held: cst.BaseExpression) -> Lifted | B1:
        if isinstance(held, cst.Name) and held.value in self.b1:
            return self.b1[held.value]
        return lift(held, self.scope)

    def temps(self, statements) -> list[str]:
        """`t = expr` statements of the body, in order, as whole-array statements."""
        out: list[str] = []
        for stmt in statements:
            small = only(stmt)
            if not (isinstance(small, cst.Assign) and len(small.targets) == 1
                    and isinstance(small.targets[0].target, cst.Name)):
                raise LiftError(f"statement `{code(stmt)}` in the loop body")
            name = small.targets[0].target.value
            held = self.prelift(small.value)
            rank = self.rank_of(held)
            value = self._lift_held(held)
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
    def call(self, node: cst.Call) -> cst.BaseExpression | None:
        """A placeholder for `node` when it is a batched call this lifter knows; else None."""
        qual = self.ctx.info.qualname(node.func)
        if qual in FUNCTIONS:
            return self._apply(node, FUNCTIONS[qual], qual.rsplit(".", 1)[-1], method=False)
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
            if name in METHODS:
                return self._apply(node, METHODS[name], name, method=True)
            if name in ("cuda", "cpu") and not node.args:
                obj = lift(receiver, self.scope)
                return self._hold(Lifted(_method(obj.node, name), True, "tensor", fresh=False),
                                  self.rank_of(receiver), name)
        return None

    def subscript(self, node: cst.Subscript) -> cst.BaseExpression | None:
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
        return isinstance(node, cst.Name) and node.value in self.b1

    def _batch_of_one(self, item: cst.BaseExpression) -> cst.BaseExpression | None:
        value = lift(item, self.scope)
        if not value.batched or value.kind != "tensor":
            return None
        return self._hold_b1(B1(value.node, Rank(self.rank_of(item).lo + 1,
                                                 None if self.rank_of(item).exact is None
                                                 else self.rank_of(item).exact + 1), value.fresh), None)

    def _unbatch_one(self, node: cst.Name) -> cst.BaseExpression:
        b = self.b1[node.value]
        if b.producer is not None:
            # out[0] is row 0 of a tensor, but the first element of a tuple
            self.assumed.append(f"`{b.producer}` returns a tensor")
        return self._hold(Lifted(b.node, True, "tensor", fresh=b.fresh), b.rank.minus(1), "row of a batch of one")

    def _b1_passthrough(self, node: cst.Call, method: bool) -> cst.BaseExpression | None:
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
        b = self.b1[receiver.value]
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

    def _apply(self, node: cst.Call, op: Op, name: str, method: bool) -> cst.BaseExpression | None:
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
                if rank.exact is not None and (rename or name) in _TUPLE_DIMS:
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

    def _apply_b1(self, node: cst.Call, op: Op, input_expr: cst.Name, what: str, method: bool):
        b = self.b1[input_expr.value]
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

    def _keep_b1(self, node, op: Op, bound, input_expr: cst.Name, method: bool, name: str):
        """softmax(model(x[i:i+1]), dim=1): a dim past the batch of one names the same dim of
        the batch, so the call stays as written. None when some dim could be dim 0."""
        b = self.b1[input_expr.value]
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
        """`node` as the user wrote it (placeholders put back)."""
        return self.explain(code(node))

    def explain(self, text: str) -> str:
        """A message with the placeholders put back, newest first (they nest)."""
        for name in sorted(self.origin, key=lambda n: -int(n[4:])):
            text = text.replace(name, self.origin[name])
        return text

    def _rank_advice(self, node: cst.BaseExpression, what: str, need: str, item: bool = False,
                     invariant: bool = False) -> str:
        if invariant and isinstance(node, cst.Name):
            arrays, dims = [node.value], "[...]"
        else:
            arrays, dims = [a for _, a in self.scope.domain.elements] or list(self.scope.domain.arrays), "[n,...]"
        hint = f" (say so with `# loopvec: shapes {arrays[0]}={dims}` on the def line)" if arrays else ""
        return f"`{what}` is exact only with {need}, and the rank of `{self.source(node)}` is not declared{hint}"

    def _permute(self, node: cst.Call) -> cst.BaseExpression:
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
    def matmul(self, left: cst.BaseExpression, right: cst.BaseExpression, what: str) -> cst.BaseExpression | None:
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

    def _matmul_call(self, node: cst.Call, qual: str) -> cst.BaseExpression | None:
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


class _Prelift(cst.CSTTransformer):
    """Replaces batched calls by placeholders, innermost first (children are visited first)."""

    def __init__(self, lifter: BatchLifter) -> None:
        self.lifter = lifter

    def visit_Lambda(self, node) -> bool:
        return False

    def visit_ListComp(self, node) -> bool:
        return False

    def visit_GeneratorExp(self, node) -> bool:
        return False

    def _held(self, original: cst.CSTNode, out: cst.BaseExpression | None, updated):
        if out is None:
            return updated
        if isinstance(out, cst.Name) and out.value.startswith("__lv"):
            self.lifter.origin.setdefault(out.value, code(original))
        return out

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if not self.lifter._batched(updated):
            return updated
        return self._held(original, self.lifter.call(updated), updated)

    def leave_Subscript(self, original: cst.Subscript, updated: cst.Subscript) -> cst.BaseExpression:
        return self._held(original, self.lifter.subscript(updated), updated)

    def leave_BinaryOperation(self, original, updated: cst.BinaryOperation) -> cst.BaseExpression:
        if isinstance(updated.operator, cst.MatrixMultiply):
            out = self.lifter.matmul(updated.left, updated.right, self.lifter.source(updated))
            if out is None:
                raise LiftError(f"`{code(original)}` per element")
            return self._held(original, out, updated)
        return updated


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
        problem = map_loop_problem(loop)
        if problem:
            return Decline(self.NAME, problem)
        shape = map_shape(loop)
        if isinstance(shape, str):
            return Decline(self.NAME, shape)
        problem = used_after_problem(loop, set())
        if problem:
            return Decline(self.NAME, problem)
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
            return Decline(self.NAME, lifter.explain(str(exc)))
