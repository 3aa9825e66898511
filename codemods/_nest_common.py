"""What the nest patterns (`broadcast`, `matmul`, `einsum`, `window`) share.

They all start from `loopvec.analysis.nest.Nest` and end by putting one vectorized
value where the loop's output was. In between they need the same facts and tools:

* ranks: `x[i, j]` is a single element only when `x` is 2-D. Ranks come from what the
  user declared (hint comment, shaped annotation, `m, n = x.shape`), from the output's
  allocation (`torch.zeros(m, n)` is 2-D), and from what the loop forces: `out[i, j] +=
  v` into a 0-d element raises unless `v` is 0-d, so each factor is a single element.
* operands: an access as a whole-array expression whose dims line up with a chosen
  order of loop variables (`b[j]` in order (i, j) is `b[None, :]`), and the einsum
  subscript string of a sum of products.
* the output (`OutputPlan`): replace `out = torch.zeros(...)` and the nest by `out =
  value`, or keep the allocation and write `out[:m, :n] = value` / `+= value` when the
  allocation is not provably the value's shape, or the output is an argument.
  `out[i, j] += v` accumulates in `out`'s dtype, so sums of products cast their operands
  to that dtype first (`A.to(dt) @ B.to(dt)`): that also keeps integer inputs off CUDA's
  missing integer matmul and lets float32 operands sum in a float64 output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from loopvec.analysis.domain import Domain
from loopvec.analysis.loops import Init, Loop
from loopvec.analysis.module import code
from loopvec.analysis.nest import Nest, NestAccess, NestError, build_nest, measures
from loopvec.lift import Lifted, LiftError, LiftScope, as_operand, lift
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite
from loopvec.verify.specs import ListSpec, ScalarSpec, TupleSpec, parse_annotation

from loopvec.analysis.facts import declared_ranks
from loopvec.analysis import traverse

_INT_DTYPES = {"int", "long", "int64", "int32", "int16", "int8", "uint8", "short", "byte", "char", "bool",
               "uint16", "uint32", "uint64"}
_ZERO_ALLOCS = {"torch.zeros", "torch.zeros_like", "new:new_zeros"}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class NestDecline(Exception):
    """A pattern-level reason to decline, raised deep in emission and caught in `match`."""


class NestPattern:
    """A pattern over a loop nest: `match` builds the nest (or declines with why it is not
    one) and hands it to `_match`; a `NestDecline` raised deep in emission is the decline."""

    NAME = ""

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        nest = nest_for(loop, ctx, self.NAME)
        if isinstance(nest, Decline):
            return nest
        try:
            return self._match(nest, ctx)
        except NestDecline as exc:
            return Decline(self.NAME, str(exc))

    def _match(self, nest: Nest, ctx: PatternContext) -> Rewrite | Decline:
        raise NotImplementedError


def nest_for(loop: Loop, ctx: PatternContext, pattern: str) -> Nest | Decline:
    try:
        nest = build_nest(loop, ctx.info)
    except NestError as exc:
        return Decline(pattern, str(exc))
    # A: list[list[float]]: A[i][j] is a Python number, and A[:, None] a TypeError
    lists = _annotated_values(loop)
    for acc in (*nest.reads, *nest.finish_reads, *((nest.target,) if nest.target else ())):
        if acc.array in lists:
            return Decline(pattern, f"`{acc.array}` is annotated as a Python value, not a tensor")
    return nest


def _annotated_values(loop: Loop) -> set[str]:
    fn = loop.function
    if fn is None:
        return set()
    out = set()
    for p in (*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params):
        if p.annotation is not None and isinstance(parse_annotation(code(p.annotation.annotation)),
                                                   (ListSpec, TupleSpec, ScalarSpec)):
            out.add(p.name.value)
    return out


def index(base: str, parts: list[str]) -> str:
    """`base[parts]`, dropping trailing full slices (`x[:, :]` is `x`)."""
    while parts and parts[-1] == ":":
        parts = parts[:-1]
    return f"{as_operand(base)}[{', '.join(parts)}]" if parts else base


def cast(text: str, dtype: str | None) -> str:
    if dtype is None:
        return text
    short = {"torch.float32": "float", "torch.float": "float", "torch.float64": "double", "torch.double": "double"}
    if dtype in short:
        return f"{as_operand(text)}.{short[dtype]}()"
    return f"{as_operand(text)}.to({dtype})"


def is_int_dtype(dtype: str | None) -> bool:
    """`torch.long`, `th.int32`: an integer (or bool) dtype named in the source."""
    return dtype is not None and "." in dtype and dtype.split(".")[-1] in _INT_DTYPES


# --------------------------------------------------------------------------- ranks


@dataclass
class Ranks:
    """Exact ranks of arrays, as far as they are known, and what was assumed."""

    known: dict[str, int]
    assumed: list[str] = field(default_factory=list)

    def of(self, array: str) -> int | None:
        return self.known.get(array)

    def elem(self, acc: NestAccess) -> int | None:
        """Rank of one element `acc` reads: the array's rank minus the positions it consumes."""
        rank = self.of(acc.array)
        if rank is None:
            return None
        consumed = sum(1 for s in acc.subs if s.kind in ("var", "const", "affine"))
        return rank - consumed if rank >= len(acc.subs) else None


