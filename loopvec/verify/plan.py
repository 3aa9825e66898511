"""The input plan: which kind of value each argument gets, and which sizes are shared.

Sources, strongest first: hints (def-line comment, then `Candidate.hints`), annotations,
defaults, usage facts of the reference function (`loopvec.analysis.usage`). A plan is
plain data (no torch, no hypothesis); `inputs.arguments(plan)` turns it into a strategy,
and `Plan.hint()` writes it back as the hint comment a user can correct.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from loopvec.analysis.usage import VALUE, Need, ParamUsage, UsageFacts

from .specs import (
    ANONYMOUS_VARIADIC,
    CallableSpec,
    ListSpec,
    ScalarSpec,
    Spec,
    TensorSpec,
    TupleSpec,
    parse_annotation,
)


@dataclass(frozen=True)
class Dim:
    """A size shared by every axis in its class, drawn from [low, high]."""

    name: str
    low: int
    high: int


@dataclass(frozen=True)
class Variadic:
    """jaxtyping's `*batch`: 0 to `max_rank` dims, each of a size in [1, high], drawn
    once per example and shared by every tensor that names the group."""

    name: str  # "*batch"; "...x0" for an anonymous `...` (one tensor's own)
    high: int
    max_rank: int = 2


@dataclass(frozen=True)
class TensorArg:
    dims: tuple[str, ...]  # dim names; a name starting "*" or "..." is a Variadic group
    dtypes: tuple[str, ...] | None = None  # None: the example's shared value dtype
    index_of: str | None = None  # values are valid positions along this dim
    output: bool = False  # the function writes into it


@dataclass(frozen=True)
class ScalarArg:
    kind: str  # int | float | bool
    upto: str | None = None  # an int in [0, size]: it bounds a range() over this dim
    below: str | None = None  # an int in [0, size): it indexes this dim
    count: bool = False  # an int that sizes something: never negative
    size: str | None = None  # exactly this dim's size: it sizes a tensor indexed by values


@dataclass(frozen=True)
class ModuleArg:
    """A parameter the function calls: it gets a row-independent stand-in model."""


@dataclass(frozen=True)
class ListArg:
    length: str
    item: Arg
    tuple_: bool = False


@dataclass(frozen=True)
class TupleArg:
    items: tuple[Arg, ...]


@dataclass(frozen=True)
class DefaultArg:
    """Not passed: the function's own default is used."""


@dataclass(frozen=True)
class EitherArg:
    options: tuple[Arg, ...]


Arg = TensorArg | ScalarArg | ListArg | TupleArg | DefaultArg | EitherArg | ModuleArg


@dataclass(frozen=True)
class Param:
    name: str
    annotation: str | None = None  # source text
    has_default: bool = False
    default_none: bool = False


@dataclass(frozen=True)
class Plan:
    args: tuple[tuple[str, Arg], ...]
    dims: tuple[Dim, ...]
    value_dtypes: tuple[str, ...] = ("float32", "float64")
    sources: tuple[tuple[str, str], ...] = field(default=())  # name -> hint|annotation|default|usage
    variadics: tuple[Variadic, ...] = ()

    @property
    def shared_dtype_args(self) -> tuple[str, ...]:
        """Arguments holding tensors of the example's value dtype (none fixed by a hint,
        an annotation or an index role): the ones a mixed-dtype example varies."""
        return tuple(name for name, arg in self.args if any(t.dtypes is None for t in tensor_args(arg)))

    @property
    def stand_ins(self) -> tuple[str, ...]:
        """Arguments that get a stand-in model rather than the real one."""
        return tuple(name for name, arg in self.args if _is_module(arg))

    def hint(self) -> str:
        """The `# loopvec: shapes ...` comment that states this plan."""
        parts = [f"{name}={_render(arg)}" for name, arg in self.args if _render(arg)]
        return "# loopvec: shapes " + " ".join(parts)


# Most examples should be fast: the more independent sizes, the smaller each one.
_CAPS = {0: 8, 1: 8, 2: 6, 3: 4, 4: 3}
_NAMES = "n m k p q r s t u v w".split()


def build_plan(params: list[Param], facts: UsageFacts, hints: dict[str, Spec]) -> Plan:
    b = _Builder(params, facts, hints)
    return b.build()


