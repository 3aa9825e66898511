"""What one function's body says about its parameters, for generating inputs.

The verifier must call a function like

    def f(base, active, res):
        for i in range(len(base)):
            for j in range(len(base[i])):
                if active[i][j]:
                    res[i][j] = base[i][j] * 2

with arguments it accepts: `base`, `active` and `res` 2-D and of one shape, `active`
usable as a truth value, `res` written. This module reads such facts from the syntax
(`ast`, one function, nothing imported or run): ranks from indexing depth and `.shape`
unpacking, equal dimensions from shared loop indices, `zip` and `len`, index tensors,
range bounds and scalar operands. They guide a generator; they prove nothing, so when
a fact is unclear it is left out rather than guessed.

Local allocations keep their sizes: after `counts = torch.zeros(C)`, `counts[labels[i]]`
says that `labels` holds positions below the int parameter `C` (the axis `VALUE` of a
parameter stands for its value used as a size). A parameter the body calls
(`model(x[i])`) is `called`: the verifier passes a stand-in for it.
"""

from __future__ import annotations

import ast
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field, replace

DimRef = tuple[str, int]  # (parameter, axis)
VALUE = -1  # the axis of a DimRef that means "this int parameter's value, as a size"

# Methods returning a new tensor of the receiver's shape: writes to it are not writes
# to the parameter, but its dimensions are the parameter's.
_SAME_SHAPE = frozenset(
    "clone detach contiguous float double half bfloat16 int long short byte bool char to cpu cuda "
    "abs neg exp log log1p sqrt rsqrt sin cos tan tanh sigmoid relu sign floor ceil round trunc "
    "square reciprocal clamp clip".split()
)
# In-place methods ending in "_" that do not change values.
_NOT_WRITES = frozenset({"requires_grad_", "share_memory_", "retain_grad_"})
# torch functions whose positional arguments are sizes or values, not tensors.
_FACTORIES = frozenset(
    "tensor as_tensor zeros ones empty full arange linspace logspace eye rand randn randint "
    "zeros_like ones_like empty_like full_like rand_like randn_like".split()
)
_LIKE = frozenset("zeros_like ones_like empty_like full_like rand_like randn_like".split())
# Factories whose positional arguments (or one tuple of them) are the sizes of a new
# tensor; `full` takes its sizes as one tuple followed by the fill value.
_SIZED = frozenset("zeros ones empty rand randn".split())
_NEW_SIZED = frozenset("new_zeros new_ones new_empty new_full".split())
_CASTS = frozenset({"int", "float", "bool", "abs", "round", "complex"})
# Evidence of a tensor (`ParamUsage.tensor_only`): attributes a list or tuple lacks,
# methods a list or tuple also has (not evidence), torch functions that accept a list where
# a tensor goes (not evidence), and the torch namespaces whose functions reject lists.
_TENSOR_ATTRS = frozenset(
    "shape ndim dtype device T mT H mH data grad requires_grad is_cuda layout is_leaf grad_fn "
    "real imag itemsize nbytes names".split()
)
_SEQUENCE_METHODS = frozenset(
    "append extend insert remove pop clear index count copy reverse sort "
    "items keys values get update setdefault".split()
)
_TAKE_SEQUENCES = frozenset(
    "stack cat concat concatenate hstack vstack dstack column_stack row_stack broadcast_tensors "
    "block_diag cartesian_prod meshgrid einsum atleast_1d atleast_2d atleast_3d chain_matmul "
    "is_tensor is_storage asarray from_numpy Size broadcast_shapes save manual_seed sparse_coo_tensor "
    "Tensor FloatTensor DoubleTensor HalfTensor LongTensor IntTensor ShortTensor ByteTensor BoolTensor".split()
)
_TORCH_NAMESPACES = frozenset(
    "torch.fft torch.linalg torch.special torch.nn.functional nn.functional".split()
)
# What torch APIs and Python forms require of their operands, read from the whole body:
# name -> (rule, operand, value) entries. Operands count from the receiver of a method
# (`x.mm(w)`: x is 0, w is 1) or the first argument of a function (`torch.mm(x, w)`);
# a value of None is read from the code (`dim=k`, the k of `x.shape[-k:]`). Rules:
#   min_rank k / rank k: at least / exactly k dims;  square: the last two dims equal;
#   contract: operand 0's contracted dim equals operand 1's (matmul);  channels: a
#   convolution's input channels (and window) match the weight;  integer: holds
#   positions;  below k: positions below k;  mask: bool;  one_element: a single value;
#   same_shape: broadcasts against operand 0 (a mask and what it masks).
# Forms whose rule is an older fact say which: `ParamUsage.exact_rank`, `.rank`, `.index_into`.
CONSTRAINTS: dict[str, tuple[tuple[str, int, int | None], ...]] = {
    "fft2": (("min_rank", 0, 2),),
    "ifft2": (("min_rank", 0, 2),),
    "rfft2": (("min_rank", 0, 2),),
    "irfft2": (("min_rank", 0, 2),),
    "fftn(dim=...)": (("min_rank", 0, None),),
    "matmul": (("min_rank", 0, 1), ("min_rank", 1, 1), ("contract", 0, None)),
    "@": (("min_rank", 0, 1), ("min_rank", 1, 1), ("contract", 0, None)),
    "mm": (("rank", 0, 2), ("rank", 1, 2), ("contract", 0, None)),
    "bmm": (("rank", 0, 3), ("rank", 1, 3), ("contract", 0, None)),
    "mv": (("rank", 0, 2), ("rank", 1, 1), ("contract", 0, None)),
    "conv1d": (("rank", 0, 3), ("rank", 1, 3), ("channels", 0, 1)),
    "conv2d": (("rank", 0, 4), ("rank", 1, 4), ("channels", 0, 2)),
    "conv3d": (("rank", 0, 5), ("rank", 1, 5), ("channels", 0, 3)),
    "softmax(dim=k)": (("min_rank", 0, None),),
    "linalg square": (("min_rank", 0, 2), ("square", 0, None)),
    "linalg matrix": (("min_rank", 0, 2),),
    ".T": (("rank", 0, 2),),
    ".t()": (("rank", 0, 2),),
    ".mT": (("min_rank", 0, 2),),
    "H, W = x.shape": (("rank", 0, None),),  # ParamUsage.exact_rank
    "x.shape[-k:]": (("min_rank", 0, None),),
    "x.shape[-k]": (("min_rank", 0, None),),
    "len(x[0])": (("min_rank", 0, 2),),  # ParamUsage.rank
    "x[i][j]": (("min_rank", 0, None),),  # ParamUsage.rank: index depth
    "x[idx[i]]": (("integer", 1, None),),  # ParamUsage.index_into
    "counts[l] += 1": (("below", 1, None),),  # a local of constant size; of an int parameter: `sizes`
    "torch.where": (("mask", 0, None), ("same_shape", 1, None)),
    "masked_fill": (("mask", 1, None), ("same_shape", 1, None)),
    ".item()": (("one_element", 0, None),),
}
# Which entry a call's name takes; a `dim` argument (keyword, or at this position) with a
# constant other than 0 or -1 asks for "softmax(dim=k)"'s rule.
_CALL_RULES = {
    **{n: n for n in "fft2 ifft2 rfft2 irfft2 matmul mm bmm mv conv1d conv2d conv3d".split()},
    **{n: "linalg square" for n in (
        "det inv inverse slogdet logdet matrix_power matrix_exp eigvalsh eigh eigvals eig cholesky "
        "solve inv_ex cholesky_ex").split()},
    **{n: "linalg matrix" for n in "svd svdvals qr matrix_norm matrix_rank pinv lu".split()},
    "t": ".t()", "item": ".item()", "masked_fill": "masked_fill", "masked_fill_": "masked_fill",
    "masked_select": "masked_fill", "masked_scatter": "masked_fill",
}
_DIM_AT = {
    **{n: 1 for n in (
        "softmax log_softmax cumsum cumprod cummax cummin logcumsumexp argmax argmin logsumexp sum mean "
        "nansum nanmean prod amax amin std var norm narrow select unbind gather index_select diff roll "
        "transpose swapaxes movedim flatten").split()},
    **{n: 2 for n in "fft ifft rfft irfft hfft fftn ifftn rfftn".split()},
}
_DIM_TOO = {"transpose": 2, "swapaxes": 2, "movedim": 2}  # a second dim argument