def alloc_sizes(init: Init | None, ints: frozenset[str] = frozenset()) -> list[cst.BaseExpression] | None:
    """The size arguments of `torch.zeros(m, n)`, `torch.zeros((m, n))`, `x.new_zeros(m, n)`.

    `ints` are names known to hold one int (`torch.zeros(n)` with `n` a shape tuple
    would be n-D).
    """
    if init is None or init.kind != "alloc" or not isinstance(init.value, cst.Call):
        return None
    args = [a for a in init.value.args if a.keyword is None]
    if any(a.star for a in args):
        return None
    values = [a.value for a in args]
    if init.call and init.call.endswith("full"):
        values = values[:1]
    if len(values) == 1 and isinstance(values[0], (cst.Tuple, cst.List)):
        if any(isinstance(el, cst.StarredElement) for el in values[0].elements):
            return None
        return [el.value for el in values[0].elements]
    # torch.zeros(x.shape) or torch.zeros(size): one argument that may be a whole shape
    if len(values) == 1 and not _scalar_size(values[0], ints):
        return None
    return values


def _scalar_size(node: cst.BaseExpression, ints: frozenset[str]) -> bool:
    """A size expression that is certainly one int (not a shape tuple)."""
    if isinstance(node, cst.Integer):
        return True
    if isinstance(node, cst.Name):
        return node.value in ints
    if isinstance(node, cst.BinaryOperation):
        return True
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "len":
        return True
    if isinstance(node, cst.Subscript) and isinstance(node.value, cst.Attribute) and node.value.attr.value == "shape":
        return True
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "size" \
            and node.args:
        return True
    return False


def int_names(nest: Nest) -> frozenset[str]:
    """Names that hold one int: sizes (`m = len(x)`) and bare `range(n)` extents."""
    return frozenset(nest.sizes) | {lv.extent for lv in nest.levels if lv.extent.isidentifier()}


def ranks_for(nest: Nest, ctx: PatternContext) -> Ranks:
    known = {name: r.exact for name, r in declared_ranks(nest.loop, ctx.info).items() if r.exact is not None}
    init = nest.setup
    out = nest.target.array if nest.target is not None else None
    if out is not None and init is not None and not init.interleaved:
        sizes = alloc_sizes(init, int_names(nest))
        if sizes is not None:
            known[out] = len(sizes)
        elif init.kind in ("like", "clone") and init.ref in known:
            known[out] = known[init.ref]
    return Ranks(known)


