"""Emitted expressions as node trees, parenthesised by precedence when they are rendered.

A rewrite that glues strings (`f"{v}.sum(1)"`) silently changes meaning when `v` is
`d * p` (`d * p.sum(1)`). Here every emitted expression is a libcst tree: operands are
parsed (`as_node`), composed with `binop`, `unary`, `compare`, `boolop`, `ifexp`,
`attr`, `call`, `method` and `subscript`, and rendered with `render`, which puts
parentheses around every child that binds looser than its place requires (libcst
prints a tree as it is given, parentheses included, and adds none of its own). A
tree's meaning is its structure; `render(tree)` parses back to that structure.
"""

from __future__ import annotations

from typing import Union

import libcst as cst

Expr = Union[str, cst.BaseExpression]

# Binding strength, loosest first (the Python grammar's levels).
TUPLE = -1  # a bare `a, b`: only whole or as a subscript
NAMED = 0  # `x := v`
TEST = 1  # lambda, `a if c else b`
OR = 2
AND = 3
NOT = 4
COMPARE = 5
BITOR = 6
BITXOR = 7
BITAND = 8
SHIFT = 9
ARITH = 10
TERM = 11
UNARY = 12
POWER = 13
AWAIT = 14
PRIMARY = 15  # names, literals, calls, attributes, subscripts, displays, anything in parentheses

_BINARY = {
    cst.BitOr: BITOR, cst.BitXor: BITXOR, cst.BitAnd: BITAND, cst.LeftShift: SHIFT, cst.RightShift: SHIFT,
    cst.Add: ARITH, cst.Subtract: ARITH, cst.Multiply: TERM, cst.Divide: TERM, cst.FloorDivide: TERM,
    cst.Modulo: TERM, cst.MatrixMultiply: TERM, cst.Power: POWER,
}
_BINARY_OPS = {
    "|": cst.BitOr, "^": cst.BitXor, "&": cst.BitAnd, "<<": cst.LeftShift, ">>": cst.RightShift, "+": cst.Add,
    "-": cst.Subtract, "*": cst.Multiply, "/": cst.Divide, "//": cst.FloorDivide, "%": cst.Modulo,
    "@": cst.MatrixMultiply, "**": cst.Power,
}
_UNARY_OPS = {"-": cst.Minus, "+": cst.Plus, "~": cst.BitInvert, "not": cst.Not}
_COMPARE_OPS = {
    "<": cst.LessThan, "<=": cst.LessThanEqual, ">": cst.GreaterThan, ">=": cst.GreaterThanEqual,
    "==": cst.Equal, "!=": cst.NotEqual, "in": cst.In, "not in": cst.NotIn, "is": cst.Is, "is not": cst.IsNot,
}
_BOOLEAN_OPS = {"and": cst.And, "or": cst.Or}


def precedence(node: cst.BaseExpression) -> int:
    """How tightly `node` binds where it stands (PRIMARY once it is parenthesised)."""
    if getattr(node, "lpar", None):
        return PRIMARY
    if isinstance(node, (cst.Tuple, cst.GeneratorExp)):
        return TUPLE  # bare: `f(x for x in y, 1)` and `x for x in y.sum()` do not parse
    if isinstance(node, (cst.NamedExpr, cst.Yield)):
        return NAMED
    if isinstance(node, (cst.Lambda, cst.IfExp)):
        return TEST
    if isinstance(node, cst.BooleanOperation):
        return OR if isinstance(node.operator, cst.Or) else AND
    if isinstance(node, cst.UnaryOperation):
        return NOT if isinstance(node.operator, cst.Not) else UNARY
    if isinstance(node, cst.Comparison):
        return COMPARE
    if isinstance(node, cst.BinaryOperation):
        return _BINARY[type(node.operator)]
    if isinstance(node, cst.Await):
        return AWAIT
    return PRIMARY