@dataclass(frozen=True)
class Need:
    """One requirement a CONSTRAINTS entry puts on a parameter, or on the part of it left
    after indexing `depth` leading axes away (`images[i]` is depth 1)."""

    rule: str
    param: str
    depth: int = 0
    value: int | None = None
    transposed: bool = False  # `x.T`, `x.t()`: its last two dims swap places
    other: tuple[str, int, bool] | None = None  # the second operand: (param, depth, transposed)
    api: str = ""  # the CONSTRAINTS key it comes from


_INT_OPS = (ast.FloorDiv, ast.Mod, ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr, ast.BitXor)
_BIT_OPS = (ast.BitAnd, ast.BitOr, ast.BitXor)


@dataclass(frozen=True)
class ParamUsage:
    """How one parameter is used. `kind` sums it up for a generator."""

    name: str
    tensor: bool = False  # indexed, iterated, len()/shape, methods, passed to torch.*
    rank: int | None = None  # the rank its indexing needs (highest axis touched + 1)
    exact_rank: bool = False  # fixed by `a, b = x.shape`
    written: bool = False  # `x[i] = ...`, `x[i] += ...`, `x.add_(...)`
    iterated: bool = False
    range_bound: bool = False  # `range(p)`
    int_index: tuple[DimRef, ...] = ()  # `x[p]`: p indexes these axes
    index_into: tuple[DimRef | None, ...] = ()  # `x[p[i]]`: p's values index these axes
    scalar: bool = False  # an operand of arithmetic or comparison, on its own
    int_like: bool = False  # combined with loop indices, sizes or integer operators
    size_like: bool = False  # a count: `range(p)`, `torch.zeros(p)`
    truth: bool = False  # `if p:`
    elem_truth: bool = False  # `if p[i]:`
    arith: bool = False  # its values take part in arithmetic
    int_ops: bool = False  # `//`, `%`, shifts or bit operators on its values
    bitwise: bool = False  # `&`, `|`, `^`, `~` on its values
    compared: bool = False  # its values are compared (`<`, `==`, ...)
    optional: bool = False  # compared with None
    passed: bool = False  # handed to a call this module does not know
    called: bool = False  # `p(...)`: a model or function
    # A use only a tensor supports, on the parameter itself: `.shape`, `.dim()`, `.to(...)`,
    # a tensor method, `p[i, j]`, `@`, a torch function that rejects lists. Iterating,
    # `p[i]` and `len(p)` are not: lists support them too.
    tensor_only: bool = False
    item_tensor: bool = False  # such a use on an element: `for x in p: x.abs()`

    @property
    def kind(self) -> str:
        """callable | tensor | int | float | bool | unknown."""
        if self.called:
            return "callable"
        if self.tensor or self.written or self.iterated or self.index_into:
            return "tensor"
        if self.range_bound or self.int_index or (self.int_like and (self.scalar or self.int_ops)):
            return "int"
        if self.scalar:
            return "int" if self.int_ops else "float"
        if self.truth:
            return "bool"
        return "unknown"


@dataclass(frozen=True)
class UsageFacts:
    params: tuple[str, ...]
    usage: tuple[ParamUsage, ...]
    equal: tuple[tuple[DimRef, ...], ...] = ()  # groups of axes that must have one size
    bounds: tuple[tuple[str, tuple[DimRef, ...]], ...] = ()  # int param -> axes its range indexes
    min_sizes: tuple[tuple[DimRef, int], ...] = ()  # `x[2]` needs x.shape[0] >= 3
    # (p, q, removed): bare `p` meets `q` with axes `removed` indexed away, as in
    # `image[b, c] * mask`; once q's rank is known, p is a scalar or the remaining block.
    operands: tuple[tuple[str, str, tuple[int, ...]], ...] = ()
    # int parameters that size a local tensor some parameter's values index into
    # (`torch.zeros(C)` then `counts[labels[i]]`): the DimRef (p, VALUE) is that size.
    sizes: tuple[str, ...] = ()
    needs: tuple[Need, ...] = ()  # what the APIs and forms of CONSTRAINTS require

    def needs_of(self, name: str) -> tuple[Need, ...]:
        return tuple(n for n in self.needs if n.param == name)

    def of(self, name: str) -> ParamUsage:
        for u in self.usage:
            if u.name == name:
                return u
        return ParamUsage(name)