def force_scalar_elements(nest: Nest, ranks: Ranks, accesses: tuple[NestAccess, ...]) -> None:
    """When the output element is 0-d, every factor of `out[...] += a * b` is a single element.

    In-place `+=` into a 0-d element raises for anything that is not 0-d; `=` and a
    stored accumulator also accept shapes like (1,), which the rewrite treats as
    scalars -- that is recorded as an assumption.
    """
    target = nest.target
    if target is None or ranks.of(target.array) != len(target.subs):
        return
    for acc in accesses:
        if ranks.of(acc.array) is None and all(s.kind in ("var", "const") for s in acc.subs):
            ranks.known[acc.array] = len(acc.subs)
            if nest.kind != "accumulate":
                ranks.assumed.append(f"`{code(acc.node)}` is a single element")


def require_ranks(accesses, ranks: Ranks) -> None:
    for acc in accesses:
        if ranks.elem(acc) is None:
            raise NestDecline(f"the rank of `{acc.array}` is not known: add a shape hint "
                              f"(`# loopvec: shapes {acc.array}=[...]`) or unpack `{acc.array}.shape`")


class _Invariants(cst.CSTVisitor):
    """Loop-invariant values in an expression: names and attributes, not called functions
    or imported modules."""

    def __init__(self, ctx: PatternContext, skip: set[str]) -> None:
        self.ctx = ctx
        self.skip = skip
        self.found: list[str] = []

    def visit_Call(self, node: cst.Call) -> bool:
        if isinstance(node.func, cst.Attribute) and self.ctx.info.qualname(node.func) is None:
            traverse.visit(node.func.value, self)  # x.sum(): x is a value, .sum the method
        for arg in node.args:
            traverse.visit(arg.value, self)
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if self.ctx.info.qualname(node) is None:
            self.found.append(code(node))
        return False

    def visit_Subscript(self, node: cst.Subscript) -> bool:
        return False  # array elements are the operands, already placed

    def visit_Name(self, node: cst.Name) -> None:
        if node.value not in self.skip and node.value not in ("True", "False", "None") \
                and self.ctx.info.qualname(node) is None:
            self.found.append(node.value)


def check_invariants(nest: Nest, ctx: PatternContext, expr: cst.BaseExpression, width: int, ranks: Ranks,
                     bounded: bool) -> list[str]:
    """Invariant tensors meet each element from the right, as they did in the loop, only
    when they have no more dims than the element (`width`).

    `bounded`: the output element's rank is known, and the loop itself fails for a wider
    value, so an invariant of unknown rank is fine. Otherwise it must be declared: a
    tensor, or a number (`scale: float`). Returns those that may be tensors with dims.
    """
    visitor = _Invariants(ctx, set(nest.vars) | {nest.scalar or ""})
    traverse.visit(expr, visitor)
    numbers = _number_params(nest) | set(nest.sizes)
    tensors = []
    for name in dict.fromkeys(visitor.found):
        if name in numbers:
            continue
        rank = ranks.of(name)
        if rank is not None and rank > width:
            raise NestDecline(f"`{name}` has more dims than one element: its dims would meet the loop's")
        if rank is None and not bounded:
            raise NestDecline(f"the rank of `{name}` is not known: annotate it (`{name}: float`) or hint its shape")
        if rank != 0:
            tensors.append(name)
    return tensors


def _number_params(nest: Nest) -> set[str]:
    fn = nest.loop.function
    if fn is None:
        return set()
    params = [*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params]
    return {p.name.value for p in params if p.annotation is not None
            and code(p.annotation.annotation) in ("int", "float", "bool")}


# --------------------------------------------------------------------------- operands


def extent_slice(nest: Nest, acc: NestAccess, pos: int, var: str, assumptions: list[str],
                 strict: bool = False) -> str:
    """The slice of `acc.array`'s dim `pos` that `var` walks: `:` or `:n`.

    A dim the extent does not measure is cut to the extent: einsum and broadcasting
    stretch a size-1 dim, so with `range(len(x))` over a 1-element `x` and a 3-row `y`
    the loop reads `y[0]` alone while `x * y` makes three rows. `strict`: the operation
    itself insists on equal sizes (the inner dim of a 2-D `@`), so a mismatch raises
    and the dim may stay whole.
    """
    if nest.covers(acc.array, pos, var):
        return ":"
    level = nest.level(var)
    if strict and level.measures:
        other, axis = level.measures[0]
        assumptions.append(f"{acc.array}.shape[{pos}] == {other}.shape[{axis}]")
        return ":"
    return prefix(nest, var)


