"""The reference function as text: its def node, its parameters and its hint comment.

Read with `ast` from the file (or the rewrite's source string); nothing is imported,
so an annotation like `Float[Tensor, "b c"]` is read without jaxtyping installed.
Lines are split where the parser splits them (\n, \r\n, \r), not where
`str.splitlines` does: a form feed or U+2028 in a comment or string would otherwise
shift every later line, and the hint comment would be read from the wrong one.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache

from .plan import Param
from .specs import parse_hint_comment

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
_NEWLINE = re.compile(r"\r\n|\r|\n")


def source_lines(text: str) -> tuple[str, ...]:
    """`text` split into the lines `ast` numbers."""
    return tuple(_NEWLINE.split(text))


# The planner asks for the lines of one file once per loop and once per function: split
# and search it once (a str caches its hash, so a repeated lookup costs nothing).
@lru_cache(maxsize=8)
def file_lines(text: str) -> tuple[str, ...]:
    """`source_lines(text)`, computed once per text."""
    return source_lines(text)


@lru_cache(maxsize=8)
def _hint_table(text: str) -> dict[int, dict[str, str]]:
    if "loopvec" not in text:
        return {}
    return {k: hints for k, line in enumerate(file_lines(text), 1)
            if "loopvec" in line and (hints := parse_hint_comment(line))}


def has_hint_comments(text: str) -> bool:
    """Whether any line of `text` holds a `# loopvec: shapes ...` hint (one search per text)."""
    return bool(_hint_table(text))


def hint_comments(text: str, first: int, last: int) -> dict[str, str]:
    """The `# loopvec: shapes ...` hints on lines `first`..`last` (1-based) of `text`, later
    lines winning: at the cost of those lines, however long the file."""
    table = _hint_table(text)
    out: dict[str, str] = {}
    if table:
        for k in range(first, last + 1):
            out.update(table.get(k, ()))
    return out


@dataclass(frozen=True)
class Definition:
    node: FunctionNode
    lines: tuple[str, ...]  # the text the node's line numbers refer to
    in_class: bool
    static: bool  # a staticmethod: no self to skip

    @property
    def skips_first(self) -> bool:
        return self.in_class and not self.static

    def hint_comment(self) -> dict[str, str]:
        """`# loopvec: shapes ...` on the def line, or any line of a multi-line signature."""
        first = self.node.lineno
        last = self.node.body[0].lineno - 1 if self.node.body[0].lineno > first else first
        out: dict[str, str] = {}
        for line in self.lines[first - 1 : last]:
            out.update(parse_hint_comment(line))
        return out

    def params(self) -> list[Param]:
        a = self.node.args
        positional = [*a.posonlyargs, *a.args]
        first_default = len(positional) - len(a.defaults)
        out = []
        for k, arg in enumerate(positional):
            default = a.defaults[k - first_default] if k >= first_default else None
            out.append(_param(arg, default))
        for arg, default in zip(a.kwonlyargs, a.kw_defaults):
            out.append(_param(arg, default))
        return out[1:] if self.skips_first else out


def _param(arg: ast.arg, default: ast.expr | None) -> Param:
    return Param(
        name=arg.arg,
        annotation=ast.unparse(arg.annotation) if arg.annotation is not None else None,
        has_default=default is not None,
        default_none=isinstance(default, ast.Constant) and default.value is None,
    )


def find_definition(text: str, qualname: str) -> Definition | None:
    """The def that `qualname` ("f", "Cls.method", "Outer.Inner.m") names in module `text`.

    When a name is bound twice, the last binding is the one the module keeps.
    """
    tree = ast.parse(text)
    body: list[ast.stmt] = tree.body
    parts = qualname.split(".")
    in_class = False
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if last else (ast.ClassDef,)
        found = [n for n in body if isinstance(n, kinds) and n.name == part]
        if not found:
            return None
        node = found[-1]
        if last:
            return Definition(node, source_lines(text), in_class, _is_static(node))
        body = node.body
        in_class = True
    return None


def parse_rewrite(source: str, in_class: bool) -> Definition:
    """The def in a rewrite's source text (dedented, decorators included)."""
    text = textwrap.dedent(source)
    tree = ast.parse(text)
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not defs:
        raise SyntaxError("the rewrite's source holds no function definition")
    node = defs[-1]
    return Definition(node, source_lines(text), in_class, _is_static(node))


def _is_static(node: FunctionNode) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
