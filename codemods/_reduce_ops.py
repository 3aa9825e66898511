"""What the `reduction` pattern knows besides the loop IR: argument facts, dtype classes, names.

Reductions change dtypes in ways elementwise maps do not (`x.sum()` of a uint8 tensor is
int64, a Python-int accumulator over uint8 elements wraps in uint8), and a row reduction
is exact only for the rank it was written for. So the pattern asks three questions the
loop IR does not answer:

* what the user said an argument is (hint comment on the def line, or annotation),
  read with the verifier's own spec parser so both sides agree;
* whether an expression is certainly floating point (or complex), so a plain `.sum(0)`
  keeps the accumulator's dtype;
* which names are free in the function, for the temporaries a rewrite introduces.
"""

from __future__ import annotations

import libcst as cst

from loopvec.analysis.loops import Loop, names_in
from loopvec.analysis.module import ModuleInfo, code
from loopvec.verify.specs import ListSpec, ScalarSpec, SpecError, TensorSpec, TupleSpec, parse_annotation, \
    parse_hint_comment, parse_spec

_INEXACT_DTYPES = {"float16", "bfloat16", "float32", "float64", "complex64", "complex128"}

# torch functions / tensor methods whose result is floating for any real input
_FLOAT_RESULT = {
    "sin", "cos", "tan", "asin", "acos", "atan", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "asinh", "acosh", "atanh", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
    "sqrt", "rsqrt", "sigmoid", "erf", "erfc", "erfinv", "lgamma", "digamma", "logit", "sinc",
    "reciprocal", "atan2", "arctan2", "hypot", "logaddexp", "logaddexp2", "float_power",
    "true_divide", "div", "divide", "float", "double", "half", "bfloat16", "cfloat", "cdouble",
    "mean", "std", "var", "norm", "softmax", "log_softmax", "relu6", "elu", "selu", "celu",
    "gelu", "silu", "mish", "softplus", "logsigmoid",
}
# results that keep the dtype of their (first) operand
_SAME_AS_INPUT = {"abs", "absolute", "neg", "negative", "positive", "square", "clone", "detach",
                  "contiguous", "relu", "clamp", "clip", "clamp_min", "clamp_max", "conj"}


class ArgFacts:
    """What the def line's hint comment and the annotations say about each parameter."""

    def __init__(self, info: ModuleInfo, function: cst.FunctionDef | None) -> None:
        self.specs: dict[str, object] = {}
        self.params: set[str] = set()
        if function is None:
            return
        params = [*function.params.posonly_params, *function.params.params, *function.params.kwonly_params]
        self.params = {p.name.value for p in params}
        for p in params:
            if p.annotation is not None:
                spec = parse_annotation(code(p.annotation.annotation))
                if spec is not None:
                    self.specs[p.name.value] = spec
        for name, text in _hint_comment(info, function).items():
            try:
                self.specs[name] = parse_spec(text)
            except SpecError:
                continue

    def tensor(self, name: str) -> TensorSpec | None:
        spec = self.specs.get(name)
        return spec if isinstance(spec, TensorSpec) else None

    def not_a_tensor(self, name: str) -> bool:
        """Annotated as a list, tuple or number: iterating it yields Python values."""
        return isinstance(self.specs.get(name), (ListSpec, TupleSpec, ScalarSpec))

    def inexact(self, name: str) -> bool:
        spec = self.tensor(name)
        return bool(spec and spec.dtypes and set(spec.dtypes) <= _INEXACT_DTYPES)

    def dtypes(self, name: str) -> set[str] | None:
        spec = self.tensor(name)
        return set(spec.dtypes) if spec is not None and spec.dtypes else None

    def rank(self, name: str) -> int | None:
        """The exact rank, when a hint or a shaped annotation fixes it."""
        spec = self.tensor(name)
        if spec is None or spec.dims is None:
            return None
        return len(spec.dims)


def _hint_comment(info: ModuleInfo, function: cst.FunctionDef) -> dict[str, str]:
    lines = info.source.splitlines()
    first = info.position(function.name).start.line
    body = function.body
    last = first
    if isinstance(body, cst.IndentedBlock) and body.body:
        last = max(first, info.position(body.body[0]).start.line - 1)
    out: dict[str, str] = {}
    for line in lines[first - 1:last]:
        out.update(parse_hint_comment(line))
    return out


