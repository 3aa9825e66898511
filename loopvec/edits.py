"""Apply a rewrite's edits to a parsed module, keeping everything outside them as it was.

Statement edits replace or remove whole statements in their block; expression edits
replace one node. No comment is lost: every comment inside what an edit replaces (in the
loop body, on the loop's header line, on a removed `out = []`, inside a parenthesised
expression) moves, in source order, onto its own lines above the new code, at its
indentation; a trailing pragma (`# noqa`, `# type: ignore`, `# pragma: no cover`, ...)
stays trailing, on the last line of the code that replaces its line. Comments the new code
already holds (a body the rewrite keeps) are not repeated. The comments above a removed
statement move to the next one. New code is parsed, so it is syntactically valid and picks
up the block's indentation and the module's newline style.
"""

from __future__ import annotations

import io
import re
import textwrap
import tokenize
from collections import Counter

import libcst as cst

from .rewrite import Edit


_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float, cst.SimpleString)


class EditError(Exception):
    pass


# comments whose meaning is "this line": moved onto a line of their own they would silence
# nothing (`# noqa`) or, for `# pylint: disable`, everything after them
_PRAGMA = re.compile(r"#\s*(noqa\b|type:\s*ignore\b|pragma:|pyright:\s*ignore\b|pylint:\s*disable|fmt:\s*skip\b)",
                     re.IGNORECASE)

_TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore\b")


class _Comments(cst.CSTVisitor):
    """Every comment under a node, in source order, each with whether it trails code."""

    def __init__(self) -> None:
        self.found: list[tuple[str, bool]] = []

    def visit_EmptyLine(self, node: cst.EmptyLine) -> None:
        if node.comment is not None:
            self.found.append((node.comment.value, False))

    def visit_TrailingWhitespace(self, node: cst.TrailingWhitespace) -> None:
        if node.comment is not None:
            self.found.append((node.comment.value, True))


def comments_in(node: cst.CSTNode) -> list[tuple[str, bool]]:
    """(text, trailing) for each comment under `node`, in source order."""
    visitor = _Comments()
    node.visit(visitor)
    return visitor.found


def _inner_comments(node: cst.CSTNode) -> list[tuple[str, bool]]:
    """The comments of a statement but those on the lines above it (its leading lines)."""
    if isinstance(node, cst.BaseStatement):
        node = node.with_changes(leading_lines=())
    return comments_in(node)


def _own_line(text: str) -> cst.EmptyLine:
    return cst.EmptyLine(indent=True, whitespace=cst.SimpleWhitespace(""), comment=cst.Comment(text))


def _with_trailing(stmt: cst.BaseStatement, pragmas: list[str], header: bool) -> cst.BaseStatement | None:
    """`stmt` with `pragmas` trailing a line of its own (after the comment already there):
    its last line, or with `header` a compound statement's first; None where it has none."""
    if isinstance(stmt, (cst.SimpleStatementLine, cst.SimpleStatementSuite)):
        slot, field = stmt.trailing_whitespace, "trailing_whitespace"
    elif header and isinstance(getattr(stmt, "body", None), cst.IndentedBlock):
        slot, field = stmt.body.header, "header"
    else:
        return None  # a compound statement's last line is its body's
    texts = ([slot.comment.value] if slot.comment is not None else []) + pragmas
    # mypy reads `# type: ignore` only at the start of a line's comment; flake8 and ruff find
    # `# noqa` anywhere in it
    texts.sort(key=lambda t: not _TYPE_IGNORE.match(t))
    new_slot = slot.with_changes(whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment("  ".join(texts)))
    if field == "header":
        return stmt.with_changes(body=stmt.body.with_changes(header=new_slot))
    return stmt.with_changes(trailing_whitespace=new_slot)


