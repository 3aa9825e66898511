"""exprs: an emitted expression parses back to the tree it was built as.

Examples first (the misplaced parentheses that once reached a rewrite), then a property:
random trees of names, numbers, operators, comparisons, and/or, conditionals, calls,
attributes and subscripts, built as libcst nodes with no parentheses at all, rendered,
and parsed by Python: the parsed tree must equal the same tree built directly as `ast`.
"""

from __future__ import annotations

import ast

import libcst as cst
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopvec import exprs
from loopvec.exprs import attr, binop, call, compare, ifexp, method, render, slice_, subscript, unary


@pytest.mark.parametrize("built, text", [
    (method("d * p[:, :-1]", "sum", "1"), "(d * p[:, :-1]).sum(1)"),
    (unary("-", method("d * p[:, :-1]", "sum", "1")), "-(d * p[:, :-1]).sum(1)"),
    (binop("p[:, 1:] - p[:, :-1]", "**", "2"), "(p[:, 1:] - p[:, :-1]) ** 2"),
    (binop(binop("a", "+", "b"), "*", "c"), "(a + b) * c"),
    (binop("a", "-", binop("b", "-", "c")), "a - (b - c)"),
    (binop(binop("a", "**", "b"), "**", "c"), "(a ** b) ** c"),
    (binop("a", "**", binop("b", "**", "c")), "a ** b ** c"),
    (binop(unary("-", "a"), "**", "2"), "(-a) ** 2"),
    (unary("-", binop("a", "**", "2")), "-a ** 2"),
    (binop("2", "**", unary("-", "x")), "2 ** -x"),
    (ifexp(ifexp("a", "b", "c"), "d", "e"), "(a if b else c) if d else e"),
    (ifexp("a", "b", ifexp("c", "d", "e")), "a if b else c if d else e"),
    (compare(compare("a", ("<", "b")), ("==", "c")), "(a < b) == c"),
    (unary("not", compare("a", ("<", "b"))), "not a < b"),
    (unary("~", compare("a", ("<", "b"))), "~(a < b)"),
    (attr("1", "real"), "(1).real"),
    (attr("1.5", "real"), "1.5.real"),
    (subscript("x + y", slice_(None, "-1"), "i"), "(x + y)[:-1, i]"),
    (call("f", "a, b", k="x if c else y"), "f((a, b), k=x if c else y)"),
    (method(cst.parse_expression("f(x for x in y)").args[0].value, "count"), "(x for x in y).count()"),
], ids=["sum of a product", "minus a sum of a product", "square of a difference", "sum times",
        "difference of a difference", "power of a power", "right-nested power", "power of a negation",
        "negated power", "negative exponent", "conditional as a body", "conditional as an else",
        "comparison of a comparison", "not of a comparison", "bitwise not of a comparison",
        "attribute of an int", "attribute of a float", "slice of a sum", "tuple argument",
        "method of a generator"])
def test_parenthesised_where_the_tree_needs_it(built, text):
    assert render(built) == text


def test_operand_is_ready_for_a_method():
    assert [exprs.operand(t) for t in ("x", "x[0]", "f(x)", "-x", "a + b", "1")] == [
        "x", "x[0]", "f(x)", "(-x)", "(a + b)", "(1)"]


@pytest.mark.parametrize("text", [
    "a - b - c", "a ** -b ** c", "-a ** b", "not a == b", "a if b else c if d else e", "lambda: a if b else c",
    "sum(x for x in y)", "f(*a, **b, k=c)", "x[a:b, ..., None]", "[*a, b]", "{**a, 'k': b}", "(a, b)",
    "(yield)", "await a", "a < b < c", "a and b or not c",
], ids=str)
def test_parsed_code_renders_unchanged(text):
    assert render(text) == text


def test_existing_parentheses_are_kept():
    assert render("(a + b) * c") == "(a + b) * c"
    assert render(method(cst.parse_expression("(a)"), "sum")) == "(a).sum()"


# --------------------------------------------------------------------------- property

_BIN = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div, "//": ast.FloorDiv, "%": ast.Mod,
        "**": ast.Pow, "@": ast.MatMult, "&": ast.BitAnd, "|": ast.BitOr, "^": ast.BitXor, "<<": ast.LShift,
        ">>": ast.RShift}