def prefix(nest: Nest, var: str) -> str:
    """`:n` for the first `n` entries an extent walks.

    `range(-1)` runs zero times but `x[:-1]` drops one element: the slice is exact only
    when the count cannot be negative -- a length, a literal, or a size the output's
    allocation also uses (`torch.zeros(n)` raises for a negative `n` before the loop).
    """
    level = nest.level(var)
    extent = level.extent
    sizes = alloc_sizes(nest.setup, int_names(nest)) if nest.setup is not None and not nest.setup.interleaved \
        else None
    if not (level.measures or extent.isdigit() or (sizes and extent in {code(node) for node in sizes})):
        raise NestDecline(f"`range({extent})` may be negative: it runs zero times where `[:{extent}]` "
                          "would drop elements")
    return f":{extent}"


def aligned(nest: Nest, acc: NestAccess, order: tuple[str, ...], pad: int, ranks: Ranks,
            assumptions: list[str]) -> str:
    """`acc` as a whole-array expression whose leading dims follow `order`.

    A variable of `order` the access does not use becomes a `None` (size-1) dim, and
    `pad` more `None`s go between the indexed dims and the element's own dims, so
    elements of different ranks line up from the right as they did in the loop.
    """
    if not acc.simple:
        raise NestDecline(f"`{code(acc.node)}` is not indexed by plain loop variables")
    vars_ = [s.var for s in acc.subs if s.kind == "var"]
    if len(set(vars_)) != len(vars_):
        raise NestDecline(f"`{code(acc.node)}` repeats a loop variable (a diagonal)")
    parts = [s.code if s.kind == "const" else extent_slice(nest, acc, p, s.var, assumptions)
             for p, s in enumerate(acc.subs)]
    in_order = sorted(vars_, key=order.index)
    base = acc.array
    positions: list[tuple[str, str | None]] = [(part, s.var) for part, s in zip(parts, acc.subs)]
    if vars_ != in_order:
        # A[j, i] in order (i, j): move the indexed dims into order first
        elem = ranks.elem(acc)
        if elem is None:
            raise NestDecline(f"the rank of `{acc.array}` is not known, so its dims cannot be reordered")
        base = index(base, parts)
        perm = [vars_.index(v) for v in in_order] + list(range(len(vars_), len(vars_) + elem))
        base = f"{as_operand(base)}.T" if perm == [1, 0] else f"{as_operand(base)}.permute({', '.join(map(str, perm))})"
        positions = [(":", v) for v in in_order]
    merged: list[str] = []
    k = 0  # the next variable of `order` to place
    for part, var in positions:
        if var is None:
            merged.append(part)
            continue
        while order[k] != var:
            merged.append("None")
            k += 1
        merged.append(part)
        k += 1
    merged += ["None"] * (len(order) - k + pad)
    return index(base, merged)


def letter_for(name: str, taken: set[str]) -> str:
    for cand in (name if len(name) == 1 else "", name[:1].lower()):
        if cand and cand in _LETTERS and cand not in taken:
            return cand
    return next(c for c in _LETTERS if c not in taken)


@dataclass(frozen=True)
class Einsum:
    spec: str
    operands: tuple[str, ...]
    elem_rank: int  # rank of one output element (dims after the free ones)
    trailing: tuple[tuple[str, int], ...] | None  # the array dim each element dim equals
    mixed: bool  # several factors have element dims (which may broadcast against each other)


