"""Read-only traversal of libcst trees, without libcst's cost of rebuilding them.

`node.visit(visitor)` and `node.children` in libcst go through
`_visit_and_replace_children`, which constructs (and validates) a new copy of every node
it passes, even for a read-only `CSTVisitor`. Analysis visits the same function many
times per loop and per pattern, so on a large tree that copying was most of the time a
scan took. Here the children of a node are read straight from its fields, in the order
libcst visits them (recorded once per node type from libcst itself), and `visit` calls
the same `visit_<Type>` / `leave_<Type>` hooks in the same order as `CSTNode.visit` does
for a `CSTVisitor`. Transformers (which do replace nodes) keep using libcst's `visit`.

`tests/analysis/test_traverse.py` checks `children` against `CSTNode.children` on every
node of every fixture.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import libcst as cst
from libcst import CSTNode

_ORDER: dict[type, tuple[str, ...] | None] = {}


class _Recorder(cst.CSTVisitor):
    """Notes the fields `_visit_and_replace_children` visits, in order, without descending."""

    def __init__(self, node: CSTNode) -> None:
        self.node = node
        self.fields: list[str] = []

    def on_visit(self, node: CSTNode) -> bool:
        return False

    def on_leave(self, original_node: CSTNode) -> None:
        return None

    def on_visit_attribute(self, node: CSTNode, attribute: str) -> None:
        if node is self.node and attribute not in self.fields:
            self.fields.append(attribute)

    def on_leave_attribute(self, original_node: CSTNode, attribute: str) -> None:
        return None


def _order(node: CSTNode) -> tuple[str, ...] | None:
    """The fields libcst visits, in order; None for a type that visits a field only when it
    is set (an f-string part's `format_spec`): those keep libcst's own `children`."""
    kind = type(node)
    if kind in _ORDER:
        return _ORDER[kind]
    recorder = _Recorder(node)
    node._visit_and_replace_children(recorder)
    node_fields = {f.name for f in dataclasses.fields(node)}
    skipped = node_fields - set(recorder.fields)
    fields = _ORDER[kind] = None if any(_may_hold_node(kind, name) for name in skipped) else tuple(recorder.fields)
    return fields


def _may_hold_node(kind: type, name: str) -> bool:
    return "libcst." in str(kind.__dataclass_fields__[name].type)  # a node class, not str/bool/Literal


# Fields that hold only layout nodes (`_LAYOUT_TYPES`): whitespace, comments, parentheses,
# brackets, commas and the like. No analysis reads them, and they are most of a tree's
# nodes; skipping the fields saves looking at them (the test checks the two agree).
_LAYOUT = frozenset({"lpar", "rpar", "lbracket", "rbracket", "lbrace", "rbrace", "comma", "semicolon", "dot",
                     "colon", "equal", "leading_lines", "lines_after_decorators", "trailing_whitespace", "header",
                     "footer", "newline", "empty_lines", "first_line", "last_line", "comment", "whitespace"})
_CODE: dict[type, tuple[str, ...] | None] = {}


def _code_order(node: CSTNode) -> tuple[str, ...] | None:
    fields = _ORDER[type(node)] if type(node) in _ORDER else _order(node)
    code = _CODE[type(node)] = None if fields is None else tuple(
        f for f in fields if f not in _LAYOUT and not f.startswith("whitespace"))
    return code


def children(node: CSTNode, layout: bool = True) -> list[CSTNode]:
    """`node.children`: its child nodes in source order, sequences flattened; without
    `layout`, only the nodes that hold code (no whitespace, parentheses or commas)."""
    kind = type(node)
    if layout:
        fields = _ORDER[kind] if kind in _ORDER else _order(node)
    else:
        fields = _CODE[kind] if kind in _CODE else _code_order(node)
    if fields is None:
        return [c for c in node.children if layout or not _is_layout(c)]
    wanted = (1, 4) if layout else (1,)
    out: list[CSTNode] = []
    for name in fields:
        value = getattr(node, name)
        kind = _KIND.get(type(value))
        if kind is None:
            kind = _kind(type(value))
        if kind in wanted:
            out.append(value)
        elif kind == 2:
            out.extend(v for v in value if (_KIND.get(type(v)) or _kind(type(v))) in wanted)
    return out


# Node types that are layout: whitespace, comments and punctuation tokens.
_LAYOUT_TYPES = (cst.BaseParenthesizableWhitespace, cst.EmptyLine, cst.TrailingWhitespace, cst.Newline, cst.Comment,
                 cst.LeftParen, cst.RightParen, cst.LeftSquareBracket, cst.RightSquareBracket, cst.LeftCurlyBrace,
                 cst.RightCurlyBrace, cst.Comma, cst.Semicolon, cst.Colon, cst.Dot, cst.AssignEqual)
_KIND: dict[type, int] = {}  # 1: a code node, 4: a layout node, 2: a sequence (of nodes), 3: anything else


def _kind(t: type) -> int:
    # by concrete type: `isinstance(v, CSTNode)` goes through the ABC machinery on every call
    kind = _KIND[t] = (4 if issubclass(t, _LAYOUT_TYPES) else 1) if issubclass(t, CSTNode) else \
        2 if issubclass(t, (tuple, list)) else 3
    return kind


def _is_layout(node: CSTNode) -> bool:
    return (_KIND.get(type(node)) or _kind(type(node))) == 4


def walk(node: CSTNode):
    """`node` and every node below it that holds code (see `children`), depth first in
    source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current, False)))


_HOOKS: dict[tuple[type, type], tuple[Callable, Callable]] = {}


def visit(node: CSTNode, visitor: cst.CSTVisitor) -> None:
    """`node.visit(visitor)` for a read-only `CSTVisitor` that overrides at most
    `visit_<Type>`/`leave_<Type>` (or `on_visit`/`on_leave`), not the attribute hooks.
    Layout nodes (see `children`) are not visited. Iterative: any depth of nesting."""
    cls = type(visitor)
    custom = cls.on_visit is not cst.CSTVisitor.on_visit or cls.on_leave is not cst.CSTVisitor.on_leave
    stack: list[tuple[CSTNode, bool]] = [(node, False)]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        current, leaving = pop()
        if custom:
            if leaving:
                visitor.on_leave(current)
                continue
            push((current, True))
            if visitor.on_visit(current):
                extend([(c, False) for c in reversed(children(current, False))])
            continue
        key = (cls, type(current))
        hooks = _HOOKS.get(key)
        if hooks is None:
            name = type(current).__name__
            hooks = _HOOKS[key] = (getattr(cls, f"visit_{name}", None) or _none,
                                   getattr(cls, f"leave_{name}", None) or _none)
        if leaving:
            hooks[1](visitor, current)
            continue
        if hooks[1] is not _none:
            push((current, True))
        if hooks[0] is _none or hooks[0](visitor, current) is not False:
            extend([(c, False) for c in reversed(children(current, False))])


def _none(visitor, node) -> None:
    return None
