"""Lifting per-element conditions: `if`/`elif`/`else`, `a if c else b`, `and`/`or`/`not`.

Shared by `where` (branches merged with `torch.where`, or masked stores) and
`boolean_mask` (filters: values computed on the kept elements only). `CondLifter` lifts
conditions to bool tensors (truthiness is `.bool()`, `not` is `~`, short-circuit `and`/`or`
guard their right side), branches guarded where they are not taken (`y // d` under
`d != 0` divides by a stand-in elsewhere), and masked values (`x` -> `data[keep]`). Each
value carries a dtype signature that decides whether two branches may share one tensor:
`x * 2` and `x * 3` always agree, `x * 2` and `x / 2` do not.

A mask used more than once is computed once under a fresh name (`keep = data > 0`);
`MASK` stands for it in code until `name_mask` knows whether it gets one.
"""

from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass

import libcst as cst

from .analysis.facts import Signature
from .analysis.loops import Loop, flatten_subscript, names_in
from .analysis.module import VariableVisitor, code, fresh_name, number_value, used_names, walk
from .dtypes import BOOL_FUNCTIONS, CAST_METHODS, FLOATING_DTYPES, FLOATING_FUNCTIONS, KEEP_FUNCTIONS, \
    PROMOTES_LIKE, TORCH_DTYPES
from .lift import LiftError, LiftScope, Lifted, call, lift, method, paren
from .rewrite import PatternContext
from .analysis import traverse


def mask_name(loop: Loop, taken: set[str]) -> str:
    """A name the function does not use, for a mask computed once and used several times."""
    used = used_names(loop.function) if loop.function is not None else set()
    name = fresh_name(("keep", "mask", "selected"), used | taken)
    taken.add(name)
    return name


def _count_mask(node: cst.CSTNode) -> int:
    return sum(1 for n in walk(node) if isinstance(n, cst.Name) and n.value == MASK)


class _Substitute(cst.CSTTransformer):
    def __init__(self, new: cst.BaseExpression) -> None:
        self.new = new

    def leave_Name(self, original_node, updated_node):
        return self.new if original_node.value == MASK else updated_node

    def leave_Attribute(self, original_node, updated_node):
        # `keep.any()` with an inlined mask needs `(data > 0).any()`
        if isinstance(original_node.value, cst.Name) and original_node.value.value == MASK:
            return updated_node.with_changes(value=paren(self.new))
        return updated_node


def _cheap(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.BitInvert):
        node = node.expression
    return isinstance(node, cst.Name)


def name_mask(loop: Loop, nodes: list, pred: Lifted, taken: set[str], may_name: bool = True, extra_uses: int = 0):
    """Put the mask into `nodes` (code holding MASK placeholders): inline when it is used
    once or is a name already, else computed once as `keep = <mask>` before them.
    Returns the statements to put first and the nodes."""
    uses = sum(_count_mask(n) for n in nodes) + extra_uses
    if uses <= 1 or _cheap(pred.node) or not may_name:
        return [], [n.visit(_Substitute(pred.node)) for n in nodes]
    name = mask_name(loop, taken)
    return [f"{name} = {pred.code}"], [n.visit(_Substitute(cst.Name(name))) for n in nodes]


# --------------------------------------------------------------------------- dtype signatures
# A signature says what dtype a per-element value has, as a function of the inputs'
# dtypes. Two branches may be merged into one `torch.where` only when their signatures
# are equal: `x * 2` and `x * 3` always agree; `x * 2` and `x / 2` do not (int64 vs
# float32 for an integer `x`), and `torch.tensor(list)` would take its dtype from the
# branches that actually ran.
#   ("py", "int"|"float"|"bool"|"complex")    a Python number
#   ("dt", dtype)                               a fixed dtype ("float32", "bool", "default")
#   ("sym", mode, frozenset(arrays))            the arrays' promoted dtype, then mode:
#        "id" as is, "int" bool -> int64, "float" non-floating -> the default float dtype
#   ("op", key)                                 anything else; equal only if the same structure
Sig = tuple

PY_INT, PY_FLOAT, PY_BOOL = ("py", "int"), ("py", "float"), ("py", "bool")
DT_BOOL = ("dt", "bool")
_MODES = {"id": 0, "int": 1, "float": 2}
_FLOATING = FLOATING_DTYPES | {"default"}
_INTS = ["uint8", "int8", "int16", "int32", "int64"]
_FLOATS = ["float16", "bfloat16", "float32", "float64"]
_ARITH = (cst.Add, cst.Subtract, cst.Multiply, cst.FloorDivide, cst.Modulo, cst.Power, cst.BitAnd,
          cst.BitOr, cst.BitXor, cst.LeftShift, cst.RightShift)

def _opaque(*parts) -> Sig:
    return ("op", repr(parts))