def einsum_spec(nest: Nest, factors: list[NestAccess], ranks: Ranks, assumptions: list[str]) -> Einsum:
    """`output[b, o] += input[b, i] * weight[o, i]` with `input` 4-D -> `bihw,oi->bohw`."""
    letters: dict[str, str] = {}
    taken: set[str] = set()
    for var in nest.vars:
        letters[var] = letter_for(var, taken)
        taken.add(letters[var])
    elems = []
    for acc in factors:
        if not acc.simple:
            raise NestDecline(f"`{code(acc.node)}` is not indexed by plain loop variables")
        elem = ranks.elem(acc)
        assert elem is not None
        elems.append(elem)
    width = max(elems, default=0)
    provider = next((acc for acc, e in zip(factors, elems) if e == width), None) if width else None
    names = {dim: name for name, dims in nest.sizes.items() for dim in dims}
    slots = []
    for t in range(width):
        first = len(provider.subs) if provider else 0
        hint = names.get((provider.array, first + t), "") if provider else ""
        slot = letter_for(hint, taken)
        taken.add(slot)
        slots.append(slot)
    terms, operands = [], []
    for acc, elem in zip(factors, elems):
        parts, term = [], ""
        for p, s in enumerate(acc.subs):
            if s.kind == "const":
                parts.append(s.code)
            else:
                parts.append(extent_slice(nest, acc, p, s.var, assumptions))
                term += letters[s.var]
        terms.append(term + "".join(slots[width - elem:]))
        operands.append(index(acc.array, parts))
    out = "".join(letters[v] for v in nest.free) + "".join(slots)
    mixed = sum(1 for e in elems if e) > 1
    return Einsum(f"{','.join(terms)}->{out}", tuple(operands), width,
                  None if mixed else trailing_dims(factors, elems), mixed)


def trailing_dims(accesses, elems: list[int]) -> tuple[tuple[str, int], ...]:
    """The array dims one element of the value spans, when a single access has any."""
    width = max(elems, default=0)
    widest = next((acc for acc, e in zip(accesses, elems) if e == width), None)
    if not width or widest is None:
        return ()
    return tuple((widest.array, len(widest.subs) + t) for t in range(width))


# --------------------------------------------------------------------------- the output


@dataclass(frozen=True)
class Value:
    """The vectorized value: dims are the nest's free variables (in target order), then
    `elem_rank` dims of one element."""

    code: str
    elem_rank: int | None
    fresh: bool = True  # a new tensor, not a view of an input
    dtype: str | None = None  # already computed in this dtype (operands cast first)
    trailing: tuple[tuple[str, int], ...] | None = None  # the array dim each element dim equals
    complete: bool = True  # every free variable is a real dim (not a broadcast 1)
    # element dims come from several operands: they broadcast against each other, which
    # the loop only checks when it runs (an empty nest never compares them)
    mixed: bool = False


def _dtype_of(init: Init, torch: str) -> str | None:
    value = init.value
    if not isinstance(value, cst.Call):
        return None
    kwargs = {a.keyword.value: a.value for a in value.args if a.keyword is not None}
    if set(kwargs) - {"dtype", "device"}:
        return None
    if "dtype" in kwargs:
        return code(kwargs["dtype"])
    if init.kind in ("like", "clone") or (init.call or "").startswith("new:"):
        return f"{init.ref}.dtype" if init.ref else None
    if init.call and init.call.endswith(".full"):
        # torch.full(size, 1) is int64, torch.full(size, 1.0) the default float dtype
        fill = [a.value for a in value.args if a.keyword is None][1:2]
        if fill and isinstance(fill[0], cst.Float):
            return f"{torch}.get_default_dtype()"
        return None
    return f"{torch}.get_default_dtype()"


def _device_kw(init: Init) -> str:
    value = init.value
    if isinstance(value, cst.Call):
        for a in value.args:
            if a.keyword is not None and a.keyword.value == "device":
                return f", device={code(a.value)}"
    return ""


