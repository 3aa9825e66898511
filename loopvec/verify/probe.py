"""The reach probe: did the replaced loop run, how often, and did the rewritten code run?

A proof counts only on inputs where the loop really ran (DESIGN.md, "Reach"): on an
input where the original returns early or takes another branch, original and rewrite
agree trivially and prove nothing. So both sides are compiled from instrumented copies
of their definitions, in the verifier's namespace copy only (never the user's file):

- the original: the iterable of the replaced loop (a `for` statement, or the first
  `for` of a comprehension) is wrapped in `__loopvec_probe__.count(...)`, which yields
  the same items and counts them per run of the loop;
- the rewrite: a `__loopvec_probe__.mark(k)` call goes right before each statement
  that holds a line of the rewritten code, so the mark runs exactly when that statement
  does.

Line numbers of the instrumented code are those of the text it came from, so
tracebacks and `left_at` name the user's lines.
"""

from __future__ import annotations

import ast
import copy
import sys
from typing import Any, Iterable, Iterator

PROBE_NAME = "__loopvec_probe__"  # ends in `__`: not mangled inside a class body


class ProbeError(Exception):
    """The definition has no loop (or no statement) where the probe was asked to go."""


class Probe:
    """Counts for one side; `reset()` before each call."""

    def __init__(self, marks: int = 0) -> None:
        self.marks = marks
        self.code = None
        self.reset()  # the instrumented function's code object, for `left_at`

    def reset(self) -> None:
        self.runs = []
        self.finished: list[bool] = []
        self.hit = set()
        self.left_at = None

    def count(self, iterable: Iterable[Any]) -> Iterator[Any]:
        run = len(self.runs)
        self.runs.append(0)
        self.finished.append(False)
        for item in iterable:
            self.runs[run] += 1
            yield item
        self.finished[run] = True

    @property
    def stopped_early(self) -> bool:
        """A run of the loop left before its items ran out (`break`, `return`): a search
        loop that finds its item at once has still run, on one iteration."""
        return any(n and not done for n, done in zip(self.runs, self.finished))

    def mark(self, k: int) -> None:
        self.hit.add(k)

    @property
    def iterations(self) -> int:
        """The most iterations one run of the loop made since the last reset."""
        return max(self.runs, default=0)

    @property
    def span_ran(self) -> bool:
        return len(self.hit) == self.marks

    def watch_return(self):
        """A context manager that records the line the function returned from."""
        return _ReturnWatch(self)


class _ReturnWatch:
    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.old = None

    def __enter__(self):
        code = self.probe.code
        probe = self.probe

        def profile(frame, event, arg):
            if event == "return" and frame.f_code is code:
                probe.left_at = frame.f_lineno

        self.old = sys.getprofile()
        if code is not None:
            sys.setprofile(profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self.old)
        return False


def _call(attr: str, args: list[ast.expr], where: ast.AST) -> ast.Call:
    func = ast.Attribute(value=ast.Name(PROBE_NAME, ast.Load()), attr=attr, ctx=ast.Load())
    node = ast.Call(func=func, args=args, keywords=[])
    for n in ast.walk(node):
        ast.copy_location(n, where)
        n.end_lineno, n.end_col_offset = where.lineno, where.col_offset
    return node


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def count_loop(fn: ast.FunctionDef | ast.AsyncFunctionDef, line: int, column: int) -> ast.AST:
    """A copy of `fn` whose loop at (line, column) counts its iterations.

    `column` is 1-based, in characters (the loop IR's); the AST's offsets are UTF-8 bytes,
    so a loop is matched by line first and by column only among several on one line.
    """
    fn = copy.deepcopy(fn)
    # an `async for` needs an async iterator: the counter is a plain generator, so such a
    # loop is not found, and the candidate is unverifiable rather than probed wrongly
    loops = [n for n in ast.walk(fn) if isinstance(n, (ast.For, *_COMPREHENSIONS))]
    found = [n for n in loops if n.lineno == line]
    if not found:
        # A comprehension fed to `torch.stack(...)` is placed at the call, which may
        # start lines above the comprehension: the first loop after that position.
        found = sorted((n for n in loops if (n.lineno, n.col_offset) >= (line, column - 1)),
                       key=lambda n: (n.lineno, n.col_offset))[:1]
    if not found:
        raise ProbeError(f"no loop at line {line}")
    exact = [n for n in found if n.col_offset == column - 1]
    node = (exact or sorted(found, key=lambda n: n.col_offset))[0]
    if isinstance(node, ast.For):
        node.iter = _call("count", [node.iter], node.iter)
    else:
        gen = node.generators[0]
        if gen.is_async:
            raise ProbeError(f"an async comprehension at line {line}")
        gen.iter = _call("count", [gen.iter], gen.iter)
    return fn


def mark_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef, lines: Iterable[int]) -> tuple[ast.AST, int]:
    """A copy of `fn` with a mark before the innermost statement holding each line, and
    how many distinct marks it has. A line of the def itself (its signature) needs none:
    it runs whenever the function is called."""
    fn = copy.deepcopy(fn)
    targets: list[ast.stmt] = []
    for line in lines:
        stmt = _innermost_statement(fn, line)
        if stmt is not None and stmt is not fn and all(stmt is not t for t in targets):
            targets.append(stmt)
    for k, stmt in enumerate(targets):
        body, index = _home(fn, stmt)
        body.insert(index, ast.Expr(_call("mark", [ast.Constant(k)], stmt), lineno=stmt.lineno,
                                    col_offset=stmt.col_offset, end_lineno=stmt.lineno,
                                    end_col_offset=stmt.col_offset))
    return fn, len(targets)


def _innermost_statement(fn: ast.AST, line: int) -> ast.stmt | None:
    # statements holding one line nest: the innermost starts last and ends first
    holding = [n for n in ast.walk(fn)
               if isinstance(n, ast.stmt) and n.lineno <= line <= (n.end_lineno or n.lineno)]
    return max(holding, key=lambda n: (n.lineno, -(n.end_lineno or n.lineno), n.col_offset), default=None)


def _home(fn: ast.AST, stmt: ast.stmt) -> tuple[list[ast.stmt], int]:
    """The statement list holding `stmt`, and its index there."""
    for node in ast.walk(fn):
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                for k, child in enumerate(block):
                    if child is stmt:
                        return block, k
        for case in getattr(node, "cases", ()) or ():
            for k, child in enumerate(case.body):
                if child is stmt:
                    return case.body, k
    raise ProbeError(f"statement at line {stmt.lineno} has no block")