def _floatify(sig: Sig) -> Sig:
    kind = sig[0]
    if kind == "sym":
        return ("sym", "float", sig[2])
    if kind == "dt":
        return sig if sig[1] in _FLOATING else ("dt", "default")
    if kind == "py":
        return PY_FLOAT if sig[1] != "complex" else sig
    return _opaque("floatify", sig)


def _promote_dt(a: str, b: str) -> str | None:
    """torch.promote_types for the dtypes a signature can name; None when unsure."""
    if a == b:
        return a
    if a == "bool":
        return b
    if b == "bool":
        return a
    if a in _INTS and b in _INTS:
        if {a, b} == {"uint8", "int8"}:
            return "int16"
        if "uint8" in (a, b):
            other = b if a == "uint8" else a
            return other if other != "int8" else "int16"
        return max(a, b, key=_INTS.index)
    if a in _INTS and b in _FLOATS:
        return b
    if b in _INTS and a in _FLOATS:
        return a
    if a in _FLOATS and b in _FLOATS:
        if {a, b} == {"float16", "bfloat16"}:
            return "float32"
        return max(a, b, key=_FLOATS.index)
    return None


def binop_sig(op: cst.BaseBinaryOp, a: Sig | None, b: Sig | None) -> Sig | None:
    """The signature of `a op b`, by torch's promotion rules (Python numbers are weak)."""
    if a is None or b is None:
        return None
    divide = isinstance(op, cst.Divide)
    if not divide and not isinstance(op, _ARITH):
        return None
    ka, kb = a[0], b[0]
    if ka == "py" and kb == "py":
        if divide:
            return PY_FLOAT if "complex" not in (a[1], b[1]) else ("py", "complex")
        for k in ("complex", "float", "int"):
            if k in (a[1], b[1]):
                return ("py", k)
        return PY_BOOL if isinstance(op, (cst.BitAnd, cst.BitOr, cst.BitXor)) else PY_INT
    if kb == "py" and ka != "py":
        a, b, ka, kb = b, a, kb, ka
    if ka == "py":  # a Python number with a tensor b: the tensor's dtype wins within its category
        if a[1] == "complex":
            return _opaque(type(op).__name__, a, b)
        if divide or a[1] == "float":
            return _floatify(b)
        if a[1] == "bool":
            return b
        if kb == "sym":
            return ("sym", max(b[1], "int", key=_MODES.get), b[2])
        if kb == "dt":
            return ("dt", "int64") if b[1] == "bool" else b
        return _opaque(type(op).__name__, a, b)
    if ka == "sym" and kb == "sym":
        if a[2] == b[2]:
            mode = "float" if divide else max(a[1], b[1], key=_MODES.get)
            return ("sym", mode, a[2])
        if a[1] == b[1] == "id":
            return ("sym", "float" if divide else "id", a[2] | b[2])
    if ka == "dt" and kb == "dt":
        promoted = _promote_dt(a[1], b[1])
        if promoted is not None:
            return _floatify(("dt", promoted)) if divide else ("dt", promoted)
    return _opaque(type(op).__name__, a, b)


def _concrete(sig: Sig, dtypes: dict[str, str]) -> str | None:
    """The dtype `sig` names when each array has the dtype `dtypes` gives it."""
    if sig[0] == "dt":
        return sig[1]
    if sig[0] != "sym":
        return None
    out = None
    for leaf in sorted(sig[2]):
        out = dtypes[leaf] if out is None else _promote_dt(out, dtypes[leaf])
        if out is None:
            return None
    if sig[1] == "int" and out == "bool":
        return "int64"
    if sig[1] == "float" and out not in _FLOATING:
        return "default"
    return out


def literal(node: cst.BaseExpression):
    """The Python value of a numeric or bool literal (`-1` included), else NOT_LITERAL."""
    value = number_value(node)
    if value is not None:
        return value
    if isinstance(node, cst.Name) and node.value in ("True", "False"):
        return node.value == "True"
    return NOT_LITERAL


NOT_LITERAL = object()
_PLACEHOLDERS = itertools.count()
MASK = "__lvmask"  # stands for the mask until it is known whether it gets a name of its own


def _portable_literal(value) -> bool:
    return isinstance(value, (bool, int)) or _exact_in_half(value)


def _exact_in_half(value: float) -> bool:
    """`value` is exactly representable in float16 and bfloat16."""
    try:
        half = struct.unpack("<e", struct.pack("<e", value))[0]
    except (OverflowError, struct.error):
        return False
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    as_float32 = struct.unpack("<f", struct.pack("<f", value))[0]
    return half == value and as_float32 == value and bits & 0xFFFF == 0


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Val:
    """A lifted per-element value with its dtype signature and source text."""

    lifted: Lifted
    sig: Sig | None
    src: str
    literal: object = NOT_LITERAL
    info: tuple = (frozenset(), False)  # (arrays read per element, reads a sub-part of an element)


