"""Lift a loop-body expression over one element into the same expression over the array.

`x[i] ** 2 + 3 * x[i]` over `for i in range(len(x))` lifts to `x ** 2 + 3 * x`;
`math.sin(v)` over `for v in x` lifts to `torch.sin(x.double())` (math works on Python
floats, which are float64). The tables below are the source counterpart of vmap's
batching rules: how each operator, torch function, tensor method, builtin and `math.*`
function batches. Anything not in a table raises `LiftError` — never guess.

Every lifted value has a *kind*, the Python type one iteration produced:
  tensor  a torch tensor (0-d or more) — batched values keep the element's dtype rules
  float   a Python float (computed in float64) — lifted as a float64 tensor
  int     a Python int — lifted as an int64 tensor
  bool    a Python bool — lifted as a bool tensor
  const   a numeric literal, the same in every iteration
  invariant  any other loop-invariant value (a parameter, a module constant)
Kinds matter because they decide dtypes: `float(x) * 2` is float64 per element even when
`x` is float32, and mixing a per-element Python number with a tensor promotes differently
once batched, so that mix declines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from .analysis.domain import Domain
from .analysis.loops import flatten_subscript
from .analysis.module import ModuleInfo, code, dotted


class LiftError(Exception):
    """The expression cannot be lifted; the message says why (shown as the decline reason)."""


@dataclass(frozen=True)
class Lifted:
    node: cst.BaseExpression
    batched: bool
    kind: str  # tensor | float | int | bool | const | invariant
    fresh: bool = True  # a new tensor, not a view of an input (else a copy is needed)

    @property
    def code(self) -> str:
        return code(self.node)


# --------------------------------------------------------------------------- tables

_UNARY = {
    "abs", "absolute", "acos", "arccos", "acosh", "asin", "arcsin", "asinh", "atan", "arctan",
    "atanh", "ceil", "cos", "cosh", "deg2rad", "rad2deg", "erf", "erfc", "erfinv", "exp", "exp2",
    "expm1", "fix", "floor", "frac", "lgamma", "digamma", "log", "log10", "log1p", "log2",
    "logit", "i0", "isnan", "isinf", "isfinite", "isposinf", "isneginf", "isreal", "nan_to_num",
    "neg", "negative", "positive", "reciprocal", "round", "rsqrt", "sigmoid", "sign", "sgn",
    "signbit", "sin", "sinc", "sinh", "sqrt", "square", "tan", "tanh", "trunc", "relu",
    "logical_not", "bitwise_not", "conj", "angle", "real", "imag",
}
_BINARY = {
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "floor_divide",
    "pow", "float_power", "maximum", "minimum", "fmax", "fmin", "atan2", "arctan2", "remainder",
    "fmod", "hypot", "logaddexp", "logaddexp2", "copysign", "nextafter", "xlogy", "heaviside",
    "eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal",
    "not_equal", "logical_and", "logical_or", "logical_xor", "bitwise_and", "bitwise_or",
    "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift", "isclose",
}
_TERNARY = {"where", "lerp", "addcmul", "addcdiv", "clamp", "clip"}
_TORCH_ELEMENTWISE = _UNARY | _BINARY | _TERNARY
_SPECIAL = {"expit", "logit", "erf", "erfc", "erfinv", "expm1", "exp2", "log1p", "sinc", "xlogy",
            "i0", "i0e", "i1", "i1e", "ndtr", "ndtri", "log_ndtr", "entr", "round", "xlog1py"}
_FUNCTIONAL = {
    "relu", "relu6", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus", "softsign",
    "leaky_relu", "hardtanh", "hardswish", "hardsigmoid", "hardshrink", "softshrink",
    "tanhshrink", "threshold", "logsigmoid", "sigmoid", "tanh", "rrelu",
}
# methods that keep elementwise semantics; argument positions may be batched
_METHODS = (_UNARY | _BINARY | {"where", "lerp", "addcmul", "addcdiv", "clamp", "clip",
            "clamp_min", "clamp_max"}) - {"real", "imag"}
_CASTS = {"float", "double", "half", "bfloat16", "int", "long", "short", "byte", "char", "bool",
          "to", "type", "cfloat", "cdouble"}
_IDENTITY_METHODS = {"clone": True, "detach": False, "contiguous": False}
_MATH = {
    "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan",
    "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "asinh": "asinh", "acosh": "acosh",
    "atanh": "atanh", "exp": "exp", "expm1": "expm1", "log1p": "log1p", "log2": "log2",
    "log10": "log10", "sqrt": "sqrt", "fabs": "abs", "erf": "erf", "erfc": "erfc",
    "lgamma": "lgamma", "atan2": "atan2", "hypot": "hypot", "copysign": "copysign",
    "fmod": "fmod", "pow": "pow", "degrees": "rad2deg", "radians": "deg2rad",
}
# math functions that return int for floats: floor/ceil/trunc -> Python int
_MATH_TO_INT = {"floor": "floor", "ceil": "ceil", "trunc": "trunc"}
_FLOAT_OPS = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.Power, cst.FloorDivide, cst.Modulo)
_INT_OPS = (cst.Add, cst.Subtract, cst.Multiply, cst.FloorDivide, cst.Modulo,
            cst.BitAnd, cst.BitOr, cst.BitXor, cst.LeftShift, cst.RightShift)


# --------------------------------------------------------------------------- scope


@dataclass
class LiftScope:
    """What the lifter knows about one loop.

    `elements` maps per-iteration names to whole-array expressions (`v` -> `x`),
    `temps` holds body temporaries already lifted, `loop_names` every name the loop binds
    (a reference to one the scope cannot lift declines), and `assumptions` collects what a
    rewrite relies on beyond the verified inputs (e.g. two arrays of equal length).
    """

    info: ModuleInfo
    torch: str
    domain: Domain
    loop_names: set[str]
    elements: dict[str, Lifted] = field(default_factory=dict)
    temps: dict[str, Lifted] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    walked: list[str] = field(default_factory=list)  # arrays read one row per iteration

    def walk(self, array: str) -> None:
        """`x[i] * w[i]` with x [n, d] and w [n]: per row `w[i]` is 0-d and scales the row;
        batched, `w` would align with `d`. Two walked arrays must have the same rank."""
        if array in self.walked:
            return
        self.walked.append(array)
        if len(self.walked) > 1:
            self.assumptions.append(f"`{self.walked[0]}` and `{array}` have the same number of dimensions")

    @classmethod
    def for_loop(cls, info: ModuleInfo, torch: str, domain: Domain, loop_names: set[str]) -> LiftScope:
        scope = cls(info, torch, domain, set(loop_names) | set(domain.names))
        for name, array in domain.elements:
            scope.elements[name] = Lifted(cst.parse_expression(array), True, "tensor", fresh=False)
        if len(domain.arrays) > 1:
            # zip(x, y) stops at the shorter one; the whole-array form needs equal lengths
            first = domain.arrays[0]
            scope.assumptions += [f"len({a}) == len({first})" for a in domain.arrays[1:]]
        return scope

    def expr(self, text: str) -> cst.BaseExpression:
        return cst.parse_expression(text)

    def torch_fn(self, name: str) -> cst.BaseExpression:
        return cst.parse_expression(f"{self.torch}.{name}")


def _tensorish(kind: str) -> bool:
    return kind in ("tensor", "const", "invariant")


def _paren(node: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float)):
        return node
    if node.lpar:
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float, cst.Imaginary,
          cst.SimpleString)


def _fit(original: cst.BaseExpression, new: cst.BaseExpression) -> cst.BaseExpression:
    """`new` in the place of `original`: parenthesised only if its precedence may differ."""
    if isinstance(new, _ATOMS) or new.lpar:
        return new
    if type(new) is type(original) and not isinstance(new, (cst.Comparison, cst.BooleanOperation)):
        same_op = type(getattr(new, "operator", None)) is type(getattr(original, "operator", None))
        if same_op:
            return new
    if isinstance(new, cst.Comparison) and isinstance(original, cst.Comparison):
        return new
    return _paren(new)


def _arg(value: cst.BaseExpression, keyword: str | None = None) -> cst.Arg:
    if keyword is None:
        return cst.Arg(value=value)
    return cst.Arg(value=value, keyword=cst.Name(keyword),
                   equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                         whitespace_after=cst.SimpleWhitespace("")))


def call(func: cst.BaseExpression, *args: cst.BaseExpression, **kwargs: cst.BaseExpression) -> cst.Call:
    out = [_arg(a) for a in args] + [_arg(v, k) for k, v in kwargs.items()]
    return cst.Call(func=func, args=[
        a.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) if i < len(out) - 1 else a
        for i, a in enumerate(out)
    ])


def method(obj: cst.BaseExpression, name: str, *args: cst.BaseExpression, **kwargs) -> cst.Call:
    return call(cst.Attribute(value=_paren(obj), attr=cst.Name(name)), *args, **kwargs)


# --------------------------------------------------------------------------- the lifter


def combine_kinds(a: Lifted, b: Lifted, what: str) -> str:
    """The kind of `a op b`, or LiftError when batching would change dtype promotion."""
    ka, kb = a.kind, b.kind
    if ka in ("const", "invariant") and kb in ("const", "invariant"):
        return "invariant"
    if ka in ("const", "invariant"):
        return kb
    if kb in ("const", "invariant"):
        return ka
    if ka == kb:
        return ka
    if {ka, kb} <= {"float", "int", "bool"}:
        return "float" if "float" in (ka, kb) else "int"
    # 0-d tensor * Python int keeps the tensor's dtype; a batched int64 tensor would promote it
    raise LiftError(f"{what} mixes a per-element Python number with a tensor")


def lift(node: cst.BaseExpression, scope: LiftScope) -> Lifted:
    if isinstance(node, (cst.Integer, cst.Float, cst.Imaginary)):
        return Lifted(node, False, "const")
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)):
        return Lifted(node, False, "invariant")
    if isinstance(node, cst.Name):
        return _lift_name(node, scope)
    if isinstance(node, cst.Attribute):
        return _lift_attribute(node, scope)
    if isinstance(node, cst.Subscript):
        return _lift_subscript(node, scope)
    if isinstance(node, cst.UnaryOperation):
        return _lift_unary(node, scope)
    if isinstance(node, cst.BinaryOperation):
        return _lift_binary(node, scope)
    if isinstance(node, cst.Comparison):
        return _lift_comparison(node, scope)
    if isinstance(node, cst.BooleanOperation):
        return _lift_boolean(node, scope)
    if isinstance(node, cst.IfExp):
        return _lift_ifexp(node, scope)
    if isinstance(node, cst.Call):
        return _lift_call(node, scope)
    raise LiftError(f"cannot lift `{code(node)}`")


def _unbatched(node: cst.BaseExpression, scope: LiftScope) -> bool:
    from .analysis.loops import names_in

    return not (names_in(node) & scope.loop_names)


def _lift_name(node: cst.Name, scope: LiftScope) -> Lifted:
    name = node.value
    if name in scope.temps:
        return scope.temps[name]
    if name in scope.elements:
        scope.walk(code(scope.elements[name].node))
        return scope.elements[name]
    if name == scope.domain.index:
        # `x * i`: the index is a Python int; batched it is an int64 arange, which
        # promotes differently against tensors -- only pure-int arithmetic may use it
        return Lifted(call(scope.torch_fn("arange"), scope.expr(scope.domain.extent)), True, "int")
    if name in scope.loop_names:
        raise LiftError(f"`{name}` is bound in the loop in a way loopvec does not lift")
    return Lifted(node, False, "invariant")


def _lift_attribute(node: cst.Attribute, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    base = lift(node.value, scope)
    attr = node.attr.value
    if base.kind != "tensor":
        raise LiftError(f"attribute `.{attr}` of a per-element Python number")
    if attr in ("dtype", "device", "is_cuda", "layout"):
        return Lifted(node.with_changes(value=_paren(base.node)), False, "invariant")
    if attr in ("real", "imag"):
        return Lifted(node.with_changes(value=_paren(base.node)), True, "tensor", fresh=False)
    raise LiftError(f"attribute `.{attr}` of a loop element")


def _index_parts(node: cst.Subscript) -> tuple[str, tuple[cst.BaseSlice, ...]] | None:
    return flatten_subscript(node)


def _lift_subscript(node: cst.Subscript, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    dom = scope.domain
    flat = _index_parts(node)
    if flat is not None and dom.index is not None:
        base, parts = flat
        first = parts[0]
        if isinstance(first, cst.Index) and isinstance(first.value, cst.Name) and first.value.value == dom.index:
            if base.split(".")[0] in scope.loop_names:
                raise LiftError(f"`{code(node)}` indexes an array bound in the loop")
            rest = parts[1:]
            for p in rest:
                if not _unbatched(p, scope):
                    raise LiftError(f"`{code(node)}` indexes with more than one loop variable")
            whole = _whole_array(base, scope)
            if not rest:
                return Lifted(whole, True, "tensor", fresh=False)
            sl = [cst.SubscriptElement(cst.Slice(lower=None, upper=None))] + [
                cst.SubscriptElement(p) for p in rest]
            return Lifted(cst.Subscript(value=_paren(whole), slice=_commas(sl)), True, "tensor", fresh=False)
        if any(not _unbatched(p, scope) for p in parts):
            # x[i - 1], x[idx[i]], x[j, i]: shifted, gathered or transposed reads
            if not (isinstance(node.value, (cst.Name, cst.Attribute)) and node.value is not None
                    and _lift_head_is_element(node, scope)):
                raise LiftError(f"`{code(node)}` is not a plain `x[i]` read")
    # element[k]: index into each element with a loop-invariant index
    value = lift(node.value, scope)
    if value.kind != "tensor" or not value.batched:
        raise LiftError(f"cannot lift `{code(node)}`")
    for el in node.slice:
        if not _unbatched(el.slice, scope):
            raise LiftError(f"`{code(node)}` indexes a loop element with a loop variable")
    sl = [cst.SubscriptElement(cst.Slice(lower=None, upper=None))] + [
        cst.SubscriptElement(el.slice) for el in node.slice]
    # Ellipsis would swallow the new leading dimension into `...`
    if any(isinstance(el.slice, cst.Index) and isinstance(el.slice.value, cst.Ellipsis) for el in node.slice):
        raise LiftError(f"`{code(node)}` indexes with `...`")
    return Lifted(cst.Subscript(value=_paren(value.node), slice=_commas(sl)), True, "tensor", fresh=False)


def _lift_head_is_element(node: cst.Subscript, scope: LiftScope) -> bool:
    head = node.value
    return isinstance(head, cst.Name) and (head.value in scope.elements or head.value in scope.temps)


def _commas(elements: list[cst.SubscriptElement]) -> list[cst.SubscriptElement]:
    return [
        e.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) if i < len(elements) - 1 else e
        for i, e in enumerate(elements)
    ]


def _whole_array(base: str, scope: LiftScope) -> cst.BaseExpression:
    """`x` for `x[i]`; `x[:n]` when the loop walks only a prefix whose length is `n`."""
    dom = scope.domain
    scope.walk(base)
    if base in dom.arrays:
        return scope.expr(base)
    if dom.arrays:
        # range(len(x)) reading y[i] reads y's first len(x) rows; the whole `y` equals them
        # only when the lengths match, which the verifier's inputs assume: say so
        scope.assumptions.append(f"len({base}) == len({dom.arrays[0]})")
        return scope.expr(base)
    if not _never_negative(dom.extent):
        # range(n) with n < 0 runs zero times, but `y[:n]` drops rows from the end
        raise LiftError(f"`range({dom.extent})` may have a negative bound")
    return scope.expr(f"{base}[:{dom.extent}]")


def _never_negative(extent: str) -> bool:
    node = cst.parse_expression(extent)
    if isinstance(node, cst.Integer):
        return True
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "len":
        return True
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "size":
        return True
    return isinstance(node, cst.Subscript) and isinstance(node.value, cst.Attribute) and node.value.attr.value == "shape"


def _lift_unary(node: cst.UnaryOperation, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    inner = lift(node.expression, scope)
    op = node.operator
    if isinstance(op, cst.Not):
        if not _is_predicate(node.expression):
            raise LiftError(f"`not` of a non-comparison `{code(node.expression)}`")
        return Lifted(cst.UnaryOperation(cst.BitInvert(), _paren(inner.node)), True, "bool")
    if isinstance(op, cst.BitInvert) and inner.kind in ("int", "bool"):
        raise LiftError("`~` on a Python number")
    return Lifted(node.with_changes(expression=_fit(node.expression, inner.node)), True, inner.kind)


def _is_predicate(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.Comparison):
        return all(not isinstance(t.operator, (cst.In, cst.NotIn, cst.Is, cst.IsNot)) for t in node.comparisons)
    if isinstance(node, cst.BooleanOperation):
        return _is_predicate(node.left) and _is_predicate(node.right)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
        return _is_predicate(node.expression)
    return False


def _note_invariant_operands(operands: list[Lifted], scope: LiftScope) -> None:
    """`v * w` per element is an outer product when `w` has more dimensions than `v`;
    batched, `x * w` aligns `w` with the trailing dimensions instead. Say so."""
    if not any(o.batched and o.kind == "tensor" for o in operands):
        return
    for o in operands:
        if o.kind == "invariant" and isinstance(o.node, (cst.Name, cst.Attribute, cst.Subscript)):
            scope.assumptions.append(f"`{code(o.node)}` is a number or has no more dimensions than one element")


def _lift_binary(node: cst.BinaryOperation, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    if isinstance(node.operator, cst.MatrixMultiply):
        raise LiftError("`@` inside an elementwise body")
    left, right = lift(node.left, scope), lift(node.right, scope)
    kind = combine_kinds(left, right, f"`{code(node)}`")
    _note_invariant_operands([left, right], scope)
    op = node.operator
    if kind == "float" and not isinstance(op, _FLOAT_OPS):
        raise LiftError(f"operator in `{code(node)}` on Python floats")
    if kind in ("int", "bool"):
        if not isinstance(op, _INT_OPS):
            # int / int is a float64 in Python but float32 for int64 tensors
            raise LiftError(f"`{code(node)}` on Python ints has no exact tensor twin")
        kind = "int"
    if kind == "invariant":
        kind = "tensor"
    return Lifted(node.with_changes(left=_fit(node.left, left.node), right=_fit(node.right, right.node)), True, kind)


def _lift_comparison(node: cst.Comparison, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    for t in node.comparisons:
        if isinstance(t.operator, (cst.In, cst.NotIn, cst.Is, cst.IsNot)):
            raise LiftError(f"`{code(node)}` uses in/is")
    operands = [node.left] + [t.comparator for t in node.comparisons]
    lifted = [lift(o, scope) for o in operands]
    kind = lifted[0]
    for other in lifted[1:]:
        combine_kinds(kind, other, f"`{code(node)}`")
    out_kind = "tensor" if any(x.kind == "tensor" for x in lifted) else "bool"
    parts = []
    for k, t in enumerate(node.comparisons):
        parts.append(cst.Comparison(left=_fit(operands[k], lifted[k].node),
                                    comparisons=[t.with_changes(comparator=_fit(operands[k + 1], lifted[k + 1].node))]))
    # `0 < x < 1` is `(0 < x) and (x < 1)`: batched with `&`
    result: cst.BaseExpression = parts[0]
    for p in parts[1:]:
        result = cst.BinaryOperation(left=_paren(result), operator=cst.BitAnd(
            whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")),
            right=_paren(p))
    if len(parts) == 1:
        result = result.with_changes(lpar=node.lpar, rpar=node.rpar)
    return Lifted(result, True, out_kind)


def _lift_boolean(node: cst.BooleanOperation, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    # `a and b` returns one of its operands: only on predicates is it `a & b`
    if not (_is_predicate(node.left) and _is_predicate(node.right)):
        raise LiftError(f"`{code(node)}` combines non-comparisons with and/or")
    left, right = lift(node.left, scope), lift(node.right, scope)
    op = cst.BitAnd if isinstance(node.operator, cst.And) else cst.BitOr
    kind = "tensor" if "tensor" in (left.kind, right.kind) else "bool"
    return Lifted(cst.BinaryOperation(left=_paren(left.node), operator=op(
        whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")),
        right=_paren(right.node)), True, kind)


def _lift_ifexp(node: cst.IfExp, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    test = lift(node.test, scope)
    body, orelse = lift(node.body, scope), lift(node.orelse, scope)
    if not test.batched:
        # the same branch for every element: keep the conditional, lift the branches
        kind = combine_kinds(body, orelse, f"`{code(node)}`")
        return Lifted(node.with_changes(body=body.node, orelse=orelse.node), True, kind)
    if not _is_predicate(node.test):
        raise LiftError(f"condition `{code(node.test)}` is not a comparison")
    kinds = {body.kind, orelse.kind} - {"const", "invariant"}
    if kinds != {"tensor"}:
        # a per-element Python number on one branch and a tensor on the other changes dtype
        raise LiftError(f"branches of `{code(node)}` are not both tensors")
    return Lifted(call(scope.torch_fn("where"), test.node, body.node, orelse.node), True, "tensor")


# --------------------------------------------------------------------------- calls


def _lift_args(node: cst.Call, scope: LiftScope, what: str) -> tuple[list[Lifted], dict[str, Lifted]]:
    pos: list[Lifted] = []
    kw: dict[str, Lifted] = {}
    for a in node.args:
        if a.star:
            raise LiftError(f"starred arguments in `{what}`")
        lifted = lift(a.value, scope)
        if a.keyword is None:
            pos.append(lifted)
        else:
            if a.keyword.value == "out":
                raise LiftError(f"`out=` in `{what}`")
            kw[a.keyword.value] = lifted
    return pos, kw


def _rebuild(node: cst.Call, func: cst.BaseExpression, pos: list[Lifted], kw: dict[str, Lifted]) -> cst.Call:
    args = []
    it = iter(pos)
    for a in node.args:
        value = next(it).node if a.keyword is None else kw[a.keyword.value].node
        args.append(a.with_changes(value=value))
    return node.with_changes(func=func, args=args)


def _tensor_result(node: cst.Call, pos, kw, what: str, func: cst.BaseExpression, scope: LiftScope) -> Lifted:
    for x in [*pos, *kw.values()]:
        if x.kind in ("float", "int", "bool"):
            raise LiftError(f"`{what}` on a per-element Python number")
    _note_invariant_operands([*pos, *kw.values()], scope)
    return Lifted(_rebuild(node, func, pos, kw), True, "tensor")


def _lift_call(node: cst.Call, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    info = scope.info
    qual = info.qualname(node.func)
    what = code(node.func)
    if qual is not None:
        return _lift_qualified(node, qual, scope)
    builtin = info.builtin_name(node.func)
    if builtin is not None and builtin not in scope.loop_names and builtin not in scope.info.imports:
        return _lift_builtin(node, builtin, scope)
    if isinstance(node.func, cst.Attribute):
        return _lift_method(node, scope)
    raise LiftError(f"unknown call `{what}`")


def _lift_qualified(node: cst.Call, qual: str, scope: LiftScope) -> Lifted:
    what = code(node.func)
    module, _, name = qual.rpartition(".")
    pos, kw = _lift_args(node, scope, what)
    if module == "torch" and name in _TORCH_ELEMENTWISE:
        return _tensor_result(node, pos, kw, what, node.func, scope)
    if module == "torch.special" and name in _SPECIAL:
        return _tensor_result(node, pos, kw, what, node.func, scope)
    if module == "torch.nn.functional" and name in _FUNCTIONAL:
        if "inplace" in kw:
            raise LiftError(f"`inplace=` in `{what}`")
        return _tensor_result(node, pos, kw, what, node.func, scope)
    if module == "math" and (name in _MATH or name in _MATH_TO_INT):
        # math.* converts its arguments to Python float (float64) and returns a float
        args = []
        for p in pos:
            if p.kind in ("const", "invariant"):
                args.append(p)
            elif p.kind == "float":
                args.append(p)
            else:
                args.append(Lifted(method(p.node, "double"), True, "float"))
        if kw:
            raise LiftError(f"keywords in `{what}`")
        torch_name = _MATH.get(name) or _MATH_TO_INT[name]
        out = call(scope.torch_fn(torch_name), *[a.node for a in args])
        if name in _MATH_TO_INT:
            return Lifted(method(out, "long"), True, "int")
        return Lifted(out, True, "float")
    raise LiftError(f"unknown call `{what}`")


def _lift_builtin(node: cst.Call, name: str, scope: LiftScope) -> Lifted:
    pos, kw = _lift_args(node, scope, name)
    if kw:
        raise LiftError(f"keywords in `{name}(...)`")
    if name == "abs" and len(pos) == 1:
        return Lifted(method(pos[0].node, "abs"), True, pos[0].kind if pos[0].batched else "tensor")
    if name in ("max", "min") and len(pos) == 2:
        a, b = pos
        kind = combine_kinds(a, b, f"`{name}(...)`")
        if kind in ("const", "invariant"):
            kind = "tensor"
        # max(a, b) returns b only when b > a (so max(nan, 1) is nan): the same select
        cmp = cst.GreaterThan() if name == "max" else cst.LessThan()
        test = cst.Comparison(left=_paren(b.node), comparisons=[cst.ComparisonTarget(
            operator=cmp.with_changes(whitespace_before=cst.SimpleWhitespace(" "),
                                      whitespace_after=cst.SimpleWhitespace(" ")),
            comparator=_paren(a.node))])
        # max(x, 0.0) yields the tensor x or the float 0.0: a list mixing both has no single dtype rule
        if a.kind != b.kind:
            raise LiftError(f"`{name}(...)` mixes a loop element with a constant")
        return Lifted(call(scope.torch_fn("where"), test, b.node, a.node), True, kind)
    if name == "float" and len(pos) == 1:
        return Lifted(method(pos[0].node, "double"), True, "float")
    if name == "int" and len(pos) == 1:
        return Lifted(method(pos[0].node, "long"), True, "int")
    if name == "bool" and len(pos) == 1:
        return Lifted(cst.parse_expression(f"({code(pos[0].node)}) != 0"), True, "bool")
    if name == "round" and len(pos) in (1, 2) and pos[0].kind == "tensor":
        extra = {"decimals": pos[1].node} if len(pos) == 2 else {}
        return Lifted(call(scope.torch_fn("round"), pos[0].node, **extra), True, "tensor")
    if name == "pow" and len(pos) == 2:
        kind = combine_kinds(pos[0], pos[1], "`pow(...)`")
        return Lifted(cst.BinaryOperation(_paren(pos[0].node), cst.Power(), _paren(pos[1].node)), True,
                      "tensor" if kind in ("const", "invariant") else kind)
    raise LiftError(f"builtin `{name}(...)` per element")


def _lift_method(node: cst.Call, scope: LiftScope) -> Lifted:
    func = node.func
    assert isinstance(func, cst.Attribute)
    name = func.attr.value
    obj = lift(func.value, scope)
    if obj.kind != "tensor":
        raise LiftError(f"method `.{name}()` on a per-element Python value")
    pos, kw = _lift_args(node, scope, f".{name}")
    new_func = func.with_changes(value=_paren(obj.node))
    if name in _IDENTITY_METHODS and not pos and not kw:
        fresh = _IDENTITY_METHODS[name] or obj.fresh
        return Lifted(node.with_changes(func=new_func), obj.batched, "tensor", fresh=fresh)
    if name in _CASTS:
        if any(p.batched for p in [*pos, *kw.values()]):
            raise LiftError(f"`.{name}()` with per-element arguments")
        if name == "to" and not (pos or kw):
            raise LiftError("`.to()` without arguments")
        # x.to(dtype) may return x itself: a copy keeps the output independent
        return Lifted(_rebuild(node, new_func, pos, kw), True, "tensor", fresh=False)
    if name == "item" and not pos and not kw:
        raise LiftError("`.item()` per element (its Python type depends on the dtype): "
                        "use float(x) or keep the tensor")
    if name in _METHODS:
        return _tensor_result(node, pos, kw, f".{name}", new_func, scope)
    raise LiftError(f"unknown method `.{name}()`")


# --------------------------------------------------------------------------- statements


def lift_temps(statements, scope: LiftScope) -> list[str]:
    """Lift `t = expr` statements of a body in order; returns the vectorized statements.

    Each temporary becomes a whole-array temporary of the same name, so later
    statements that use it refer to the batched value.
    """
    out: list[str] = []
    for stmt in statements:
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            raise LiftError("compound statement in the loop body")
        small = stmt.body[0]
        if not (isinstance(small, cst.Assign) and len(small.targets) == 1
                and isinstance(small.targets[0].target, cst.Name)):
            raise LiftError(f"statement `{code(small)}` in the loop body")
        name = small.targets[0].target.value
        value = lift(small.value, scope)
        if not value.batched:
            raise LiftError(f"`{name}` does not depend on the loop")
        scope.temps[name] = Lifted(cst.Name(name), True, value.kind, fresh=value.fresh)
        out.append(f"{name} = {value.code}")
    return out


def as_operand(text: str) -> str:
    """`text` ready to stand where a call stood: parenthesised unless it is an atom."""
    node = cst.parse_expression(text)
    return text if isinstance(node, _ATOMS) or node.lpar else f"({text})"