@dataclass
class OutputPlan:
    """Where the value goes: `out = value` (allocation dropped) or `out[region] (+)= value`."""

    nest: Nest
    ctx: PatternContext
    ranks: Ranks
    region: list[str]  # per target position: ":" , ":n" or a constant index
    full: bool  # every position is ":" (the loop writes all of `out`'s leading dims)
    out_elem: int | None  # rank of one output element
    dtype: str  # the output's dtype as code (for casting operands first)
    replace_dtype: str | None  # dtype code usable once the allocation is gone; None: keep it

    @classmethod
    def for_nest(cls, nest: Nest, ctx: PatternContext, ranks: Ranks) -> OutputPlan:
        target = nest.target
        assert target is not None
        out, init = target.array, nest.setup
        sizes = alloc_sizes(init, int_names(nest)) if init is not None else None
        region = []
        for p, s in enumerate(target.subs):
            if s.kind == "const":
                region.append(s.code)
                continue
            level = nest.level(s.var)
            dims = {(out, p)}
            if sizes is not None and p < len(sizes):
                dims |= set(measures(sizes[p], ctx.info, nest.sizes))
                if code(sizes[p]) == level.extent:
                    region.append(":")
                    continue
            elif init is not None and init.kind in ("like", "clone") and init.ref:
                dims.add((init.ref, p))
            region.append(":" if dims & set(level.measures) else prefix(nest, s.var))
        full = all(r == ":" for r in region)
        rank = ranks.of(out)
        out_elem = rank - len(target.subs) if rank is not None else None
        # out = A before the loop: writing `out` writes `A`, which the loop reads as it goes
        if init is not None and init.kind not in ("alloc", "like", "clone", "param", "scalar-tensor"):
            raise NestDecline(f"`{out}` is bound to something that may share memory with an input")
        replace_dtype = None
        if (init is not None and init.kind in ("alloc", "like") and not init.interleaved and full
                and init.statement is not None):
            replace_dtype = _dtype_of(init, ctx.torch)
        return cls(nest, ctx, ranks, region, full, out_elem, replace_dtype or f"{out}.dtype", replace_dtype)

    @property
    def float_dtype(self) -> str | None:
        """The output's dtype when the source states a floating one (the default dtype, or
        `dtype=torch.float64`): summing in it is how the loop ends anyway."""
        dtype = self.replace_dtype
        if dtype is None:
            init = self.nest.setup
            dtype = _dtype_of(init, self.ctx.torch) if init is not None and init.kind == "alloc" else None
        if dtype is None:
            return None
        last = dtype.split(".")[-1]
        if dtype.endswith("get_default_dtype()") or last in {"float", "double", "float16", "float32", "float64",
                                                              "half", "bfloat16"}:
            return dtype
        return None

    @property
    def zero_init(self) -> bool:
        init = self.nest.setup
        return init is not None and (init.call or "") in _ZERO_ALLOCS

    def _trailing_equal(self, value: Value) -> bool:
        """The value's element dims are provably the output element's dims."""
        if value.elem_rank is None or value.elem_rank != self.out_elem:
            return False
        if value.elem_rank == 0:
            return True
        if value.trailing is None or len(value.trailing) != value.elem_rank:
            return False
        init = self.nest.setup
        start = len(self.nest.target.subs)
        if init.kind == "like":
            return all(dim == (init.ref, start + t) for t, dim in enumerate(value.trailing))
        sizes = alloc_sizes(init, int_names(self.nest)) or []
        return all(dim in measures(sizes[start + t], self.ctx.info, self.nest.sizes)
                   for t, dim in enumerate(value.trailing))

    def _pad(self, value: Value, assumptions: list[str]) -> str:
        nfree = len(self.nest.free)
        if value.elem_rank is None or self.out_elem is None:
            if value.elem_rank != 0 or self.out_elem is not None:
                assumptions.append(f"one element of `{self.nest.target.array}` has the shape of one computed value")
            return value.code
        if value.elem_rank > self.out_elem:
            raise NestDecline(f"the value has more dims than an element of `{self.nest.target.array}`")
        pad = self.out_elem - value.elem_rank
        return index(value.code, [":"] * nfree + ["None"] * pad) if pad else value.code

    def statement(self, value: Value, op: str, assumptions: list[str], keep: bool = False) -> tuple[str, bool]:
        """(the statement replacing the nest, whether the allocation goes); `keep`: write
        into the existing output even where it could be replaced."""
        out = self.nest.target.array
        replace = (not keep and self.replace_dtype is not None and value.complete and self._trailing_equal(value)
                   and (op == "=" or self.zero_init))
        if replace:
            dtype = self.replace_dtype
            device = _device_kw(self.nest.setup)
            if value.dtype == dtype and value.fresh and not device:
                return f"{out} = {value.code}", True
            extra = "" if value.fresh else ", copy=True"
            return f"{out} = {as_operand(value.code)}.to({dtype}{device}{extra})", True
        lhs = index(out, list(self.region))
        text = f"{lhs if lhs != out else out + '[:]'} {op} {self._pad(value, assumptions)}"
        if value.mixed:
            # x[b, i] * y[b, i] with x [B, I, 1] and y [B, I, 2]: the loop raises, unless it
            # never runs; so does the rewrite, then, only if it does not run either
            if self.nest.kind == "scalar":
                raise NestDecline("several factors have element dims, and the accumulator is stored even "
                                  "when the sum is empty")
            text = f"if {nonempty(self.nest, self.nest.vars)}:\n    {text}"
        return text, False


