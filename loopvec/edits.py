"""Apply a rewrite's edits to a parsed module, keeping everything outside them as it was.

Statement edits replace or remove whole statements in their block; the comments above a
removed statement move to the next one, so no comment outside the rewritten code is lost.
Expression edits replace one node. New code is parsed, so it is syntactically valid and
picks up the block's indentation and the module's newline style.
"""

from __future__ import annotations

import textwrap

import libcst as cst

from .rewrite import Edit


_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float, cst.SimpleString)


class EditError(Exception):
    pass


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

    def on_leave(self, original_node, updated_node):
        if id(original_node) in self.expr_edits:
            self.applied.add(id(original_node))
            new = cst.parse_expression(self.expr_edits[id(original_node)])
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
        pending_lines: list[cst.EmptyLine] = []
        for orig, upd in zip(original_body, updated_body):
            key = id(orig)
            if key not in self.stmt_edits:
                if pending_lines:
                    upd = upd.with_changes(leading_lines=[*pending_lines, *upd.leading_lines])
                    pending_lines = []
                out.append(upd)
                continue
            self.applied.add(key)
            text = self.stmt_edits[key]
            lines = [*pending_lines, *getattr(upd, "leading_lines", ())]
            pending_lines = []
            if text is None:
                # keep the comments that sat above a removed statement
                pending_lines = [ln for ln in lines if ln.comment is not None]
                continue
            new = _statements(text)
            new[0] = new[0].with_changes(leading_lines=lines)
            out.extend(new)
        if not out:
            out = [cst.SimpleStatementLine([cst.Pass()])]
        # comments above a removed last statement stay, as the block's footer
        return out, pending_lines

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