class _Builder:
    def __init__(self, params: list[Param], facts: UsageFacts, hints: dict[str, Spec]) -> None:
        self.params = params
        self.facts = facts
        self.hints = hints
        self.parent: dict[tuple, tuple] = {}
        self.fixed: dict[tuple, int] = {}
        self.low: dict[tuple, int] = defaultdict(int)
        for group in facts.equal:
            for ref in group[1:]:
                self.union(("ref", *group[0]), ("ref", *ref))

    # union-find over ("ref", param, axis) and ("sym", name)
    def find(self, x: tuple) -> tuple:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            x = self.parent[x] = self.parent[self.parent[x]]
        return x

    def union(self, a: tuple, b: tuple) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # Keep a named root, so a class shows its hint/jaxtyping name.
            if ra[0] == "sym" and rb[0] != "sym":
                ra, rb = rb, ra
            self.parent[ra] = rb

    def build(self) -> Plan:
        decided: dict[str, tuple[Arg, str]] = {}
        for p in self.params:
            decided[p.name] = self.decide(p)
        self.resolve_operands(decided)
        self.apply_needs(decided)
        for ref, size in self.facts.min_sizes:
            self.at_least(("ref", *ref), size)
        args = tuple((name, arg) for name, (arg, _) in decided.items())
        dims = self.dims(args)
        names = {node: dims[self.find(node)].name for node in list(self.parent) if self.find(node) in dims}
        args = tuple((name, _rename(arg, names)) for name, arg in args)
        value_dtypes = self.value_dtypes(args)
        cap = max((d.high for d in dims.values() if d.low != d.high), default=_CAPS[1])
        variadics = tuple(
            Variadic(name, high=min(cap, 3)) for name in dict.fromkeys(_variadic_names(args))
        )
        return Plan(
            args=args,
            dims=tuple(dict.fromkeys(dims.values())),
            value_dtypes=value_dtypes,
            sources=tuple((name, src) for name, (_, src) in decided.items()),
            variadics=variadics,
        )

    # ------------------------------------------------------------------ arguments

    def decide(self, p: Param) -> tuple[Arg, str]:
        usage = self.facts.of(p.name)
        if p.name in self.hints:
            return self.from_spec(p.name, self.hints[p.name], usage), "hint"
        spec = parse_annotation(p.annotation) if p.annotation else None
        if p.has_default:
            # A default is what callers normally pass; a None default that the body
            # treats as a tensor also gets tensors, so both branches run.
            wants_tensor = isinstance(spec, TensorSpec) or (spec is None and usage.kind == "tensor")
            if p.default_none and wants_tensor:
                return EitherArg((DefaultArg(), self.from_spec(p.name, spec, usage))), "default"
            return DefaultArg(), "default"
        if spec is not None:
            return self.from_spec(p.name, spec, usage), "annotation"
        return self.from_spec(p.name, None, usage), "usage"

    def from_spec(self, name: str, spec: Spec | None, usage: ParamUsage) -> Arg:
        if isinstance(spec, CallableSpec):
            return ModuleArg()
        if isinstance(spec, TensorSpec):
            return self.tensor(name, usage, spec)
        if isinstance(spec, ScalarSpec):
            return self.scalar(spec.kind, usage)
        if isinstance(spec, ListSpec):
            length = self.node(name, 0)
            item_spec = spec.item
            if item_spec is None:
                item_spec = TensorSpec() if (usage.rank or 1) > 1 else None
            return ListArg(length, self.item(name, item_spec, usage, 1), spec.tuple_)
        if isinstance(spec, TupleSpec):
            return TupleArg(tuple(self.item(name, s, usage, 1) for s in spec.items))
        kind = usage.kind
        if kind == "callable":
            return ModuleArg()
        # `a.bmm(b)`: b meets a as an argument, yet bmm takes only a tensor there
        needs_tensor = any(n.rule != "same_shape" for n in self.facts.needs_of(name))
        if kind in ("int", "float", "bool") and not needs_tensor:
            return self.scalar(kind, usage)
        return self.tensor(name, usage, TensorSpec())

    def item(self, name: str, spec: Spec | None, usage: ParamUsage, depth: int) -> Arg:
        """An element of a list/tuple parameter; its axes start at `depth`."""
        if isinstance(spec, CallableSpec):  # `self.heads = nn.ModuleList(...)`: models
            return ModuleArg()
        if isinstance(spec, TensorSpec):
            rank = len(spec.dims) if spec.dims is not None else max((usage.rank or 1) - depth, 1)
            return TensorArg(tuple(self.node(name, depth + k) for k in range(rank)), spec.dtypes)
        if isinstance(spec, ScalarSpec):
            return ScalarArg(spec.kind)
        if isinstance(spec, TupleSpec):
            return TupleArg(tuple(self.item(name, s, usage, depth + 1) for s in spec.items))
        if isinstance(spec, ListSpec):
            return ListArg(self.node(name, depth), self.item(name, spec.item, usage, depth + 1), spec.tuple_)
        if usage.index_into:
            return ScalarArg("int", below=self.target(usage))
        return ScalarArg("int" if usage.int_ops else "float")

    def tensor(self, name: str, usage: ParamUsage, spec: TensorSpec) -> TensorArg:
        if spec.dims is not None:
            nodes = []
            star = next((k for k, d in enumerate(spec.dims) if _is_variadic(d)), None)
            for k, d in enumerate(spec.dims):
                if k == star:
                    group = f"{ANONYMOUS_VARIADIC}{name}{k}" if d == ANONYMOUS_VARIADIC else d
                    nodes.append(("star", group))
                    continue
                # Axes after a variadic group have no fixed position: usage facts, which
                # count axes from the front, do not apply to them.
                node = self.node(name, k) if star is None or k < star else ("tail", name, len(spec.dims) - k)
                if isinstance(d, int):
                    self.fixed[node] = d
                elif d != "_" and not _is_variadic(d):
                    self.union(node, ("sym", d))
                nodes.append(node)
        else:
            nodes = [self.node(name, k) for k in range(self.rank(usage))]
        dtypes = spec.dtypes
        index_of = None
        if usage.index_into:
            index_of = self.target(usage)
            dtypes = dtypes or ("int64",)
        elif dtypes is None and usage.elem_truth and not usage.arith and not usage.compared:
            dtypes = ("bool",)  # only ever a truth value: a mask
        rules = {n.rule: n for n in self.facts.needs_of(name)}
        if "below" in rules and index_of is None:
            # counts = torch.zeros(10); counts[l] += 1: l holds positions below 10
            index_of = ("below", rules["below"].value)
            self.fixed[index_of] = rules["below"].value
            self.find(index_of)
            dtypes = dtypes if dtypes and spec.dtypes else ("int64",)
        elif "mask" in rules and dtypes is None and not usage.index_into:
            dtypes = ("bool",)  # torch.where's condition, masked_fill's mask
        return TensorArg(tuple(nodes), dtypes, index_of, usage.written)

    def rank(self, usage: ParamUsage) -> int:
        """The rank indexing needs, raised to what the APIs it meets need (CONSTRAINTS):
        `torch.fft.fft2(images[i])` makes images 3-D; `torch.mm(a[i], b[i])` exactly."""
        rank = usage.rank or 1
        if usage.exact_rank:
            return rank  # `H, W = x.shape` says it outright
        needs = self.facts.needs_of(usage.name)
        least = [n.depth + n.value for n in needs if n.rule == "min_rank"]
        least += [n.depth + 2 for n in needs if n.rule == "square"]
        rank = max(rank, *least) if least else rank
        exact = [n.depth + n.value for n in needs if n.rule == "rank" and n.depth + n.value >= rank]
        return min(exact) if exact else rank

    def apply_needs(self, decided: dict[str, tuple[Arg, str]]) -> None:
        """Sizes the APIs tie together: a square matrix, matmul's inner sizes, conv's
        channels, a mask and what it masks, `.item()`'s one element."""
        for n in self.facts.needs:
            view = self.view_dims(decided, n.param, n.depth)
            if view is None:
                continue
            if n.rule == "square" and len(view) >= 2:
                self.union(view[-1], view[-2])
            elif n.rule == "one_element":
                for node in view:
                    self.fixed.setdefault(node, 1)
            elif n.other is not None:
                other = self.view_dims(decided, n.other[0], n.other[1])
                if not view or not other:
                    continue
                for a, b in _tied(n, view, other):
                    self.union(a, b)

    def view_dims(self, decided: dict[str, tuple[Arg, str]], name: str, depth: int) -> list[tuple] | None:
        """The axes of a tensor argument left after `depth` are indexed away, or None."""
        arg = decided.get(name, (None, ""))[0]
        if not isinstance(arg, TensorArg) or any(d[0] != "ref" for d in arg.dims) or depth > len(arg.dims):
            return None
        return list(arg.dims[depth:])

    def scalar(self, kind: str, usage: ParamUsage) -> ScalarArg:
        if kind != "int":
            return ScalarArg(kind)
        bounds = dict(self.facts.bounds).get(usage.name, ())
        if bounds:
            return ScalarArg("int", upto=self.node(*bounds[0]))
        if usage.name in self.facts.sizes:
            # torch.zeros(C) indexed by labels' values: C is the size those values fit.
            return ScalarArg("int", count=True, size=self.node(usage.name, VALUE))
        if usage.int_index:
            below = self.node(*usage.int_index[0])
            self.at_least(below, 1)
            return ScalarArg("int", below=below)
        return ScalarArg("int", count=usage.size_like)

    def target(self, usage: ParamUsage) -> tuple | None:
        """The dim whose positions an index parameter holds; it must not be empty.

        Values that index several dims (`out[idx[i]] = src[idx[i]]`) must fit all of
        them: those dims are drawn equal."""
        nodes = [self.node(*ref) for ref in usage.index_into if ref is not None]
        if not nodes:
            return None
        for node in nodes[1:]:
            self.union(nodes[0], node)
        self.at_least(nodes[0], 1)
        return nodes[0]

    def node(self, name: str, axis: int) -> tuple:
        """The union-find node of an axis; classes are read only once all are joined."""
        node = ("ref", name, axis)
        self.find(node)
        return node

    def at_least(self, node: tuple, size: int) -> None:
        self.low[node] = max(self.low[node], size)

    def resolve_operands(self, decided: dict[str, tuple[Arg, str]]) -> None:
        """`image[b, c] * mask`: mask is a scalar if image[b, c] is, else that block."""
        for p, q, removed in self.facts.operands:
            arg, src = decided.get(p, (None, ""))
            other = decided.get(q, (None, ""))[0]
            usage = self.facts.of(p)
            if src != "usage" or not isinstance(arg, ScalarArg) or usage.range_bound or usage.int_index:
                continue  # hinted, annotated or a bound: not a guess to revise
            if not isinstance(other, TensorArg):
                continue
            rest = [k for k in range(len(other.dims)) if k not in removed]
            if not rest:
                continue
            for k, axis in enumerate(rest):
                self.union(self.node(p, k), other.dims[axis])
            decided[p] = (TensorArg(tuple(self.node(p, k) for k in range(len(rest)))), src)

    # ------------------------------------------------------------------ sizes

    def dims(self, args: tuple[tuple[str, Arg], ...]) -> dict[tuple, Dim]:
        roots: list[tuple] = []
        for _, arg in args:
            for node in _nodes(arg):
                root = self.find(node)
                if root not in roots:
                    roots.append(root)
        fixed = {self.find(node): size for node, size in self.fixed.items()}
        low: dict[tuple, int] = defaultdict(int)
        for node, size in self.low.items():
            low[self.find(node)] = max(low[self.find(node)], size)
        taken = {p.name for p in self.params} | {r[1] for r in roots if r[0] == "sym"}
        free = (n for n in [*_NAMES, *(f"n{k}" for k in range(1, 100))] if n not in taken)
        cap = _CAPS.get(sum(1 for r in roots if r not in fixed), 2)
        out = {}
        for root in roots:
            if root in fixed:
                # An unnamed fixed size is named by its value: "3" in x=[n,3].
                name = root[1] if root[0] == "sym" else str(fixed[root])
                out[root] = Dim(name, fixed[root], fixed[root])
            else:
                name = root[1] if root[0] == "sym" else next(free)
                out[root] = Dim(name, low[root], max(low[root], cap))
        return out

    def value_dtypes(self, args: tuple[tuple[str, Arg], ...]) -> tuple[str, ...]:
        """float32 first (examples shrink towards it); integer types where the code does
        integer arithmetic or comparisons on shared-dtype tensors; bool for bit logic."""
        shared = [name for name, arg in args if any(t.dtypes is None for t in tensor_args(arg))]
        usages = [self.facts.of(n) for n in shared]
        dtypes = ["float32", "float64"]
        if any(u.int_ops or u.compared for u in usages):
            dtypes += ["int64", "int32", "uint8"]
        if any(u.bitwise or u.elem_truth for u in usages):
            dtypes.append("bool")
        return tuple(dtypes)


