"""What the `reduction` pattern knows besides the loop IR and `loopvec.analysis.facts`.

Reductions change dtypes in ways elementwise maps do not (`x.sum()` of a uint8 tensor is
int64, a Python-int accumulator over uint8 elements wraps in uint8). So the pattern asks
whether an expression is certainly floating point (or complex), so a plain `.sum(0)`
keeps the accumulator's dtype; and it spells the code it emits with a few helpers.
"""

from __future__ import annotations

import libcst as cst

from loopvec.analysis.module import ModuleInfo
from loopvec.dtypes import CAST_METHODS, FLOATING_DTYPES, FLOATING_FUNCTIONS, FLOATING_REDUCTIONS, KEEP_FUNCTIONS, \
    PROMOTES_LIKE

# torch functions / tensor methods whose result is floating for any real input they accept
_FLOAT_RESULT = FLOATING_FUNCTIONS | FLOATING_REDUCTIONS | {
    name for name, op in PROMOTES_LIKE.items() if op is None or op is cst.Divide} | {
    method for method, dtype in CAST_METHODS.items() if dtype in FLOATING_DTYPES}
# results that keep the dtype of their (first) operand -- or, clamped to a float bound,
# become floating, which only makes the answer "not certainly floating" too cautious
_SAME_AS_INPUT = KEEP_FUNCTIONS | {"clamp", "clip", "clamp_min", "clamp_max"}


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
                return dtype.rpartition(".")[2] in FLOATING_DTYPES | {"float", "double", "half", "cfloat",
                                                                     "cdouble"}
        return False


def nonempty(extent: str) -> str:
    """A test that the loop runs at least once: `len(x)` is falsy at 0, `n` may be negative."""
    if extent.startswith("len(") or ".shape[" in extent or ".size(" in extent:
        return extent
    return f"{extent} > 0"


def is_atom(text: str) -> bool:
    node = cst.parse_expression(text)
    return isinstance(node, (cst.Name, cst.Attribute, cst.Subscript)) and not node.lpar