def _operand(node: cst.BaseExpression) -> cst.BaseExpression:
    # `~a & b` needs no parentheses: `~` binds tighter than `&` and `|`
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.BitInvert):
        return node
    return paren(node)


def _op(left: cst.BaseExpression, op: type, right: cst.BaseExpression) -> cst.BinaryOperation:
    return cst.BinaryOperation(left=_operand(left), operator=op(
        whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")),
        right=_operand(right))


def negate(pred: Lifted) -> Lifted:
    # `~(x > t)`, not `x <= t`: for NaN both comparisons are False
    return Lifted(cst.UnaryOperation(cst.BitInvert(), paren(pred.node)), True, "bool")


def conjoin(preds) -> Lifted | None:
    out = None
    for p in preds:
        out = p if out is None else Lifted(_op(out.node, cst.BitAnd, p.node), True, "bool")
    return out


# functions undefined (an exception, or an infinite derivative) somewhere, and a point
# where they are fine: a branch not taken computes on that point instead
_PARTIAL = {"log": 1, "log2": 1, "log10": 1, "log1p": 0, "sqrt": 1, "rsqrt": 1, "reciprocal": 1,
            "acos": 0, "arccos": 0, "asin": 0, "arcsin": 0, "atanh": 0, "arctanh": 0, "acosh": 2,
            "arccosh": 2, "lgamma": 1, "digamma": 1, "erfinv": 0, "logit": 0.5}
# functions whose second argument is a divisor; the integer ones raise on zero
_DIVISORS = {"div": False, "divide": False, "true_divide": False, "floor_divide": True,
             "remainder": True, "fmod": True, "xlogy": False}


class CondLifter:
    """Lifts conditions and branch values of one loop.

    `mask`, when given, is the whole-array mask the values are computed under (boolean
    masking): every per-element leaf `x` becomes `data[mask]`, so values are computed on
    the selected elements only.
    """

    def __init__(self, ctx: PatternContext, loop: Loop, scope: LiftScope, mask: cst.BaseExpression | None = None):
        self.info = ctx.info
        self.torch = ctx.torch
        self.loop = loop
        self.dom = loop.domain
        self.scope = scope
        self.mask = mask
        self.sigs: dict[str, Sig | None] = {}
        self.full_temps: set[str] = set()  # temps whose lifted value is a whole-array (unmasked) expression
        self.unmerged: dict[str, str] = {}  # temps whose branches could not be merged, and why
        sig = Signature(ctx.info, loop.function)
        self.declared = {name: sig.dtypes(name) for name in sig.params if sig.dtypes(name)}
        self.ranks = {name: sig.exact_rank(name) for name in sig.params
                      if sig.tensor(name) is not None and sig.exact_rank(name) is not None}
        self.sources: dict[str, str] = {}  # placeholder -> the source it stands for, for messages
        self.leaves: dict[str, tuple] = {}  # temp -> leaf info of its value
        self.pred_info: dict[int, tuple] = {}  # id(predicate) -> leaf info of its condition
        self.depth = 1  # loop levels one element takes off an array (2 for a walk over 2-D entries)

    # ---------------------------------------------------------------- helpers
    def explain(self, exc: LiftError) -> str:
        """A read of a temporary that branches could not merge: say why they could not."""
        message = str(exc)
        for name, why in self.unmerged.items():
            if f"`{name}` is bound in the loop" in message:
                return f"`{name}`: {why}"
        return message

    def batched(self, node: cst.CSTNode) -> bool:
        return bool(names_in(node) & self.scope.loop_names)

    def has_condition(self, node: cst.CSTNode) -> bool:
        found = []

        class _V(cst.CSTVisitor):
            def visit_IfExp(_self, n) -> None:
                if self.batched(n.test):
                    found.append(n)

        traverse.visit(node, _V())
        return bool(found)

    def unplaceholder(self, message: str) -> str:
        """A lifting error in the user's words: placeholders back to the source they replaced."""
        for _ in range(10):
            new = re.sub(r"__lv\d+", lambda m: self.sources.get(m.group(0), m.group(0)), message)
            if new == message:
                break
            message = new
        return message

    def snapshot(self) -> tuple:
        return dict(self.scope.temps), dict(self.sigs), set(self.full_temps)

    def restore(self, saved: tuple) -> None:
        for mine, theirs in zip((self.scope.temps, self.sigs, self.full_temps), saved):
            mine.clear()
            mine.update(theirs)

    def placeholder(self, lifted: Lifted, src: str = "...") -> cst.Name:
        name = f"__lv{next(_PLACEHOLDERS)}"
        self.sources[name] = src
        self.scope.temps[name] = lifted
        self.scope.loop_names.add(name)
        return cst.Name(name)

    def fn(self, name: str) -> cst.BaseExpression:
        return self.scope.torch_fn(name)

    def where(self, test: Lifted, a: Lifted, b: Lifted | cst.BaseExpression) -> cst.Call:
        other = b.node if isinstance(b, Lifted) else b
        return call(self.fn("where"), test.node, a.node, other)

    # ---------------------------------------------------------------- values
    def value(self, node: cst.BaseExpression, path: tuple = ()) -> Val:
        prepared = _Prepare(self, path).prepare(node)
        try:
            lifted = lift(prepared, self.scope)
        except LiftError as exc:
            raise LiftError(self.unplaceholder(str(exc))) from None
        return Val(lifted, self.sig(node), code(node), literal(node), self.leaf_info(node))

    def top_value(self, node: cst.BaseExpression, path: tuple, context: str) -> Val:
        """The value appended or stored: a top-level `a if c else b` merges under `context` rules."""
        if isinstance(node, cst.IfExp) and self.batched(node.test):
            test = self.predicate(node.test, path)
            a = self.top_value(node.body, (*path, test), context)
            b = self.top_value(node.orelse, (*path, self.neg(test)), context)
            return self.merge(test, a, b, context)
        return self.value(node, path)

    # ---------------------------------------------------------------- ranks
    def leaf_info(self, node: cst.CSTNode) -> tuple:
        """The arrays a per-element expression reads, and whether it reads part of an element
        (`row[0]`, `x[i, 0]`): what decides whether its per-element rank may differ from another's."""
        leaves: set[str] = set()
        sub = False
        lifter = self

        class _V(VariableVisitor):
            def visit_Name(self, n: cst.Name) -> None:
                nonlocal sub
                name = n.value
                if name in lifter.leaves:
                    leaves.update(lifter.leaves[name][0])
                    sub = sub or lifter.leaves[name][1]
                elif name in lifter.scope.elements and name not in lifter.scope.temps:
                    leaves.add(code(lifter.scope.elements[name].node))
                elif name == lifter.dom.index:
                    leaves.add(f"`{name}`")

            def visit_Subscript(self, n: cst.Subscript) -> bool:
                nonlocal sub
                if not lifter.batched(n):
                    return False
                flat = flatten_subscript(n)
                if flat is None:
                    return True
                base, parts = flat
                head = base.split(".")[0]
                first = parts[0]
                if head in lifter.scope.elements or head in lifter.leaves:
                    traverse.visit(cst.Name(head), self)
                    sub = True
                elif (isinstance(first, cst.Index) and isinstance(first.value, cst.Name)
                      and first.value.value == lifter.dom.index):
                    leaves.add(base)
                    sub = sub or len(parts) > 1
                else:
                    return True
                for p in parts:
                    traverse.visit(p, self)
                return False

        traverse.visit(node, _V())
        return frozenset(leaves), sub

    def same_rank(self, test_info: tuple, *vals: Val) -> tuple[str | None, int]:
        """How `torch.where(test, a, b)` lines each condition up with its element's value:
        (None, 0) when it does as written, (None, k) when the condition needs k trailing
        dims (a 1-D `m` selecting rows of a declared 2-D `x`: `m[:, None]`), or (the
        assumption it needs, 0) when the ranks are unknown."""
        leaves, sub = test_info
        if not sub and all(not v.info[1] and v.info[0] in (frozenset(), leaves) for v in vals):
            return None, 0
        value_leaves = {leaf for v in vals for leaf in v.info[0]}
        if not sub and not any(v.info[1] for v in vals):
            cond_rank = self._element_rank(leaves)
            value_rank = self._element_rank(value_leaves)
            if cond_rank is not None and value_rank is not None and value_rank >= cond_rank:
                return None, value_rank - cond_rank
        names = sorted(leaves | value_leaves)
        return f"{' and '.join(names)} have one rank: one condition per element value", 0

    def one_per_element(self, info: tuple, what: str) -> str | None:
        """None when a condition is provably one value per element (declared 1-D arrays, the
        index); else the assumption that it is: a mask line up by the leading dimension only
        when it has exactly one dimension (a [n, 1] mask would select single entries)."""
        leaves, sub = info
        if not sub and self._element_rank(leaves) == 0:
            return None
        return f"{what} is one value per element"

    def _element_rank(self, leaves) -> int | None:
        """The rank of one element of these arrays, from declared shapes; None if unknown."""
        ranks = set()
        for leaf in leaves:
            if leaf.startswith("`"):
                ranks.add(0)  # the loop index: one Python int per element
            elif leaf in self.ranks and self.ranks[leaf] >= self.depth:
                ranks.add(self.ranks[leaf] - self.depth)
            else:
                return None
        return max(ranks) if ranks else 0

    def align(self, test: Lifted, k: int) -> Lifted:
        if not k:
            return test
        parts = [cst.SubscriptElement(cst.Slice(lower=None, upper=None))] + [
            cst.SubscriptElement(cst.Index(cst.Name("None"))) for _ in range(k)]
        parts = [p.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                 if j < len(parts) - 1 else p for j, p in enumerate(parts)]
        return Lifted(cst.Subscript(value=paren(test.node), slice=parts), True, test.kind)

    def neg(self, pred: Lifted) -> Lifted:
        out = negate(pred)
        self.pred_info[id(out)] = self.pred_info.get(id(pred), (frozenset(), True))
        return out

    def path_info(self, path: tuple) -> tuple:
        infos = [self.pred_info.get(id(p), (frozenset(), True)) for p in path]
        return frozenset().union(*(i[0] for i in infos)), any(i[1] for i in infos)

    def merge(self, test: Lifted, a: Val, b: Val, context: str) -> Val:
        """`a` where `test` else `b`, or LiftError when no single `torch.where` equals the loop.

        context: "inner" (a value used further), "collect" (appended to a list) or
        "store" (`out[i] = ...`, which casts each value to `out`'s dtype on its own).
        """
        src = f"{a.src} if ... else {b.src}"
        test_info = self.pred_info.get(id(test), (frozenset(), True))
        info = (test_info[0] | a.info[0] | b.info[0], test_info[1] or a.info[1] or b.info[1])
        rank, k = self.same_rank(test_info, a, b)
        if rank is not None:
            # stores fall back to masked stores, which line up by the leading dimension
            if context == "store":
                raise LiftError(f"`torch.where` needs {rank}")
            self.scope.assumptions.append(rank)
        node = self.where(self.align(test, k), a.lifted, b.lifted)
        lits = (a.literal, b.literal)
        if context != "collect" and NOT_LITERAL not in lits and not all(_portable_literal(v) for v in lits):
            # where(c, 0.1, 0.7) is float32: 0.1 would be rounded before it is stored or used
            raise LiftError(f"branches `{a.src}` and `{b.src}` are Python numbers that torch.where "
                            "would round to the default dtype")
        if a.sig is not None and (a.sig == b.sig or self.same_declared(a.sig, b.sig)):
            kinds = {a.lifted.kind, b.lifted.kind} - {"const", "invariant"}
            if len(kinds) > 1:
                raise LiftError(f"branches `{a.src}` and `{b.src}` mix a Python number and a tensor")
            kind = kinds.pop() if kinds else {"py": {"int": "int", "float": "float", "bool": "bool"}.get(
                a.sig[1], "tensor")}.get(a.sig[0], "tensor")
            return Val(Lifted(node, True, kind), a.sig, src, info=info)
        if context == "store":
            ok = self._store_exempt(a, b) or self._store_exempt(b, a)
            if ok is not None:
                return Val(Lifted(node, True, "tensor"), ok, src, info=info)
        python = [v.sig is not None and v.sig[0] == "py" for v in (a, b)]
        if context == "collect" and all(python):
            raise LiftError(f"branches `{a.src}` and `{b.src}` are Python numbers of different types: "
                            "torch.tensor's dtype would depend on which branches ran")
        if context == "collect" and any(python):
            raise LiftError(f"branches `{a.src}` and `{b.src}`: a list mixing a Python number and "
                            "tensors takes its dtype from the branches that ran")
        raise LiftError(f"branches `{a.src}` and `{b.src}` may differ in dtype (e.g. for integer "
                        "inputs): the result's dtype would depend on which branches ran")

    def same_declared(self, a: Sig | None, b: Sig | None) -> bool:
        """`a` and `b` name the same dtype for every dtype the parameters declare."""
        if a is None or b is None or a[0] != b[0] and "py" in (a[0], b[0]):
            return False
        leaves = sorted({leaf for s in (a, b) if s[0] == "sym" for leaf in s[2]})
        if not leaves or any(leaf not in self.declared for leaf in leaves):
            return False
        for choice in itertools.product(*(self.declared[leaf] for leaf in leaves)):
            dtypes = dict(zip(leaves, choice))
            ca, cb = _concrete(a, dtypes), _concrete(b, dtypes)
            if ca is None or ca != cb:
                return False
        self.scope.assumptions += [f"{leaf} is {' or '.join(self.declared[leaf])} as declared" for leaf in leaves]
        return True

    def _store_exempt(self, lit: Val, other: Val) -> Sig | None:
        """`out[i] = c if ... else v` casts each value to out's dtype: a constant that every dtype
        holds exactly may stand beside a tensor (where() gives it the tensor's dtype)."""
        value = lit.literal
        if value is NOT_LITERAL:
            return None
        if other.literal is not NOT_LITERAL:
            both = (value, other.literal)
            if all(isinstance(v, (bool, int)) for v in both):
                return PY_INT
            if all(isinstance(v, bool) or isinstance(v, int) and abs(v) <= 2048 or isinstance(v, float)
                   and _exact_in_half(v) for v in both):
                return PY_FLOAT
            return None
        if not (other.lifted.batched and other.lifted.kind == "tensor"):
            return None
        if isinstance(value, bool) or isinstance(value, int) and 0 <= value <= 127:
            return other.sig
        floating = other.sig is not None and (other.sig[0] == "sym" and other.sig[1] == "float"
                                              or other.sig[0] == "dt" and other.sig[1] in _FLOATING)
        if isinstance(value, float) and floating and _exact_in_half(value):
            return other.sig
        return None

    # ---------------------------------------------------------------- conditions
    def predicate(self, node: cst.BaseExpression, path: tuple = ()) -> Lifted:
        """A bool tensor: True where the per-element condition `node` is truthy."""
        if not self.batched(node):
            raise LiftError(f"condition `{code(node)}` does not depend on the loop")
        out = self._predicate(node, path)
        self.pred_info[id(out)] = self.leaf_info(node)
        return out

    def _predicate(self, node: cst.BaseExpression, path: tuple) -> Lifted:
        if isinstance(node, cst.BooleanOperation):
            left = self.predicate(node.left, path)
            conj = isinstance(node.operator, cst.And)
            # `d != 0 and x // d > 1`: the right side runs only where the left allows it
            right = self.predicate(node.right, (*path, left if conj else self.neg(left)))
            op = cst.BitAnd if conj else cst.BitOr
            kind = "tensor" if "tensor" in (left.kind, right.kind) else "bool"
            return Lifted(_op(left.node, op, right.node), True, kind)
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
            return negate(self.predicate(node.expression, path))
        val = self.value(node, path)
        if val.sig == DT_BOOL or val.lifted.kind == "bool":
            return val.lifted
        # `if m:` on a uint8/float mask is `m != 0` (NaN is truthy): .bool() says exactly that
        return Lifted(method(val.lifted.node, "bool"), True, "bool")

    # ---------------------------------------------------------------- guards
    def guarded(self, node: cst.BaseExpression, path: tuple, safe, like: bool = False) -> cst.Name:
        """`node` where the path holds, a harmless stand-in elsewhere."""
        val = self.value(node, path)
        if like and val.lifted.kind == "tensor":
            # where(c, d, 1) would turn a bool divisor into int64 and change `//`'s dtype
            stand_in = call(self.fn("ones_like"), val.lifted.node)
        else:
            stand_in = cst.parse_expression(repr(safe))
        rank, k = self.same_rank(self.path_info(path), val)
        if rank is not None:
            self.scope.assumptions.append(rank)
        cond = self.align(conjoin(path), k)
        return self.placeholder(Lifted(self.where(cond, val.lifted, stand_in), True, val.lifted.kind), code(node))

    def ifexp(self, node: cst.IfExp, path: tuple) -> Lifted:
        test = self.predicate(node.test, path)
        a = self.value(node.body, (*path, test))
        b = self.value(node.orelse, (*path, self.neg(test)))
        return self.merge(test, a, b, "inner").lifted

    # ---------------------------------------------------------------- masked leaves
    def whole(self, base: str) -> cst.BaseExpression:
        dom = self.dom
        if base in dom.arrays:
            return cst.parse_expression(base)
        if dom.arrays:
            self.scope.assumptions.append(f"len({base}) == len({dom.arrays[0]})")
            return cst.parse_expression(base)
        return cst.parse_expression(f"{base}[:{dom.extent}]")

    def masked(self, node: cst.BaseExpression) -> cst.Subscript:
        return cst.Subscript(value=paren(node), slice=[cst.SubscriptElement(cst.Index(self.mask))])

    def masked_leaf(self, node: cst.CSTNode) -> cst.BaseExpression | None:
        scope = self.scope
        if isinstance(node, cst.Name):
            name = node.value
            if name in self.full_temps:
                kind = scope.temps[name].kind
                return self.placeholder(Lifted(self.masked(scope.temps[name].node), True, kind), name)
            if name in scope.temps:
                return None
            if name in scope.elements:
                return self.placeholder(Lifted(self.masked(scope.elements[name].node), True, "tensor"), name)
            if name == self.dom.index:
                arange = call(self.fn("arange"), cst.parse_expression(self.dom.extent))
                return self.placeholder(Lifted(self.masked(arange), True, "int"), name)
            return None
        if isinstance(node, cst.Subscript) and self.dom.index is not None and isinstance(
                node.value, (cst.Name, cst.Attribute)):
            first = node.slice[0].slice
            if not (isinstance(first, cst.Index) and isinstance(first.value, cst.Name)
                    and first.value.value == self.dom.index):
                return None
            flat = flatten_subscript(node)
            if flat is None or flat[0].split(".")[0] in scope.loop_names:
                return None
            rest = list(node.slice[1:])
            if any(self.batched(el) for el in rest):
                return None
            leaf = self.placeholder(Lifted(self.masked(self.whole(flat[0])), True, "tensor"),
                                    f"{code(node.value)}[{self.dom.index}]")
            if not rest:
                return leaf
            rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return cst.Subscript(value=leaf, slice=rest)
        return None

    # ---------------------------------------------------------------- signatures
    def sig(self, node: cst.BaseExpression) -> Sig | None:
        lit = literal(node)
        if lit is not NOT_LITERAL:
            return PY_BOOL if isinstance(lit, bool) else PY_INT if isinstance(lit, int) else PY_FLOAT
        if isinstance(node, cst.Imaginary):
            return ("py", "complex")
        if not self.batched(node):
            return _opaque("invariant", code(node))
        if isinstance(node, cst.Name):
            name = node.value
            if name in self.sigs:
                return self.sigs[name]
            if name in self.scope.elements:
                return ("sym", "id", frozenset({code(self.scope.elements[name].node)}))
            if name == self.dom.index:
                return PY_INT
            return None
        if isinstance(node, cst.Subscript):
            flat = flatten_subscript(node)
            if flat is None:
                return None
            base = flat[0]
            first = flat[1][0]
            head = base.split(".")[0]
            if head in self.sigs or head in self.scope.elements:
                if "." in base:
                    return None
                return self.sig(cst.Name(head))  # indexing keeps the dtype
            if (self.dom.index is not None and isinstance(first, cst.Index) and isinstance(first.value, cst.Name)
                    and first.value.value == self.dom.index and head not in self.scope.loop_names):
                return ("sym", "id", frozenset({base}))
            return None
        if isinstance(node, cst.UnaryOperation):
            if isinstance(node.operator, cst.Not):
                return DT_BOOL
            inner = self.sig(node.expression)
            # -x raises for a bool x, so on every input the loop accepts it is x's dtype:
            # the same as x * 2 (bool -> int64), which lets `x * 2` and `-x` merge
            if isinstance(node.operator, cst.Minus) and inner is not None and inner[0] == "sym":
                return ("sym", max(inner[1], "int", key=_MODES.get), inner[2])
            return inner
        if isinstance(node, cst.BinaryOperation):
            return binop_sig(node.operator, self.sig(node.left), self.sig(node.right))
        if isinstance(node, (cst.Comparison, cst.BooleanOperation)):
            return DT_BOOL
        if isinstance(node, cst.IfExp):
            a, b = self.sig(node.body), self.sig(node.orelse)
            return a if a == b else None
        if isinstance(node, cst.Call):
            return self._call_sig(node)
        return None

    def _call_sig(self, node: cst.Call) -> Sig | None:
        args = [a.value for a in node.args if a.keyword is None]
        kwargs = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
        qual = self.info.qualname(node.func)
        if qual is not None:
            module, _, name = qual.rpartition(".")
            if module == "math":
                return PY_INT if name in ("floor", "ceil", "trunc") else PY_FLOAT
            if module in ("torch", "torch.special", "torch.nn.functional"):
                return self._fn_sig(name, [self.sig(a) for a in args], kwargs, args)
            return None
        builtin = self.info.builtin_name(node.func)
        if builtin is not None and builtin not in self.scope.loop_names:
            if builtin == "float":
                return PY_FLOAT
            if builtin == "int":
                return PY_INT
            if builtin == "bool":
                return PY_BOOL
            if builtin in ("abs", "round") and len(args) == 1:
                return self.sig(args[0])
            if builtin in ("max", "min") and len(args) == 2:
                a, b = self.sig(args[0]), self.sig(args[1])
                return a if a == b else None
            if builtin == "pow" and len(args) == 2:
                return binop_sig(cst.Power(), self.sig(args[0]), self.sig(args[1]))
            return None
        if isinstance(node.func, cst.Attribute):
            name = node.func.attr.value
            obj = self.sig(node.func.value)
            if name in CAST_METHODS and not args:
                return ("dt", CAST_METHODS[name])
            if name in ("to", "type"):
                target = args[0] if args else kwargs.get("dtype")
                dotted = code(target) if target is not None else ""
                mod, _, last = dotted.rpartition(".")
                if target is not None and self.info.qualname(target) == f"torch.{last}" and last in TORCH_DTYPES:
                    return ("dt", TORCH_DTYPES[last])
                return _opaque("to", obj, code(node))
            return self._fn_sig(name, [obj, *[self.sig(a) for a in args]], kwargs, [node.func.value, *args])
        return None

    def _fn_sig(self, name: str, sigs: list, kwargs: dict, args: list) -> Sig | None:
        if not sigs or any(s is None for s in sigs):
            return None
        if name in BOOL_FUNCTIONS:
            return DT_BOOL
        if name in FLOATING_FUNCTIONS and len(sigs) == 1 and not kwargs:
            return _floatify(sigs[0])
        if name in KEEP_FUNCTIONS and all(s[0] == "py" and s[1] == "int" for s in sigs[1:]) and not kwargs:
            return sigs[0]
        if name in ("clamp", "clip") and all(s[0] == "py" and s[1] == "int" for s in sigs[1:]):
            if all(literal(v) is not NOT_LITERAL and isinstance(literal(v), int) for v in kwargs.values()):
                return sigs[0]
        if name == "where" and len(sigs) == 3:
            return sigs[1] if sigs[1] == sigs[2] else None
        if name in PROMOTES_LIKE and len(sigs) == 2 and not kwargs and PROMOTES_LIKE[name] is not None:
            return binop_sig(PROMOTES_LIKE[name](), sigs[0], sigs[1])
        return _opaque(name, *sigs, *sorted((k, code(v)) for k, v in kwargs.items()))


class _Prepare(cst.CSTTransformer):
    """Replaces the parts `lift` must not see as they are with placeholders:
    conditional expressions and `and`/`or`/`not` (lifted here, with short-circuit guards),
    divisors and partial functions' arguments under a condition (guarded), and, when
    masking, every per-element leaf (`x` -> `data[keep]`)."""

    def __init__(self, lifter: CondLifter, path: tuple) -> None:
        self.l = lifter
        self.path = path
        self.repl: dict[int, cst.CSTNode] = {}
        self.skip: set[int] = set()

    def prepare(self, node: cst.BaseExpression) -> cst.BaseExpression:
        if not self.l.batched(node):
            return node
        return node.visit(self)

    def on_visit(self, node: cst.CSTNode) -> bool:
        l = self.l
        if id(node) in self.skip or id(node) in self.repl:
            return False
        if isinstance(node, (cst.Lambda, cst.BaseComp)):
            return False
        if isinstance(node, cst.Attribute):
            self.skip.add(id(node.attr))
        if isinstance(node, cst.Arg) and node.keyword is not None:
            self.skip.add(id(node.keyword))
        if not isinstance(node, cst.BaseExpression) or not l.batched(node):
            return True
        if isinstance(node, cst.IfExp):
            self.repl[id(node)] = l.placeholder(l.ifexp(node, self.path), code(node))
            return False
        if isinstance(node, cst.BooleanOperation) or (
                isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not)):
            self.repl[id(node)] = l.placeholder(l.predicate(node, self.path), code(node))
            return False
        if l.mask is not None:
            leaf = l.masked_leaf(node)
            if leaf is not None:
                self.repl[id(node)] = leaf
                return False
        if self.path:
            self._guard(node)
        return True

    def _guard(self, node: cst.BaseExpression) -> None:
        l = self.l
        child, safe, like = None, 1, False
        if isinstance(node, cst.BinaryOperation):
            if isinstance(node.operator, (cst.Divide, cst.FloorDivide, cst.Modulo)) and l.batched(node.right):
                child, like = node.right, not isinstance(node.operator, cst.Divide)
            elif isinstance(node.operator, cst.Power) and l.batched(node.left):
                exp = literal(node.right)
                # x ** 2 is defined everywhere; x ** 0.5 and x ** y are not
                if not (isinstance(exp, int) and not isinstance(exp, bool) and exp >= 0):
                    child = node.left
        elif isinstance(node, cst.Call):
            args = [a for a in node.args if a.keyword is None]
            qual = l.info.qualname(node.func)
            name = qual.rpartition(".")[2] if qual else None
            if qual is not None and qual.rpartition(".")[0] in ("torch", "torch.special", "math"):
                if name in _PARTIAL and args and l.batched(args[0].value):
                    child, safe = args[0].value, _PARTIAL[name]
                elif name in _DIVISORS and len(args) >= 2 and l.batched(args[1].value):
                    rounding = any(a.keyword is not None and a.keyword.value == "rounding_mode" for a in node.args)
                    child, like = args[1].value, _DIVISORS[name] or rounding
            elif qual is None and isinstance(node.func, cst.Attribute) and l.batched(node.func.value):
                name = node.func.attr.value
                if name in _PARTIAL:
                    child, safe = node.func.value, _PARTIAL[name]
                elif name in _DIVISORS and args and l.batched(args[0].value):
                    rounding = any(a.keyword is not None and a.keyword.value == "rounding_mode" for a in node.args)
                    child, like = args[0].value, _DIVISORS[name] or rounding
        if child is not None and id(child) not in self.repl:
            self.repl[id(child)] = l.guarded(child, self.path, safe, like)
            self.skip.add(id(child))

    def on_leave(self, original_node, updated_node):
        return self.repl.get(id(original_node), updated_node)