def parenthesize(node: cst.BaseExpression, least: int) -> cst.BaseExpression:
    """`node` in parentheses when it binds looser than `least`, the place it goes requires."""
    if precedence(node) >= least:
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _receiver(node: cst.BaseExpression) -> cst.BaseExpression:
    # `1.real` reads as the float `1.` followed by a name: an int receiver needs parentheses
    if isinstance(node, cst.Integer) and not node.lpar:
        return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return parenthesize(node, PRIMARY)


class _Parenthesize(cst.CSTTransformer):
    """Each child wrapped where it binds looser than its place in the parent requires."""

    def leave_BinaryOperation(self, original, updated):
        level = _BINARY[type(updated.operator)]
        if level == POWER:
            # `a ** b` is right-associative, and its right side may be a unary minus (`2 ** -x`)
            return updated.with_changes(left=parenthesize(updated.left, AWAIT),
                                        right=parenthesize(updated.right, UNARY))
        return updated.with_changes(left=parenthesize(updated.left, level),
                                    right=parenthesize(updated.right, level + 1))

    def leave_UnaryOperation(self, original, updated):
        least = NOT if isinstance(updated.operator, cst.Not) else UNARY
        return updated.with_changes(expression=parenthesize(updated.expression, least))

    def leave_Comparison(self, original, updated):
        return updated.with_changes(
            left=parenthesize(updated.left, BITOR),
            comparisons=[t.with_changes(comparator=parenthesize(t.comparator, BITOR)) for t in updated.comparisons])

    def leave_BooleanOperation(self, original, updated):
        level = OR if isinstance(updated.operator, cst.Or) else AND
        return updated.with_changes(left=parenthesize(updated.left, level),
                                    right=parenthesize(updated.right, level + 1))

    def leave_IfExp(self, original, updated):
        return updated.with_changes(body=parenthesize(updated.body, OR), test=parenthesize(updated.test, OR),
                                    orelse=parenthesize(updated.orelse, TEST))

    def leave_Lambda(self, original, updated):
        return updated.with_changes(body=parenthesize(updated.body, TEST))

    def leave_Await(self, original, updated):
        return updated.with_changes(expression=parenthesize(updated.expression, PRIMARY))

    def leave_Attribute(self, original, updated):
        return updated.with_changes(value=_receiver(updated.value))

    def leave_Subscript(self, original, updated):
        return updated.with_changes(value=parenthesize(updated.value, PRIMARY))

    def leave_Call(self, original, updated):
        args = list(updated.args)
        if len(args) == 1 and isinstance(args[0].value, cst.GeneratorExp) and not args[0].keyword:
            # sum(x for x in y): a lone generator needs no parentheses of its own
            return updated.with_changes(func=parenthesize(updated.func, PRIMARY))
        # f(*a or b) does not parse; f((a, b)) is one argument, f(a, b) two
        args = [a.with_changes(value=parenthesize(a.value, BITOR if a.star == "*" else TEST)) for a in args]
        return updated.with_changes(func=parenthesize(updated.func, PRIMARY), args=args)

    def leave_Index(self, original, updated):
        return updated.with_changes(value=parenthesize(updated.value, TEST))

    def leave_Slice(self, original, updated):
        return updated.with_changes(**{part: parenthesize(getattr(updated, part), TEST)
                                       for part in ("lower", "upper", "step") if getattr(updated, part) is not None})

    def leave_Element(self, original, updated):
        return updated.with_changes(value=parenthesize(updated.value, TEST))

    def leave_StarredElement(self, original, updated):
        return updated.with_changes(value=parenthesize(updated.value, BITOR))

    def leave_DictElement(self, original, updated):
        return updated.with_changes(key=parenthesize(updated.key, TEST), value=parenthesize(updated.value, TEST))

    def leave_StarredDictElement(self, original, updated):
        return updated.with_changes(value=parenthesize(updated.value, BITOR))


def parenthesize_tree(node: cst.BaseExpression) -> cst.BaseExpression:
    """The same tree with parentheses wherever a child binds looser than its place requires."""
    return node.visit(_Parenthesize())


_MODULE = cst.Module([])