def _tied(n: Need, view: list[tuple], other: list[tuple]) -> list[tuple[tuple, tuple]]:
    """Pairs of axes a CONSTRAINTS rule makes one size (`n` on `view`, its partner `other`)."""
    if n.rule == "contract":
        # a @ b: a's last axis meets b's second to last (a vector's only); `.T` swaps them
        a = view[-2] if n.transposed and len(view) >= 2 else view[-1]
        b = other[-1] if len(other) == 1 or n.other[2] else other[-2]
        return [(a, b)]
    if n.rule == "channels" and len(view) == len(other) == n.value + 2:
        # conv: input [b, c, *window] and weight [out, c, *kernel]; a window the kernel's size
        return [(view[1], other[1]), *zip(view[2:], other[2:])]
    if n.rule == "same_shape":
        return list(zip(reversed(view), reversed(other)))  # broadcasting aligns from the right
    return []


def _is_variadic(d: str | int) -> bool:
    return isinstance(d, str) and (d.startswith("*") or d.startswith(ANONYMOUS_VARIADIC))


def _is_module(arg: Arg) -> bool:
    if isinstance(arg, EitherArg):
        return any(_is_module(a) for a in arg.options)
    if isinstance(arg, ListArg):  # a list of models
        return _is_module(arg.item)
    return isinstance(arg, ModuleArg)