def usage_facts(func: ast.FunctionDef | ast.AsyncFunctionDef | str, skip_first: bool = False) -> UsageFacts:
    """Facts about the parameters of `func` (a def node, or its source text).

    `skip_first` leaves out `self`/`cls` of a method.
    """
    if isinstance(func, str):
        tree = ast.parse(textwrap.dedent(func))
        func = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    params = [a.arg for a in (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)]
    if skip_first and params:
        params = params[1:]
    walker = _Walker(params)
    for stmt in func.body:
        walker.stmt(stmt)
    return walker.facts()


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _View:
    """Part of parameter `param` with axes `removed` indexed away; `copy` when a new tensor."""

    param: str
    removed: tuple[int, ...] = ()
    copy: bool = False
    transposed: bool = False  # `x.T`: positions no longer follow the parameter's axes

    def axis(self, position: int) -> int:
        """The parameter axis at `position` among the axes not yet indexed away."""
        axis = -1
        for _ in range(position + 1):
            axis += 1
            while axis in self.removed:
                axis += 1
        return axis


@dataclass(frozen=True)
class _Val:
    """What the walker knows about one expression's value."""

    view: _View | None = None
    var: int | None = None  # a loop index, possibly shifted by a constant
    dim: tuple | None = None  # a union-find node for a size: len(x), x.shape[1]
    const: int | None = None
    shape: _View | None = None  # `x.shape` / `x.size()`
    items: tuple[_Val, ...] | None = None  # what a zip yields, for tuple targets
    params: frozenset[str] = frozenset()  # parameters whose values flow into it
    bare: str | None = None  # exactly the parameter's own name
    # A new tensor's sizes, per axis: a DimRef (len(x), x.shape[1]; `(p, VALUE)` for an
    # int parameter), or None when unknown (a constant, `n + 1`).
    alloc: tuple[DimRef | None, ...] | None = None
    consts: tuple[int | None, ...] = ()  # an allocation's constant sizes, per axis


_NOTHING = _Val()


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[tuple, tuple] = {}

    def find(self, x: tuple) -> tuple:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: tuple, b: tuple) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb

    def groups(self) -> list[list[tuple]]:
        out: dict[tuple, list[tuple]] = defaultdict(list)
        for x in list(self.parent):
            out[self.find(x)].append(x)
        return list(out.values())


@dataclass
class _Facts:
    tensor: bool = False
    rank: int = 0
    exact_rank: int | None = None
    written: bool = False
    iterated: bool = False
    range_bound: bool = False
    int_index: list = field(default_factory=list)
    index_into: list = field(default_factory=list)
    scalar: bool = False
    int_like: bool = False
    size_like: bool = False
    truth: bool = False
    elem_truth: bool = False
    arith: bool = False
    int_ops: bool = False
    bitwise: bool = False
    compared: bool = False
    optional: bool = False
    passed: bool = False
    called: bool = False
    tensor_only: bool = False
    item_tensor: bool = False


def _ref(param: str, axis: int) -> tuple:
    return ("ref", param, axis)