def render(node: Expr) -> str:
    """The source of an expression tree; it parses back to the same tree."""
    if isinstance(node, str):
        node = as_node(node)
    return _MODULE.code_for_node(parenthesize_tree(node)).strip()


def as_node(text: Expr) -> cst.BaseExpression:
    """An operand: code is parsed (so `a + b` stays one operand), a node is kept."""
    return cst.parse_expression(text) if isinstance(text, str) else text


# --------------------------------------------------------------------------- composing
# Each builder parenthesises its own operands, so even `code(node)` of what it returns is right.

_RULES = _Parenthesize()


def _fixed(node):
    return getattr(_RULES, f"leave_{type(node).__name__}")(node, node)



def binop(left: Expr, op: str, right: Expr) -> cst.BinaryOperation:
    """`left op right` for op in + - * / // % ** @ & | ^ << >>."""
    return _fixed(cst.BinaryOperation(left=as_node(left), operator=_BINARY_OPS[op](), right=as_node(right)))


def unary(op: str, operand: Expr) -> cst.UnaryOperation:
    """`-x`, `+x`, `~x` or `not x`."""
    return _fixed(cst.UnaryOperation(operator=_UNARY_OPS[op](), expression=as_node(operand)))


def compare(left: Expr, *chain: tuple[str, Expr]) -> cst.Comparison:
    """`left op1 right1 op2 right2 ...`: `compare("a", ("<", "b"))`."""
    return _fixed(cst.Comparison(left=as_node(left), comparisons=[
        cst.ComparisonTarget(operator=_COMPARE_OPS[op](), comparator=as_node(right)) for op, right in chain]))


def boolop(left: Expr, op: str, right: Expr) -> cst.BooleanOperation:
    """`left and right` / `left or right`."""
    return _fixed(cst.BooleanOperation(left=as_node(left), operator=_BOOLEAN_OPS[op](), right=as_node(right)))


def ifexp(body: Expr, test: Expr, orelse: Expr) -> cst.IfExp:
    """`body if test else orelse`."""
    return _fixed(cst.IfExp(test=as_node(test), body=as_node(body), orelse=as_node(orelse)))


def attr(value: Expr, name: str) -> cst.Attribute:
    """`value.name`."""
    return _fixed(cst.Attribute(value=as_node(value), attr=cst.Name(name)))


def _arg(value: Expr, keyword: str | None = None, star: str = "") -> cst.Arg:
    if keyword is None:
        return cst.Arg(value=as_node(value), star=star)
    return cst.Arg(value=as_node(value), keyword=cst.Name(keyword),
                   equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                         whitespace_after=cst.SimpleWhitespace("")))


def call(func: Expr, *args: Expr, **kwargs: Expr) -> cst.Call:
    """`func(args..., key=value...)`."""
    return _fixed(cst.Call(func=as_node(func),
                           args=[*(_arg(a) for a in args), *(_arg(v, k) for k, v in kwargs.items())]))


def method(value: Expr, name: str, *args: Expr, **kwargs: Expr) -> cst.Call:
    """`value.name(args...)`: `method("d * p", "sum", "1")` is `(d * p).sum(1)`."""
    return call(attr(value, name), *args, **kwargs)


def subscript(value: Expr, *index: Expr | cst.BaseSlice) -> cst.Subscript:
    """`value[i, j]`; a slice part is given as a node (`slice_(None, "-1")`)."""
    elements = [cst.SubscriptElement(part if isinstance(part, cst.BaseSlice) else cst.Index(as_node(part)))
                for part in index]
    return _fixed(cst.Subscript(value=as_node(value), slice=elements))


def slice_(lower: Expr | None = None, upper: Expr | None = None, step: Expr | None = None) -> cst.Slice:
    """`lower:upper:step`, each part optional."""
    return cst.Slice(lower=None if lower is None else as_node(lower), upper=None if upper is None else as_node(upper),
                     step=None if step is None else as_node(step))


def operand(text: Expr) -> str:
    """Code ready to be a receiver (`.sum()`, `[...]`) or any operand: parenthesised unless primary."""
    node = as_node(text)
    return render(_receiver(node))