def _carry(comments: list[tuple[str, bool]], new: list[cst.BaseStatement], host: bool = False,
           ) -> list[cst.BaseStatement]:
    """`new` (the code replacing a statement) with `comments` of the replaced code placed:
    pragmas trailing its last line, the others on their own lines above it. `host`: `new`
    is the statement holding a replaced expression (a pragma may trail its first line)."""
    kept = [(text, trailing and bool(_PRAGMA.search(text))) for text, trailing in comments]
    pragmas = [text for text, pragma in kept if pragma]
    last = _with_trailing(new[-1], pragmas, header=host) if pragmas else None
    if last is not None:
        new = [*new[:-1], last]
    # with no line of its own to trail, a pragma goes above with the others, never dropped
    own = [text for text, pragma in kept if not (pragma and last is not None)]
    if own:
        new = [new[0].with_changes(leading_lines=[*new[0].leading_lines, *map(_own_line, own)]), *new[1:]]
    return new


def _absent(comments: list[tuple[str, bool]], present: Counter) -> list[tuple[str, bool]]:
    """`comments` less those `present` counts (each used up once)."""
    out = []
    for text, trailing in comments:
        if present[text] > 0:
            present[text] -= 1
        else:
            out.append((text, trailing))
    return out


def _as_lines(pending: list[cst.EmptyLine | str]) -> list[cst.EmptyLine]:
    return [_own_line(p) if isinstance(p, str) else p for p in pending]


def _statements(text: str) -> list[cst.BaseStatement]:
    module = cst.parse_module(textwrap.dedent(text).strip("\n") + "\n")
    return list(module.body)


class _Applier(cst.CSTTransformer):
    def __init__(self, edits: list[Edit]) -> None:
        self.stmt_edits: dict[int, str | None] = {}
        self.expr_edits: dict[int, str] = {}
        for e in edits:
            if isinstance(e.target, (cst.BaseStatement, cst.BaseSmallStatement)):
                self.stmt_edits[id(e.target)] = e.code
            else:
                if e.code is None:
                    raise EditError("an expression edit needs code")
                self.expr_edits[id(e.target)] = e.code
        self.applied: set[int] = set()
        self.created: set[int] = set()  # parenthesised replacements, unwrapped where parens are noise
        self.statements: list[int] = []  # the statements around the node being visited
        # comments of replaced expressions, by the innermost statement holding them
        self.moved: dict[int, list[tuple[str, bool]]] = {}

    def on_visit(self, node) -> bool:
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            self.statements.append(id(node))
        return super().on_visit(node)

    def on_leave(self, original_node, updated_node):
        if self.statements and self.statements[-1] == id(original_node):
            self.statements.pop()
        if id(original_node) in self.expr_edits:
            self.applied.add(id(original_node))
            new = cst.parse_expression(self.expr_edits[id(original_node)])
            # a lifted expression may keep a comment of the one it replaces
            comments = _absent(comments_in(original_node), Counter(t for t, _ in comments_in(new)))
            if comments:
                # an expression edit replaces no line: its comments go above its statement
                self.moved.setdefault(self.statements[-1], []).extend(comments)
            if not isinstance(new, _ATOMS) and not new.lpar:
                # it stands where a call stood: keep the surrounding precedence
                new = new.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
                self.created.add(id(new))
            return new
        return super().on_leave(original_node, updated_node)

    def _unwrap(self, value):
        if value is not None and id(value) in self.created:
            return value.with_changes(lpar=[], rpar=[])
        return value

    def leave_Return(self, original_node, updated_node):
        return updated_node.with_changes(value=self._unwrap(updated_node.value))

    def leave_Assign(self, original_node, updated_node):
        return updated_node.with_changes(value=self._unwrap(updated_node.value))

    def leave_AnnAssign(self, original_node, updated_node):
        return updated_node.with_changes(value=self._unwrap(updated_node.value))

    def _block(self, original_body, updated_body) -> list:
        out: list = []
        # the comments of removed statements, for the next one: lines, and pragmas (text)
        # that trail the next statement's replacement when it has one
        pending: list[cst.EmptyLine | str] = []
        news = {id(orig): _statements(self.stmt_edits[id(orig)]) for orig in original_body
                if self.stmt_edits.get(id(orig)) is not None}
        # the comments the new code keeps (a kept body, a lifted expression's), wherever in
        # the block they came from: not repeated
        present = Counter(t for new in news.values() for stmt in new for t, _ in comments_in(stmt))
        for orig, upd in zip(original_body, updated_body):
            key = id(orig)
            if key not in self.stmt_edits:
                if key in self.moved:
                    upd = _carry(self.moved[key], [upd], host=True)[0]
                if pending:
                    upd = upd.with_changes(leading_lines=[*_as_lines(pending), *upd.leading_lines])
                    pending = []
                out.append(upd)
                continue
            self.applied.add(key)
            text = self.stmt_edits[key]
            above = list(getattr(upd, "leading_lines", ()))
            inner = _absent(_inner_comments(orig), present)
            if text is None:
                # keep the comments above and inside a removed statement, for the next one
                pending += [ln for ln in above if ln.comment is not None]
                pending += [t if trailing and _PRAGMA.search(t) else _own_line(t) for t, trailing in inner]
                continue
            carried = [(t, True) for t in pending if isinstance(t, str)]
            lines = [*(ln for ln in pending if isinstance(ln, cst.EmptyLine)), *above]
            pending = []
            new = news[key]
            new[0] = new[0].with_changes(leading_lines=lines)
            out.extend(_carry([*carried, *inner], new))
        if not out:
            out = [cst.SimpleStatementLine([cst.Pass()])]
        # comments of a removed last statement stay, as the block's footer
        return out, _as_lines(pending)

    def leave_IndentedBlock(self, original_node, updated_node):
        body, left = self._block(original_node.body, updated_node.body)
        return updated_node.with_changes(body=body, footer=[*left, *updated_node.footer])

    def leave_Module(self, original_node, updated_node):
        body, left = self._block(original_node.body, updated_node.body)
        return updated_node.with_changes(body=body, footer=[*left, *updated_node.footer])