class DtypeClasses:
    """Which per-element expressions are certainly floating point or complex.

    `names` maps element names, temporaries and parameters to True when their values are
    floating; anything unknown is not floating (the caller then keeps an explicit dtype).
    """

    def __init__(self, info: ModuleInfo, names: dict[str, bool], arrays: dict[str, set[str] | None]) -> None:
        self.info = info
        self.names = dict(names)
        self.arrays = dict(arrays)  # element name or array name -> its annotated dtypes

    def dtypes(self, node: cst.BaseExpression) -> set[str] | None:
        """The dtypes an element (`x`, `data[i]`, `data`) may have, when annotated."""
        if isinstance(node, cst.Subscript):
            node = node.value
        if isinstance(node, cst.Name):
            return self.arrays.get(node.value)
        # row * w, x - y: the union of what the operands may be (a number literal adds none)
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, (cst.Add, cst.Subtract,
                                                                               cst.Multiply)):
            sides = [s for s in (node.left, node.right) if not isinstance(s, (cst.Integer, cst.Float))]
            found = [self.dtypes(s) for s in sides]
            if found and None not in found:
                return set().union(*found)
        return None

    def inexact(self, node: cst.BaseExpression) -> bool:
        if isinstance(node, (cst.Float, cst.Imaginary)):
            return True
        if isinstance(node, cst.Name):
            return self.names.get(node.value, False)
        if isinstance(node, cst.Subscript):
            head = node.value
            while isinstance(head, cst.Subscript):
                head = head.value
            return isinstance(head, cst.Name) and self.names.get(head.value, False)
        if isinstance(node, cst.UnaryOperation):
            return not isinstance(node.operator, (cst.Not, cst.BitInvert)) and self.inexact(node.expression)
        if isinstance(node, cst.BinaryOperation):
            if isinstance(node.operator, cst.Divide):
                return True
            if isinstance(node.operator, (cst.Add, cst.Subtract, cst.Multiply, cst.Power, cst.FloorDivide,
                                          cst.Modulo)):
                return self.inexact(node.left) or self.inexact(node.right)
            return False
        if isinstance(node, cst.Call):
            return self._call(node)
        if isinstance(node, cst.IfExp):
            return self.inexact(node.body) and self.inexact(node.orelse)
        return False

    def _call(self, node: cst.Call) -> bool:
        qual = self.info.qualname(node.func)
        args = [a.value for a in node.args if a.keyword is None]
        if qual is not None:
            module, _, name = qual.rpartition(".")
            if module == "math":
                return True
            if module in ("torch", "torch.special", "torch.nn.functional"):
                if name in _FLOAT_RESULT:
                    return True
                if name in _SAME_AS_INPUT and args:
                    return self.inexact(args[0])
                if name in ("where",) and len(args) == 3:
                    return self.inexact(args[1]) or self.inexact(args[2])
                if name in ("maximum", "minimum", "fmax", "fmin", "add", "sub", "mul", "multiply",
                            "subtract", "pow", "remainder", "fmod") and len(args) == 2:
                    return self.inexact(args[0]) or self.inexact(args[1])
            return False
        builtin = self.info.builtin_name(node.func)
        if builtin is not None:
            if builtin == "float":
                return True
            if builtin == "abs" and len(args) == 1:
                return self.inexact(args[0])
            return False
        if isinstance(node.func, cst.Attribute):
            name = node.func.attr.value
            if name in _FLOAT_RESULT:
                return True
            if name in _SAME_AS_INPUT:
                return self.inexact(node.func.value)
            if name in ("add", "sub", "mul", "pow", "maximum", "minimum") and args:
                return self.inexact(node.func.value) or self.inexact(args[0])
            if name == "to" and args:
                dtype = self.info.qualname(args[0]) or ""
                return dtype.rpartition(".")[2] in _INEXACT_DTYPES | {"float", "double", "half", "cfloat",
                                                                     "cdouble"}
        return False


def fresh_name(base: str, loop: Loop) -> str:
    """`base`, or `base_1`, `base_2`, ... : a name the function does not use anywhere."""
    used = names_in(loop.function) if loop.function is not None else set()
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    return name


def nonempty(extent: str) -> str:
    """A test that the loop runs at least once: `len(x)` is falsy at 0, `n` may be negative."""
    if extent.startswith("len(") or ".shape[" in extent or ".size(" in extent:
        return extent
    return f"{extent} > 0"


def is_atom(text: str) -> bool:
    node = cst.parse_expression(text)
    return isinstance(node, (cst.Name, cst.Attribute, cst.Subscript)) and not node.lpar


def paren(text: str) -> str:
    node = cst.parse_expression(text)
    if isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float)) or node.lpar:
        return text
    return f"({text})"


def number_literal(node: cst.BaseExpression | None) -> int | float | None:
    """The value of `3`, `-1`, `0.0`, `+2.5`; None for anything else (incl. bool and complex)."""
    if isinstance(node, (cst.Integer, cst.Float)):
        return node.evaluated_value
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)) \
            and isinstance(node.expression, (cst.Integer, cst.Float)) and not node.lpar:
        value = node.expression.evaluated_value
        return -value if isinstance(node.operator, cst.Minus) else value
    return None


class _Loads(cst.CSTVisitor):
    """Names a subtree reads: not attribute names (`x.total`) nor keywords (`dtype=`)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        node.value.visit(self)
        return False

    def visit_Lambda(self, node) -> bool:
        return False


def loads(node: cst.CSTNode) -> set[str]:
    v = _Loads()
    node.visit(v)
    return v.names