_UN = {"-": ast.USub, "+": ast.UAdd, "~": ast.Invert, "not": ast.Not}
_CMP = {"<": ast.Lt, "<=": ast.LtE, ">": ast.Gt, ">=": ast.GtE, "==": ast.Eq, "!=": ast.NotEq, "in": ast.In,
        "not in": ast.NotIn, "is": ast.Is, "is not": ast.IsNot}
_LOAD = ast.Load()

# a tree is (libcst node without parentheses, the ast Python should parse its rendering to)
_names = st.sampled_from(["a", "b", "x", "y"]).map(lambda n: (cst.Name(n), ast.Name(n, _LOAD)))
_ints = st.integers(0, 20).map(lambda k: (cst.Integer(str(k)), ast.Constant(k)))
_floats = st.sampled_from([0.5, 2.5]).map(lambda f: (cst.Float(repr(f)), ast.Constant(f)))


def _unary(op, t):
    return unary(op, t[0]), ast.UnaryOp(_UN[op](), t[1])


def _binary(op, a, b):
    return binop(a[0], op, b[0]), ast.BinOp(a[1], _BIN[op](), b[1])


def _compare(first, rest):
    return (compare(first[0], *[(op, t[0]) for op, t in rest]),
            ast.Compare(first[1], [_CMP[op]() for op, _ in rest], [t[1] for _, t in rest]))


def _boolean(op, a, b):
    kind = ast.And if op == "and" else ast.Or
    left = a[1]
    # `a and b and c` is one BoolOp in Python's tree, whichever way the pairs nest on the left
    values = [*left.values, b[1]] if isinstance(left, ast.BoolOp) and isinstance(left.op, kind) else [left, b[1]]
    return exprs.boolop(a[0], op, b[0]), ast.BoolOp(kind(), values)


def _ifexp(body, test, orelse):
    return ifexp(body[0], test[0], orelse[0]), ast.IfExp(test[1], body[1], orelse[1])


def _attribute(t, name):
    return attr(t[0], name), ast.Attribute(t[1], name, _LOAD)


def _call(func, args, kw):
    keywords = [ast.keyword("k", kw[1])] if kw is not None else []
    extra = {"k": kw[0]} if kw is not None else {}
    return call(func[0], *[a[0] for a in args], **extra), ast.Call(func[1], [a[1] for a in args], keywords)


def _slice(lower, upper):
    return (slice_(lower and lower[0], upper and upper[0]),
            ast.Slice(lower and lower[1], upper and upper[1], None))


def _subscript(value, parts):
    # parts: ("index", tree) or ("slice", (cst.Slice, ast.Slice))
    nodes = [p[1][0] for p in parts]
    trees = [p[1][1] for p in parts]
    index = trees[0] if len(trees) == 1 else ast.Tuple(trees, _LOAD)
    return subscript(value[0], *nodes), ast.Subscript(value[1], index, _LOAD)


def _extend(children):
    optional = st.none() | children
    part = st.tuples(st.just("index"), children) | st.tuples(st.just("slice"), st.builds(_slice, optional, optional))
    return st.one_of(
        st.builds(_unary, st.sampled_from(list(_UN)), children),
        st.builds(_binary, st.sampled_from(list(_BIN)), children, children),
        st.builds(_compare, children, st.lists(st.tuples(st.sampled_from(list(_CMP)), children), min_size=1,
                                               max_size=2)),
        st.builds(_boolean, st.sampled_from(["and", "or"]), children, children),
        st.builds(_ifexp, children, children, children),
        st.builds(_attribute, children, st.sampled_from(["real", "T"])),
        st.builds(_call, children, st.lists(children, max_size=2), optional),
        st.builds(_subscript, children, st.lists(part, min_size=1, max_size=2)),
    )


TREES = st.recursive(_names | _ints | _floats, _extend, max_leaves=12)


@settings(max_examples=200, deadline=None, database=None)
@given(TREES)
def test_rendered_code_parses_back_to_the_same_tree(tree):
    node, expected = tree
    want = ast.dump(expected)
    # the builders parenthesise as they compose, so plain libcst printing is right too
    built = cst.Module([]).code_for_node(node)
    assert ast.dump(ast.parse(built, mode="eval").body) == want, built
    # and render puts back whatever a tree composed without parentheses needs
    bare = render(node.visit(_NoParens()))
    assert ast.dump(ast.parse(bare, mode="eval").body) == want, bare


class _NoParens(cst.CSTTransformer):
    def on_leave(self, original, updated):
        if isinstance(updated, cst.BaseExpression) and getattr(updated, "lpar", None):
            return updated.with_changes(lpar=[], rpar=[])
        return updated