def apply_edits(module: cst.Module, edits: list[Edit]) -> cst.Module:
    applier = _Applier(edits)
    new = module.visit(applier)
    missing = (set(applier.stmt_edits) | set(applier.expr_edits)) - applier.applied
    if missing:
        raise EditError("an edit did not find its target")
    return new


def _comment_tokens(text: str) -> list[str] | None:
    try:
        tokens = tokenize.generate_tokens(io.StringIO(text).readline)
        return [t.string for t in tokens if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):
        return None


def lost_comments(before: str, after: str) -> list[str]:
    """The comments of `before` that `after` does not hold, each counted once; pragmas that
    now share a line (`# type: ignore  # noqa`) count one by one. A text that does not
    tokenize (libcst parsed it, tokenize may not) loses none."""
    old, new = _comment_tokens(before), _comment_tokens(after)
    if old is None or new is None:
        return []
    lost = []
    for text in old:
        k = next((k for k, c in enumerate(new) if text in c), None)
        if k is None:
            lost.append(text)
        else:
            new[k] = new[k].replace(text, "", 1)
    return lost


def find_function(module: cst.Module, qualname: str) -> cst.FunctionDef | None:
    """The def for `f` or `Cls.method` (top level or one class deep)."""
    parts = qualname.split(".")
    body = module.body
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        found = None
        for stmt in body:
            if last and isinstance(stmt, cst.FunctionDef) and stmt.name.value == part:
                found = stmt
            elif not last and isinstance(stmt, cst.ClassDef) and stmt.name.value == part:
                found = stmt
        if found is None:
            return None
        if last:
            return found
        body = found.body.body if isinstance(found.body, cst.IndentedBlock) else ()
    return None


def function_source(module: cst.Module, qualname: str) -> str | None:
    node = find_function(module, qualname)
    if node is None:
        return None
    text = module.code_for_node(node.with_changes(leading_lines=()))
    return textwrap.dedent(text)
