"""The read-only traversal gives libcst's own children and visit order, without copying."""

from pathlib import Path

import libcst as cst
import pytest

from loopvec.analysis import traverse

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.glob("fixtures/*/*.py"), *ROOT.glob("loopvec/**/*.py"), *ROOT.glob("codemods/*.py")])

ODD_SYNTAX = '''
from . import (a as b, c)
from ..x import *
x = f"{a!r:>{width}} {b=}" + "s" 'more', rb'\\x00' b"more"
y = [*a, *b] if (c := d) else {**e}
z = lambda p, /, q=1, *r, s, **t: p
@dec(1)
@other
async def g(x: int = 1) -> "T":
    async with a as (b, c):
        async for i in aiter():
            await i
    try:
        pass
    except* ValueError as e:
        raise e from None
    match x:
        case [1, *rest] if rest: pass
        case {"k": v, **kw}: pass
        case Point(x=0) | None: pass
    global q; nonlocal_name = 1
    del a[1:2:3], b.c
    assert x, "msg"
    return (yield)
'''


def _all_nodes(module: cst.Module):
    stack = [module]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_children_match_libcst(path):
    module = cst.parse_module(path.read_text(encoding="utf-8"))
    _check_children(module)


def _check_children(module):
    for node in _all_nodes(module):
        assert [id(c) for c in traverse.children(node)] == [id(c) for c in node.children], type(node).__name__
        code = [id(c) for c in node.children if not traverse._is_layout(c)]
        assert [id(c) for c in traverse.children(node, layout=False)] == code, type(node).__name__


def test_children_of_odd_syntax_match_libcst():
    _check_children(cst.parse_module(ODD_SYNTAX))


class _Record(cst.CSTVisitor):
    """Every visit_/leave_ of a code node, in order; skips lambda bodies (returns False)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def on_visit(self, node) -> bool:
        if traverse._is_layout(node):
            return True  # libcst passes layout nodes; the fast walk skips them
        self.seen.append(("visit", type(node).__name__, id(node)))
        return not isinstance(node, cst.Lambda)

    def on_leave(self, original_node) -> None:
        if not traverse._is_layout(original_node):
            self.seen.append(("leave", type(original_node).__name__, id(original_node)))


class _Hooks(cst.CSTVisitor):
    """The usual style: named hooks, one of which prunes."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def visit_Name(self, node) -> None:
        self.seen.append(("name", id(node)))

    def visit_FunctionDef(self, node) -> bool:
        self.seen.append(("def", id(node)))
        return node.name.value != "g"

    def leave_Call(self, node) -> None:
        self.seen.append(("call", id(node)))


@pytest.mark.parametrize("source", [ODD_SYNTAX, (ROOT / "codemods" / "reduction.py").read_text(encoding="utf-8")],
                         ids=["odd", "reduction"])
def test_visit_calls_the_hooks_in_libcst_order(source):
    module = cst.parse_module(source)
    for kind in (_Hooks, _Record):
        slow, fast = kind(), kind()
        module.visit(slow)
        traverse.visit(module, fast)
        if kind is _Record:  # libcst also visits layout; compare the code nodes
            assert fast.seen == slow.seen
        else:
            assert fast.seen == slow.seen and fast.seen


def test_walk_yields_every_code_node_once_in_source_order():
    module = cst.parse_module(ODD_SYNTAX)
    expected = [n for n in _preorder(module) if not traverse._is_layout(n)]
    assert [id(n) for n in traverse.walk(module)] == [id(n) for n in expected]


def _preorder(node):
    yield node
    for child in node.children:
        yield from _preorder(child)