def _variadic_names(args: tuple[tuple[str, Arg], ...]):
    for _, arg in args:
        for t in tensor_args(arg):
            yield from (d for d in t.dims if _is_variadic(d))


def _nodes(arg: Arg):
    if isinstance(arg, TensorArg):
        yield from (d for d in arg.dims if d[0] != "star")
        if arg.index_of is not None:
            yield arg.index_of
    elif isinstance(arg, ScalarArg):
        yield from (d for d in (arg.upto, arg.below, arg.size) if d is not None)
    elif isinstance(arg, ListArg):
        yield arg.length
        yield from _nodes(arg.item)
    elif isinstance(arg, (TupleArg, EitherArg)):
        for a in (arg.items if isinstance(arg, TupleArg) else arg.options):
            yield from _nodes(a)


def tensor_args(arg: Arg):
    """Every TensorArg inside `arg` (list items, tuple items, options)."""
    if isinstance(arg, TensorArg):
        yield arg
    elif isinstance(arg, ListArg):
        yield from tensor_args(arg.item)
    elif isinstance(arg, (TupleArg, EitherArg)):
        for a in (arg.items if isinstance(arg, TupleArg) else arg.options):
            yield from tensor_args(a)


def _rename(arg: Arg, names: dict[tuple, str]) -> Arg:
    """Swap union-find nodes for the dim names they were given."""

    def n(node):
        return None if node is None else names[node]

    def dim(node):
        return node[1] if node[0] == "star" else names[node]

    if isinstance(arg, TensorArg):
        return TensorArg(tuple(dim(d) for d in arg.dims), arg.dtypes, n(arg.index_of), arg.output)
    if isinstance(arg, ScalarArg):
        return ScalarArg(arg.kind, n(arg.upto), n(arg.below), arg.count, n(arg.size))
    if isinstance(arg, ListArg):
        return ListArg(names[arg.length], _rename(arg.item, names), arg.tuple_)
    if isinstance(arg, TupleArg):
        return TupleArg(tuple(_rename(a, names) for a in arg.items))
    if isinstance(arg, EitherArg):
        return EitherArg(tuple(_rename(a, names) for a in arg.options))
    return arg


def _render(arg: Arg) -> str:
    """Hint text for one argument."""
    if isinstance(arg, TensorArg):
        dtype = f":{arg.dtypes[0]}" if arg.dtypes and len(arg.dtypes) == 1 else ""
        dims = (ANONYMOUS_VARIADIC if d.startswith(ANONYMOUS_VARIADIC) else d for d in arg.dims)
        return "[" + ",".join(dims) + "]" + dtype
    if isinstance(arg, ScalarArg):
        return arg.kind
    if isinstance(arg, ModuleArg):
        return "callable"
    if isinstance(arg, ListArg):
        inner = "Tensor" if isinstance(arg.item, TensorArg) else _render(arg.item)
        return f"tuple[{inner}, ...]" if arg.tuple_ else f"list[{inner}]"
    if isinstance(arg, TupleArg):
        return "tuple[" + ", ".join(_render(a) for a in arg.items) + "]"
    if isinstance(arg, EitherArg):
        return next((_render(a) for a in arg.options if not isinstance(a, DefaultArg)), "")
    return ""