class _Walker:
    def __init__(self, params: list[str]) -> None:
        self.params = params
        self.env: dict[str, _Val] = {
            p: _Val(view=_View(p), params=frozenset({p}), bare=p) for p in params
        }
        self.f = {p: _Facts() for p in params}
        self.uf = _UnionFind()
        self.vars = 0
        self.var_bound: dict[int, str] = {}
        self.var_const: dict[int, int] = {}
        self.min_size: dict[DimRef, int] = {}
        self.operands: list[tuple[str, str, tuple[int, ...]]] = []
        self.bare_index: list[tuple[str, DimRef]] = []
        self.sizes: list[str] = []
        self.needs: list[Need] = []

    # ------------------------------------------------------------------ results

    def facts(self) -> UsageFacts:
        groups = self.uf.groups()
        refs_of: dict[tuple, tuple[DimRef, ...]] = {}
        equal = []
        for g in groups:
            refs = tuple(sorted((n[1], n[2]) for n in g if n[0] == "ref"))
            for n in g:
                refs_of[n] = refs
            if len(refs) > 1:
                equal.append(refs)
        bounds: dict[str, list[DimRef]] = defaultdict(list)
        for var, p in self.var_bound.items():
            bounds[p].extend(refs_of.get(("var", var), ()))
        min_size = dict(self.min_size)
        for var, c in self.var_const.items():
            for ref in refs_of.get(("var", var), ()):
                min_size[ref] = max(min_size.get(ref, 0), c)
        for q, ref in self.bare_index:
            if self.f[q].tensor or self.f[q].iterated:
                self.f[q].index_into.append(ref)
            else:
                self.f[q].int_index.append(ref)
        usage = tuple(self._usage(p) for p in self.params)
        return UsageFacts(
            params=tuple(self.params),
            usage=usage,
            equal=tuple(sorted(equal)),
            bounds=tuple((p, tuple(sorted(set(r)))) for p, r in sorted(bounds.items())),
            min_sizes=tuple(sorted(min_size.items())),
            operands=tuple(dict.fromkeys(self.operands)),
            sizes=tuple(dict.fromkeys(self.sizes)),
            needs=tuple(dict.fromkeys(self.needs)),
        )

    def _usage(self, p: str) -> ParamUsage:
        f = self.f[p]
        rank = f.exact_rank if f.exact_rank is not None else (f.rank or None)
        u = ParamUsage(
            name=p,
            tensor=f.tensor,
            rank=rank,
            exact_rank=f.exact_rank is not None,
            written=f.written,
            iterated=f.iterated,
            range_bound=f.range_bound,
            int_index=tuple(dict.fromkeys(f.int_index)),
            index_into=tuple(dict.fromkeys(f.index_into)),
            scalar=f.scalar,
            int_like=f.int_like,
            size_like=f.size_like or f.range_bound,
            truth=f.truth,
            elem_truth=f.elem_truth,
            arith=f.arith,
            int_ops=f.int_ops,
            bitwise=f.bitwise,
            compared=f.compared,
            optional=f.optional,
            passed=f.passed,
            called=f.called,
            tensor_only=f.tensor_only,
            item_tensor=f.item_tensor,
        )
        # An index parameter is a tensor; its own ints say nothing about `scalar`.
        return replace(u, scalar=False) if u.kind == "tensor" else u

    # ------------------------------------------------------------------ helpers

    def _param_facts(self, val: _Val) -> list[_Facts]:
        return [self.f[p] for p in val.params if p in self.f]

    def _new_var(self) -> int:
        self.vars += 1
        self.uf.find(("var", self.vars))
        return self.vars

    def _need_rank(self, param: str, axis: int) -> None:
        if param in self.f:
            self.f[param].rank = max(self.f[param].rank, axis + 1)

    def _tensorish(self, val: _Val) -> None:
        if val.view is not None and val.view.param in self.f:
            self.f[val.view.param].tensor = True

    def _tensor_use(self, val: _Val) -> None:
        """`val` is used as only a tensor can be: evidence for its parameter, or its items."""
        if val.bare is not None and val.bare in self.f:
            self.f[val.bare].tensor_only = True
        elif val.view is not None and val.view.removed and val.view.param in self.f:
            self.f[val.view.param].item_tensor = True

    def _part(self, val: _Val, values: bool = False) -> tuple[str, int, bool] | None:
        """(parameter, axes indexed away, transposed) of a value that is part of one;
        with `values`, also a value computed from one tensor parameter (`labels.flatten()`)."""
        if val.view is not None and val.view.param in self.f:
            return val.view.param, len(val.view.removed), val.view.transposed
        if values and val.view is None and len(val.params) == 1:
            (p,) = val.params
            if p in self.f and (self.f[p].tensor or self.f[p].tensor_only):
                return p, 0, False
        return None

    def need(self, api: str, operands: list[_Val], value: int | None = None) -> None:
        """Record what CONSTRAINTS[api] asks of `operands` (`value` fills an entry's None)."""
        for rule, k, v in CONSTRAINTS[api]:
            if k >= len(operands):
                continue
            part = self._part(operands[k], values=rule in ("integer", "below", "mask"))
            v = value if v is None else v
            if part is None or (rule in ("min_rank", "rank", "below") and v is None):
                continue
            other = None
            if rule in ("contract", "channels", "same_shape"):
                partner = operands[0] if k else (operands[1] if len(operands) > 1 else _NOTHING)
                other = self._part(partner)
                if other is None:
                    continue
            self.needs.append(Need(rule, part[0], part[1], v, part[2], other, api))

    def call_needs(self, name: str, operands: list[_Val], nodes: list[ast.expr | None], e: ast.Call) -> None:
        """The CONSTRAINTS a call by this name puts on its operands, `dim` arguments included."""
        if name in _CALL_RULES:
            self.need(_CALL_RULES[name], operands)
        if not operands or name in _TAKE_SEQUENCES or name in ("unsqueeze", "stack", "cat"):
            return  # torch.stack(xs, dim=1): the dim is the result's, not an item's
        dims = [kw.value for kw in e.keywords if kw.arg in ("dim", "dim0", "dim1", "axis")]
        at = _DIM_AT.get(name)
        if at is not None:
            dims += [n for n in nodes[at:at + _DIM_TOO.get(name, 1)] if n is not None]
        api = "fftn(dim=...)" if "fft" in name else "softmax(dim=k)"
        for node in dims:
            for d in _int_consts(node):
                # dims 0 and -1 also exist on a 0-D tensor: they ask for nothing
                if d >= 1 or d <= -2:
                    self.need(api, operands[:1], d + 1 if d >= 0 else -d)

    def _dim_node(self, view: _View, position: int) -> tuple:
        axis = view.axis(position)
        self._need_rank(view.param, axis)
        return _ref(view.param, axis)

    def _add_min_size(self, ref: DimRef, size: int) -> None:
        self.min_size[ref] = max(self.min_size.get(ref, 0), size)

    # ------------------------------------------------------------------ statements

    def stmt(self, s: ast.stmt) -> None:
        if isinstance(s, (ast.For, ast.AsyncFor)):
            self.loop(s.target, s.iter)
            self.block(s.body)
            self.block(s.orelse)
        elif isinstance(s, (ast.While, ast.If)):
            self.truth(s.test)
            self.block(s.body)
            self.block(s.orelse)
        elif isinstance(s, ast.Assign):
            val = self.expr(s.value)
            for t in s.targets:
                self.bind(t, val)
        elif isinstance(s, ast.AnnAssign):
            if s.value is not None:
                self.bind(s.target, self.expr(s.value))
        elif isinstance(s, ast.AugAssign):
            self.aug_assign(s)
        elif isinstance(s, ast.Assert):
            self.truth(s.test)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # A nested helper sees the parameters by closure; read it like inline code.
            self.block(s.body)
        else:
            for child in ast.iter_child_nodes(s):
                if isinstance(child, ast.stmt):
                    self.stmt(child)
                elif isinstance(child, ast.expr):
                    self.expr(child)
                elif isinstance(child, (ast.withitem, ast.ExceptHandler, ast.match_case)):
                    for sub in ast.iter_child_nodes(child):
                        if isinstance(sub, ast.stmt):
                            self.stmt(sub)
                        elif isinstance(sub, ast.expr):
                            self.expr(sub)

    def block(self, body: list[ast.stmt]) -> None:
        for s in body:
            self.stmt(s)

    def aug_assign(self, s: ast.AugAssign) -> None:
        if isinstance(s.target, ast.Subscript):
            target = self.subscript(s.target, store=True)
        else:
            target = self.expr(s.target) if isinstance(s.target, ast.Name) else _NOTHING
        value = self.expr(s.value)
        self.binop(target, value, s.op)
        if isinstance(s.target, ast.Name) and s.target.id in self.f and target.bare:
            # `p += 1` on a bare parameter: an in-place update only if p is a tensor.
            self.f[s.target.id].written = self.f[s.target.id].tensor

    def bind(self, target: ast.expr, val: _Val) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = val
        elif isinstance(target, (ast.Tuple, ast.List)):
            self.bind_tuple(target.elts, val)
        elif isinstance(target, ast.Subscript):
            self.subscript(target, store=True)
        elif isinstance(target, ast.Attribute):
            self.expr(target.value)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, _NOTHING)

    def bind_tuple(self, elts: list[ast.expr], val: _Val) -> None:
        starred = any(isinstance(e, ast.Starred) for e in elts)
        if val.items is not None and len(val.items) == len(elts):
            for e, v in zip(elts, val.items):
                self.bind(e, v)
        elif val.shape is not None:
            # n, m = x.shape: names for x's sizes, and x's rank exactly.
            view = val.shape
            for k, e in enumerate(elts):
                if starred:
                    self.bind(e, _NOTHING)
                else:
                    self.bind(e, _Val(dim=self._dim_node(view, k)))
            if not starred and view.param in self.f:
                self.f[view.param].exact_rank = len(view.removed) + len(elts)
        elif val.view is not None and not starred:
            # a, b = pair, with pair an element of a list of pairs.
            view = val.view
            axis = view.axis(0)
            self._need_rank(view.param, axis)
            self._add_min_size((view.param, axis), len(elts))
            inner = _View(view.param, (*view.removed, axis), view.copy)
            for e in elts:
                self.bind(e, _Val(view=inner, params=val.params))
        else:
            for e in elts:
                self.bind(e, _Val(params=val.params))

    # ------------------------------------------------------------------ loops

    def loop(self, target: ast.expr, it: ast.expr) -> None:
        name = _call_name(it)
        if name == "enumerate" and it.args:
            var = self._new_var()
            elem = self.iter_elem(it.args[0], var)
            for a in it.args[1:]:
                self.expr(a)
            if isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == 2:
                self.bind(target.elts[0], _Val(var=var))
                self.bind(target.elts[1], elem)
            else:
                self.bind(target, _NOTHING)
            return
        var = self._new_var()
        self.bind(target, self.iter_elem(it, var))

    def iter_elem(self, it: ast.expr, var: int) -> _Val:
        """The value each turn of `for _ in it` binds; `var` is the turn's index."""
        name = _call_name(it)
        if name == "range":
            self.range_domain(it, var)
            return _Val(var=var)
        if name == "zip":
            return _Val(items=tuple(self.iter_elem(a, var) for a in it.args))
        val = self.expr(it)
        if val.view is None:
            return _Val(params=val.params)
        view = val.view
        if view.param in self.f:
            self.f[view.param].iterated = True
        if view.transposed:  # `for col in w.T`: not w's first axis
            return _Val(params=val.params)
        axis = view.axis(0)
        self._need_rank(view.param, axis)
        self.uf.union(("var", var), _ref(view.param, axis))
        return _Val(view=_View(view.param, (*view.removed, axis), view.copy), params=val.params)

    def range_domain(self, call: ast.Call, var: int) -> None:
        args = [self.expr(a) for a in call.args]
        if not args:
            return
        stop = args[0] if len(args) == 1 else args[1]
        if stop.dim is not None:
            self.uf.union(("var", var), stop.dim)
        elif stop.var is not None:
            # range(i) inside a loop over i: a triangle of a square.
            self.uf.union(("var", var), ("var", stop.var))
        elif stop.bare is not None and stop.bare in self.f:
            self.var_bound[var] = stop.bare
            self.f[stop.bare].range_bound = True
        elif stop.const is not None and stop.const > 0:
            self.var_const[var] = stop.const

    # ------------------------------------------------------------------ expressions

    def truth(self, e: ast.expr) -> None:
        val = self.expr(e)
        if val.bare is not None and val.bare in self.f:
            self.f[val.bare].truth = True
        elif val.view is not None and val.view.param in self.f:
            self.f[val.view.param].elem_truth = True

    def expr(self, e: ast.expr) -> _Val:
        method = getattr(self, "_" + type(e).__name__, None)
        if method is not None:
            return method(e)
        for child in ast.iter_child_nodes(e):
            if isinstance(child, ast.expr):
                self.expr(child)
            elif isinstance(child, ast.comprehension):
                self.comprehension(child)
        return _NOTHING

    def comprehension(self, gen: ast.comprehension) -> None:
        self.loop(gen.target, gen.iter)
        for cond in gen.ifs:
            self.truth(cond)

    def _comp(self, e: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> _Val:
        for gen in e.generators:
            self.comprehension(gen)
        return _Val(params=self.expr(e.elt).params)

    _ListComp = _SetComp = _GeneratorExp = _comp

    def _DictComp(self, e: ast.DictComp) -> _Val:
        for gen in e.generators:
            self.comprehension(gen)
        self.expr(e.key)
        self.expr(e.value)
        return _NOTHING

    def _Name(self, e: ast.Name) -> _Val:
        return self.env.get(e.id, _NOTHING)

    def _Constant(self, e: ast.Constant) -> _Val:
        if isinstance(e.value, int) and not isinstance(e.value, bool):
            return _Val(const=e.value)
        return _NOTHING

    def _Starred(self, e: ast.Starred) -> _Val:
        return self.expr(e.value)

    def _Tuple(self, e: ast.Tuple | ast.List | ast.Set) -> _Val:
        params: frozenset[str] = frozenset()
        for el in e.elts:
            params |= self.expr(el).params
        return _Val(params=params)

    _List = _Set = _Tuple

    def _IfExp(self, e: ast.IfExp) -> _Val:
        self.truth(e.test)
        a, b = self.expr(e.body), self.expr(e.orelse)
        return _Val(params=a.params | b.params)

    def _BoolOp(self, e: ast.BoolOp) -> _Val:
        for v in e.values:
            self.truth(v)
        return _NOTHING

    def _UnaryOp(self, e: ast.UnaryOp) -> _Val:
        if isinstance(e.op, ast.Not):
            self.truth(e.operand)
            return _NOTHING
        val = self.expr(e.operand)
        if isinstance(e.op, ast.Invert):
            for f in self._param_facts(val):
                f.int_ops = f.bitwise = True
        if isinstance(e.op, ast.USub) and val.const is not None:
            return _Val(const=-val.const)
        if val.bare is not None and val.bare in self.f:
            self.f[val.bare].scalar = True
        return _Val(params=val.params)

    def _BinOp(self, e: ast.BinOp) -> _Val:
        left, right = self.expr(e.left), self.expr(e.right)
        self.binop(left, right, e.op)
        if isinstance(e.op, (ast.Add, ast.Sub)):
            # i + 1, n - 1 - i, len(x) - 1: the same index or size, shifted.
            if left.var is not None and right.const is not None:
                return _Val(var=left.var)
            if right.var is not None and (left.const is not None or left.dim is not None):
                return _Val(var=right.var)
            if left.dim is not None and (right.const is not None or right.var is not None):
                return _Val(dim=left.dim) if right.const is not None else _Val(var=right.var)
            if left.const is not None and right.const is not None:
                return _Val(const=left.const + right.const if isinstance(e.op, ast.Add) else left.const - right.const)
        return _Val(params=left.params | right.params)

    def binop(self, left: _Val, right: _Val, op: ast.operator) -> None:
        for val in (left, right):
            for f in self._param_facts(val):
                f.arith = True
                if isinstance(op, _INT_OPS):
                    f.int_ops = True
                if isinstance(op, _BIT_OPS):
                    f.bitwise = True
        if isinstance(op, ast.MatMult):
            for val in (left, right):
                self._tensorish(val)
                self._tensor_use(val)
            self.need("@", [left, right])
            return
        self.operand(left, right, int_op=isinstance(op, _INT_OPS))
        self.operand(right, left, int_op=isinstance(op, _INT_OPS))

    def operand(self, val: _Val, partner: _Val, int_op: bool = False) -> None:
        """`val` meets `partner` in arithmetic or a comparison."""
        if val.bare is None or val.bare not in self.f:
            return
        f = self.f[val.bare]
        f.scalar = True
        if int_op or partner.var is not None or partner.dim is not None:
            f.int_like = True
        if partner.view is not None and partner.bare is None and partner.view.param != val.bare:
            self.operands.append((val.bare, partner.view.param, partner.view.removed))

    def _Compare(self, e: ast.Compare) -> _Val:
        vals = [self.expr(x) for x in (e.left, *e.comparators)]
        nodes = (e.left, *e.comparators)
        for k, op in enumerate(e.ops):
            a, b = vals[k], vals[k + 1]
            if isinstance(op, (ast.Is, ast.IsNot)):
                for v, other in ((a, nodes[k + 1]), (b, nodes[k])):
                    if v.bare and _is_none(other):
                        self.f[v.bare].optional = True
                continue
            if isinstance(op, (ast.In, ast.NotIn)):
                continue
            for v in (a, b):
                for f in self._param_facts(v):
                    f.compared = True
            self.operand(a, b)
            self.operand(b, a)
        return _NOTHING

    def _Attribute(self, e: ast.Attribute) -> _Val:
        base = self.expr(e.value)
        if base.view is None:
            return _Val(params=base.params)
        self._tensorish(base)
        if e.attr in _TENSOR_ATTRS:
            self._tensor_use(base)
        if e.attr in ("T", "mT"):
            self.need("." + e.attr, [base])
            return _Val(view=replace(base.view, copy=True, transposed=True), params=base.params)
        if base.view.transposed:  # `w.T.shape`: sizes in another order
            return _Val(params=base.params)
        if e.attr == "shape":
            return _Val(shape=base.view, params=base.params)
        if e.attr in ("data", "real", "imag"):
            return _Val(view=base.view, params=base.params)
        return _Val(params=base.params)

    def _Subscript(self, e: ast.Subscript) -> _Val:
        return self.subscript(e, store=False)

    def subscript(self, e: ast.Subscript, store: bool) -> _Val:
        base = self.expr(e.value)
        index = e.slice.elts if isinstance(e.slice, ast.Tuple) else [e.slice]
        if base.shape is not None:
            if len(index) == 1 and isinstance(index[0], ast.Slice):
                low = _int_consts(index[0].lower) if index[0].lower is not None else ()
                if len(low) == 1 and low[0] < 0 and index[0].upper is None:
                    self.need("x.shape[-k:]", [_Val(view=base.shape)], -low[0])
                self.expr(index[0])
                return _NOTHING
            k = self.expr(index[0]) if len(index) == 1 else _NOTHING
            if k.const is not None and k.const >= 0:
                return _Val(dim=self._dim_node(base.shape, k.const))
            if k.const is not None:
                self.need("x.shape[-k]", [_Val(view=base.shape)], -k.const)
            return _NOTHING
        if base.view is None:
            if base.alloc is not None:
                self.alloc_index(base.alloc, index, base.consts)
                return _Val(params=base.params)
            for node in index:
                self.index_expr(node, None)
            return _Val(params=base.params)
        view = base.view
        self._tensorish(base)
        if view.transposed:  # `w.T[0]` is a column of w: positions are not w's axes
            for node in index:
                self.index_expr(node, None)
            return _Val(params=base.params)
        if isinstance(e.slice, ast.Tuple) or (isinstance(e.slice, ast.Constant) and e.slice.value in (None, Ellipsis)):
            self._tensor_use(base)  # `p[i, j]`, `p[None]`: a list takes one int or slice
        removed = list(view.removed)
        position = 0
        tracked = True
        for node in index:
            if not tracked:
                self.index_expr(node, None)
                continue
            if isinstance(node, ast.Slice):
                self._need_rank(view.param, _View(view.param, tuple(removed)).axis(position))
                for part in (node.lower, node.upper, node.step):
                    if part is not None:
                        self.expr(part)
                position += 1
                continue
            if isinstance(node, ast.Constant) and (node.value is Ellipsis or node.value is None):
                # Positions after `...` or a new axis are not the parameter's axes.
                tracked = False
                continue
            axis = _View(view.param, tuple(removed)).axis(position)
            self._need_rank(view.param, axis)
            if not self.index_expr(node, (view.param, axis)):
                tracked = False
                continue
            removed.append(axis)
        if store and not view.copy and view.param in self.f:
            self.f[view.param].written = True
        if not tracked:
            return _Val(params=base.params)
        return _Val(view=_View(view.param, tuple(sorted(removed)), view.copy), params=base.params)

    def alloc_index(self, alloc: tuple[DimRef | None, ...], index: list[ast.expr], consts: tuple = ()) -> None:
        """`counts[labels[i]]` on a local `counts = torch.zeros(C)`: labels' values are
        positions below C; on `torch.zeros(len(x))`, below len(x), as if indexing x."""
        position = 0
        for node in index:
            if isinstance(node, ast.Constant) and (node.value is Ellipsis or node.value is None):
                position = len(alloc)  # later positions are not the allocation's axes
            ref = alloc[position] if position < len(alloc) else None
            if isinstance(node, ast.Slice):
                self.expr(node)
                position += 1
                continue
            position += 1
            size = consts[position - 1] if position - 1 < len(consts) else None
            if ref is None and size is not None:
                # `counts = torch.zeros(10)`, then `counts[l] += 1`: l's values are below 10
                val = self.expr(node)
                part = self._part(val, values=True) if val.bare is None else None
                if part is not None:
                    self.f[part[0]].index_into.append(None)
                    self.need("counts[l] += 1", [_NOTHING, val], size)
            elif ref is None:
                self.index_expr(node, None)
            elif ref[1] != VALUE:
                self.index_expr(node, ref)
            else:
                # Only a tensor's values are tied to the size; a loop index over
                # range(C) is not (C may be below the length of what it walks).
                val = self.expr(node)
                part = self._part(val, values=True) if val.bare is None else None
                if part is not None:
                    self.f[part[0]].index_into.append(ref)
                    self.sizes.append(ref[0])

    def _size_ref(self, node: ast.expr) -> DimRef | None:
        """The size an allocation's argument states: a dim as it is, or an int parameter."""
        val = self.expr(node)
        if val.bare is not None and val.bare in self.f and not self.f[val.bare].tensor:
            f = self.f[val.bare]
            f.int_like = f.scalar = f.size_like = True
            return (val.bare, VALUE)
        # `len(x) - 1` keeps x's dim in `dim`, but is not that size.
        if val.dim is not None and val.dim[0] == "ref" and not isinstance(node, ast.BinOp):
            return (val.dim[1], val.dim[2])
        return None

    def sized_call(self, e: ast.Call, one_tuple: bool) -> _Val:
        """`torch.zeros(n, m, dtype=...)`, `torch.full((n,), v)`: a new tensor of those sizes."""
        sizes = e.args[:1] if one_tuple else e.args
        alloc = self.allocation(list(sizes))
        for a in e.args[len(sizes):]:
            fill = self.expr(a)
            if fill.bare is not None and fill.bare in self.f:
                self.f[fill.bare].scalar = True  # a fill value: a number, not a size
        for kw in e.keywords:
            self.expr(kw.value)
        return alloc

    def allocation(self, args: list[ast.expr]) -> _Val:
        if len(args) == 1 and isinstance(args[0], (ast.Tuple, ast.List)):
            args = list(args[0].elts)
        if any(isinstance(a, ast.Starred) for a in args):
            for a in args:
                self.expr(a)
            return _NOTHING
        consts = tuple(a.value if isinstance(a, ast.Constant) and type(a.value) is int else None for a in args)
        return _Val(alloc=tuple(self._size_ref(a) for a in args), consts=consts)

    def index_expr(self, node: ast.expr, ref: DimRef | None) -> bool:
        """Read one index; False when it is a tensor of positions or a mask (axis kept)."""
        val = self.expr(node)
        if ref is None:
            if val.view is not None and val.bare is None and val.view.param in self.f:
                self.f[val.view.param].index_into.append(None)
            return True
        if val.var is not None:
            self.uf.union(("var", val.var), _ref(*ref))
        elif val.const is not None:
            self._add_min_size(ref, val.const + 1 if val.const >= 0 else -val.const)
        elif val.bare is not None and val.bare in self.f:
            self.bare_index.append((val.bare, ref))
        elif val.view is not None and val.view.param in self.f:
            self.f[val.view.param].index_into.append(ref)
        elif val.dim is None and not val.params and not isinstance(node, (ast.Name, ast.BinOp, ast.Call)):
            return False
        return True

    def _Call(self, e: ast.Call) -> _Val:
        name = _call_name(e)
        if isinstance(e.func, ast.Name) and e.func.id not in self.env:
            return self.builtin_call(name, e)
        if isinstance(e.func, ast.Attribute):
            owner = e.func.value
            if isinstance(owner, ast.Name) and owner.id not in self.env:
                return self.module_call(owner.id, e.func.attr, e)
            if isinstance(owner, ast.Attribute) and ast.unparse(owner) in _TORCH_NAMESPACES:
                vals = self.call_args(e, passed=False)  # torch.fft.fft(p), F.relu's long name
                self.call_needs(e.func.attr, vals, list(e.args), e)
                if vals:
                    self._tensor_use(vals[0])
                return _Val(params=frozenset().union(*(v.params for v in vals))) if vals else _NOTHING
            return self.method_call(e)
        func = self.expr(e.func)
        if func.bare is not None and func.bare in self.f:
            self.f[func.bare].called = True
            self.model_inputs(e)
        self.call_args(e, passed=True)
        return _NOTHING

    def model_inputs(self, e: ast.Call) -> None:
        """`model(x[i].unsqueeze(0))`, `model(row)` for `row in x`: a model takes at least
        a vector, so the row keeps an axis (x is at least 2-D); `model(x)` says nothing
        about x's rank."""
        for arg in e.args:
            node = arg
            while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                node = node.func.value  # .unsqueeze(0), .float(), .to(device)
            if not isinstance(node, (ast.Subscript, ast.Name)):
                continue
            val = self.expr(node)
            if val.view is not None and val.view.removed and val.view.param in self.f:
                self._need_rank(val.view.param, val.view.axis(0))

    def call_args(self, e: ast.Call, passed: bool) -> list[_Val]:
        vals = [self.expr(a) for a in e.args]
        for kw in e.keywords:
            val = self.expr(kw.value)
            if kw.arg in ("dim", "axis") and val.bare in self.f:
                self.f[val.bare].int_like = self.f[val.bare].scalar = True
            elif passed and val.bare in self.f:
                self.f[val.bare].passed = True
        if passed:
            for val in vals:
                if val.bare in self.f:
                    self.f[val.bare].passed = True
        return vals

    def builtin_call(self, name: str, e: ast.Call) -> _Val:
        if name == "len" and len(e.args) == 1:
            val = self.expr(e.args[0])
            if val.view is None or val.view.transposed:
                return _NOTHING
            self._tensorish(val)
            return _Val(dim=self._dim_node(val.view, 0))
        if name in ("zip", "enumerate", "range", "sum", "min", "max", "sorted", "reversed", "list", "tuple"):
            vals = self.call_args(e, passed=False)
            if name in ("zip", "enumerate", "sum", "sorted", "reversed", "list", "tuple"):
                for val in vals:
                    if val.view is not None and val.view.param in self.f:
                        self.f[val.view.param].iterated = True
            elif name in ("min", "max"):
                for k, val in enumerate(vals):
                    if len(vals) > 1:
                        self.operand(val, vals[1 - k] if len(vals) == 2 else _NOTHING)
            return _Val(params=frozenset().union(*(v.params for v in vals))) if vals else _NOTHING
        if name in _CASTS and len(e.args) == 1:
            val = self.expr(e.args[0])
            if val.bare in self.f:
                self.f[val.bare].scalar = True
                if name == "int":
                    self.f[val.bare].int_like = True
                return _Val(params=val.params, bare=None)
            return val
        if name == "isinstance":
            self.call_args(e, passed=False)
            return _NOTHING
        self.call_args(e, passed=True)
        return _NOTHING

    def module_call(self, module: str, func: str, e: ast.Call) -> _Val:
        if module == "math":
            for val in self.call_args(e, passed=False):
                if val.bare in self.f:
                    self.f[val.bare].scalar = True
                for f in self._param_facts(val):
                    f.arith = True
            return _NOTHING
        if module not in ("torch", "np", "numpy", "F"):
            self.call_args(e, passed=True)
            return _NOTHING
        if func == "where" and e.args:
            self.truth(e.args[0])
            vals = [self.expr(a) for a in e.args[1:]]
            if module not in ("np", "numpy"):
                self.need("torch.where", [self.expr(e.args[0]), *vals])
                # torch.where rejects a list in every place
                cond = self._Name(e.args[0]) if isinstance(e.args[0], ast.Name) else _NOTHING
                for val in (cond, *vals):
                    self._tensor_use(val)
            if len(vals) == 2:
                self.operand(vals[0], vals[1])
                self.operand(vals[1], vals[0])
            return _Val(params=frozenset().union(*(v.params for v in vals)) if vals else frozenset())
        if func in _SIZED or (func == "full" and e.args):
            return self.sized_call(e, one_tuple=func == "full")
        vals = self.call_args(e, passed=False)
        if module in ("torch", "F"):
            self.call_needs(func, vals, list(e.args), e)
        if func in _FACTORIES:
            for val in vals:
                if val.bare in self.f and not self.f[val.bare].tensor and func not in _LIKE:
                    f = self.f[val.bare]
                    f.int_like = f.scalar = f.size_like = True
            if func in _LIKE and vals and vals[0].view is not None:
                return _Val(view=replace(vals[0].view, copy=True), params=vals[0].params)
            return _NOTHING
        if vals:
            self._tensorish(vals[0])
            if vals[0].bare in self.f:
                self.f[vals[0].bare].tensor = True
            if module in ("torch", "F") and func not in _TAKE_SEQUENCES:
                self._tensor_use(vals[0])  # torch.stack(xs) takes a list: that is no evidence
        params: frozenset[str] = frozenset()
        for val in vals:
            params |= val.params
            for f in self._param_facts(val):
                f.arith = True
        return _Val(params=params)

    def method_call(self, e: ast.Call) -> _Val:
        base = self.expr(e.func.value)
        method = e.func.attr
        if base.view is None:
            self.call_args(e, passed=False)
            return _Val(params=base.params)
        self._tensorish(base)
        if method not in _SEQUENCE_METHODS:
            self._tensor_use(base)
        view = base.view
        if view.transposed and method in ("size", "index_select"):
            self.call_args(e, passed=False)
            return _Val(params=base.params)
        if method == "size":
            vals = self.call_args(e, passed=False)
            if not vals:
                return _Val(shape=view, params=base.params)
            if vals[0].const is not None and vals[0].const >= 0:
                return _Val(dim=self._dim_node(view, vals[0].const))
            return _NOTHING
        if method in _NEW_SIZED and e.args:
            return self.sized_call(e, one_tuple=method == "new_full")
        if method == "index_select" and len(e.args) == 2:
            d, idx = self.expr(e.args[0]), self.expr(e.args[1])
            if d.const is not None and d.const >= 0 and idx.bare in self.f:
                self.f[idx.bare].tensor = True
                self.f[idx.bare].index_into.append((view.param, view.axis(d.const)))
            return _Val(params=base.params)
        vals = self.call_args(e, passed=False)
        self.call_needs(method, [base, *vals], [None, *e.args], e)
        for val in vals:
            # x.clamp(lo, hi), x.masked_fill(m, v): arguments meet x's values.
            self.operand(val, base)
        if method.endswith("_") and method not in _NOT_WRITES and not view.copy and view.param in self.f:
            self.f[view.param].written = True
        if method in ("item", "tolist"):
            return base
        if method == "t":
            return _Val(view=replace(view, copy=True, transposed=True), params=base.params)
        if method in _SAME_SHAPE:
            return _Val(view=replace(view, copy=True), params=base.params)
        return _Val(params=base.params)


def _call_name(e: ast.expr) -> str:
    if isinstance(e, ast.Call):
        if isinstance(e.func, ast.Name):
            return e.func.id
        if isinstance(e.func, ast.Attribute):
            return e.func.attr
    return ""


def _is_none(e: ast.expr) -> bool:
    return isinstance(e, ast.Constant) and e.value is None


def _int_consts(e: ast.expr | None) -> tuple[int, ...]:
    """The ints an expression states: `2`, `-2`, `(-2, -1)`; () for anything else."""
    if isinstance(e, ast.Constant) and type(e.value) is int:
        return (e.value,)
    if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub):
        inner = _int_consts(e.operand)
        return (-inner[0],) if len(inner) == 1 else ()
    if isinstance(e, (ast.Tuple, ast.List)):
        parts = [_int_consts(x) for x in e.elts]
        return tuple(p[0] for p in parts) if all(len(p) == 1 for p in parts) else ()
    return ()