def rewrite(pattern: str, nest: Nest, ctx: PatternContext, statement: str, drop_init: bool,
            assumptions: list[str]) -> Rewrite:
    edits = [Edit(nest.loop.node, statement)]
    if drop_init:
        edits.insert(0, Edit(nest.setup.statement, None))
    first = statement.splitlines()[-1].strip()
    return Rewrite(pattern, nest.loop, tuple(edits), f"becomes `{first}`", SAFE,
                   tuple(dict.fromkeys(assumptions)), ctx.imports)


def nonempty(nest: Nest, vars_: tuple[str, ...]) -> str:
    return " and ".join(f"{nest.level(v).extent} > 0" for v in vars_)


def number(node: cst.BaseExpression | None) -> float | None:
    if isinstance(node, cst.Integer):
        return int(node.evaluated_value)
    if isinstance(node, cst.Float):
        return float(node.evaluated_value)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = number(node.expression)
        return None if inner is None else -inner
    return None


def scalar_result(pattern: str, nest: Nest, ctx: PatternContext, total: str, keeps_dtype: bool,
                  assumptions: list[str], in_loop_dtype: bool = False) -> Rewrite:
    """`acc = c` + `acc += v` over the whole nest -> `acc = c + total if <nonempty> else c`.

    The loop's `acc` is `c` (a Python number) when no iteration runs, else a tensor of
    dtype `result_type(c, v)`: an int `0` keeps `v`'s dtype (only when `total` does, as
    einsum and `@` do); a float `c` promotes integers to the default float, which
    `c + total` does too. `in_loop_dtype`: `total` is already computed in that dtype.
    """
    init = code(nest.scalar_init)
    value = number(nest.scalar_init)
    if value == 0 and (in_loop_dtype or isinstance(nest.scalar_init, cst.Integer)):
        if not keeps_dtype:
            raise NestDecline(f"`{nest.scalar} = 0` keeps narrow integer dtypes that the vectorized sum widens")
        expr = total
    else:
        expr = f"{init} + {as_operand(total)}"
    cond = nonempty(nest, nest.contracted)
    statement = f"{nest.scalar} = {expr} if {cond} else {init}"
    return rewrite(pattern, nest, ctx, statement, True, assumptions)


def factors(value: cst.BaseExpression) -> tuple[list[cst.BaseExpression], list[cst.BaseExpression]] | None:
    """`a * b * 2` -> ([a, b], [2]): subscript factors and numeric-literal factors; None otherwise."""
    if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Multiply) and not value.lpar:
        left, right = factors(value.left), factors(value.right)
        if left is None or right is None:
            return None
        return left[0] + right[0], left[1] + right[1]
    if value.lpar and isinstance(value, cst.BinaryOperation):
        return factors(value.with_changes(lpar=[], rpar=[]))
    if isinstance(value, cst.Subscript):
        return [value], []
    if number(value) is not None:
        return [], [value]
    return None


# --------------------------------------------------------------------------- lifting


class _Replace(cst.CSTTransformer):
    """Swap nodes (by identity) and placeholder names for expressions."""

    def __init__(self, nodes: dict[int, cst.BaseExpression], names: dict[str, cst.BaseExpression]) -> None:
        self.nodes = nodes
        self.names = names

    def on_leave(self, original_node, updated_node):
        if id(original_node) in self.nodes:
            return self.nodes[id(original_node)]
        if isinstance(updated_node, cst.Name) and updated_node.value in self.names:
            return self.names[updated_node.value]
        return updated_node


def lift_elementwise(nest: Nest, ctx: PatternContext, expr: cst.BaseExpression,
                     operands: dict[int, str], names: dict[str, str] | None = None, summed: bool = False) -> str:
    """Lift `expr` (one iteration's value) with the shared lifting engine.

    `operands` maps access nodes (by id) to their whole-array code; `names` maps names
    (the accumulator of `out[i] = g(acc)`) to theirs. Each becomes a batched tensor
    placeholder for `lift`, so operators, torch functions and methods batch by the same
    table as every other pattern; the placeholders are then swapped for the code.
    """
    names = dict(names or {})
    holders: dict[int, cst.BaseExpression] = {}
    codes: dict[str, cst.BaseExpression] = {}
    for k, (node_id, text) in enumerate(operands.items()):
        holder = f"__loopvec_{k}"
        holders[node_id] = cst.Name(holder)
        codes[holder] = cst.parse_expression(as_operand(text))
    for name, text in names.items():
        codes[name] = cst.parse_expression(as_operand(text))
    expr = expr.visit(_Replace(holders, {}))
    domain = Domain("range", None, (), (), "0", True)
    scope = LiftScope(ctx.info, ctx.torch, domain, set(nest.vars) | set(codes))
    for holder in codes:
        scope.temps[holder] = Lifted(cst.Name(holder), True, "tensor", fresh=False)
    try:
        lifted = lift(expr, scope)
    except LiftError as exc:
        raise NestDecline(str(exc)) from None
    if not lifted.batched:
        raise NestDecline("the value does not depend on the loop")
    # acc += int(a) * int(b): Python ints never overflow, an int64 sum wraps
    if summed and lifted.kind in ("int", "bool"):
        raise NestDecline("sums Python ints, which do not overflow where an int64 sum wraps")
    return code(lifted.node.visit(_Replace({}, codes)))


def finish_value(nest: Nest, ctx: PatternContext, total: str, keeps_dtype: bool, width: int, ranks: Ranks,
                 bounded: bool) -> str:
    """The stored value of `acc = c; for ...: acc += v; out[i] = g(acc)`.

    `acc` ends as `c + total`. When it is stored as it is, the store casts it; when `g`
    computes with it, its dtype must be the loop's `result_type(c, v)`: `c + total` has
    it for a float `c`; for an int `c`, only when `total` keeps `v`'s dtype (`.sum()`
    widens int32 to int64, `@` and a two-operand einsum do not).
    """
    init = nest.scalar_init
    acc = total if number(init) == 0 else f"{code(init)} + {as_operand(total)}"
    g = nest.finish
    if isinstance(g, cst.Name) and g.value == nest.scalar:
        return acc
    if nest.finish_reads:
        raise NestDecline(f"`{code(g)}` reads arrays besides `{nest.scalar}`")
    check_invariants(nest, ctx, g, width, ranks, bounded)
    if isinstance(init, cst.Float):
        acc = f"{code(init)} + {as_operand(total)}"
    elif not keeps_dtype:
        raise NestDecline(f"`{nest.scalar} = {code(init)}` feeds `{code(g)}` with a dtype the vectorized sum "
                          "does not keep")
    return lift_elementwise(nest, ctx, g, {}, {nest.scalar: acc})
