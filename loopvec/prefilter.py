"""The prefilter: a cheap `ast` pass that picks the parts of a file libcst must see.

libcst, its position metadata and the loop IR cost ~50x what `ast.parse` costs, and most
code holds no loop any pattern could rewrite. So the file is parsed with `ast` first, and
only the *chunks* that may hold a candidate go through libcst: a top-level function, a
method (under `class Name:` lines, so it keeps its qualified name and its columns), or a
whole top-level statement otherwise. Positions are mapped back to the file's lines, the
IR records only the loops the test below keeps, and a rewrite of a chunk is spliced back
into the file's text. Files where that cannot be exact (an import to add, another indent
or newline style than the file's first, syntax `ast` cannot parse) take the whole-file path.

It is conservative: it never drops a loop a registered pattern could rewrite. Patterns see
only loops the IR records inside a function -- `for` statements and comprehensions fed to
`torch.stack/tensor/cat` -- and every pattern declines a `for` loop that
  * walks something other than `range/enumerate/zip(...)`, a name, an attribute or a
    subscript (`for k, v in d.items()`: no Domain);
  * returns, raises, yields or awaits in its body;
  * has `while`, `try`, `with` or `for ... else`, a `break` other than a flag's (`if c:
    found = True; break`), or a `continue` in a loop that appends nothing;
  * has a side effect the IR records (print, `obj.attr = ...`, `.add/.update/...`, in-place
    `x.add_()`, `del`, a nested def) -- except `hoist_transfer`, which keeps such a loop
    when it moves a loop element with `.to/.cuda/.cpu` (`x.cuda()`, `data[i].to(dev)`);
  * produces nothing: no subscript store, no augmented assignment, no value carried from
    one iteration to the next, no name bound in it that is read after it, and no list
    appended to that later reaches `torch.stack/tensor/cat`.
A pattern that rewrites loops outside these rules must extend `_produces`/`_has_domain`:
`tests/test_prefilter.py` plans every fixture both ways and fails when they differ.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from typing import Iterator

import libcst as cst
from libcst.metadata import CodePosition, CodeRange, MetadataWrapper, PositionProvider

from .analysis.facts import _SEQUENCE_ANNOTATIONS as SEQUENCE_ANNOTATIONS
from .analysis.loops import Loop, _LoopFinder
from .analysis.module import ModuleInfo, module_level_names
from .analysis import traverse
from .verify.specs import ast_dotted

COLLECTOR_NAMES = {"stack", "tensor", "cat", "concat"}
_COLLECTOR_QUALNAMES = {"torch.stack", "torch.tensor", "torch.cat", "torch.concat"}  # loops.COLLECTORS
# What the loop IR records as a side effect of a loop body (`loops._BodyScanner`); every
# pattern but `hoist_transfer` declines such a loop, and every pattern declines one that
# returns, raises, yields or awaits. `append` on a plain name is an output, not an effect.
MUTATING_METHODS = {"append", "extend", "insert", "pop", "remove", "clear", "update", "add", "setdefault",
                    "popitem", "discard", "write"}
EFFECT_BUILTINS = {"print", "open", "input", "exec", "eval", "setattr", "delattr", "next"}
TRANSFERS = {"to", "cuda", "cpu"}  # transfers of a loop element: `hoist_transfer` moves them out of the loop
_STOPS = (ast.Return, ast.Raise, ast.Yield, ast.YieldFrom, ast.Await)
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def split_lines(source: str) -> list[str]:
    """Lines with their endings, split the way the tokenizer counts them (not at \\f or \\x1c)."""
    return _LINE.findall(source)


@dataclass(frozen=True)
class Chunk:
    """Real lines `start`..`end` (1-based, inclusive), opened by `header` lines that re-create
    the classes around a method so it parses on its own."""

    start: int
    end: int
    header: tuple[str, ...] = ()
    # every `for` statement in the chunk, in source order: (line, column, end line, end column)
    fors: tuple[tuple[int, int, int, int], ...] = ()
    wanted: frozenset[int] = frozenset()  # indexes into `fors` of the loops a pattern could rewrite


@dataclass(frozen=True)
class Selection:
    chunks: tuple[Chunk, ...]
    loops: int  # loops in the whole file, counted as the loop IR counts them
    imports: tuple[str, ...]  # every import statement of the file, in order (for qualified names)
    names: frozenset[str] = frozenset()  # what the file binds at its top level (builtins it shadows)
    import_map: tuple[tuple[str, str], ...] = ()  # `imports` resolved: local name -> qualified name


# --------------------------------------------------------------------------- the ast test


def _is_inplace(name: str) -> bool:
    return name.endswith("_") and not name.endswith("__")


def _pos(node: ast.AST) -> tuple[int, int]:
    return node.lineno, node.col_offset


def _end(node: ast.AST) -> tuple[int, int]:
    return node.end_lineno, node.end_col_offset


def _produces(loop: ast.For | ast.AsyncFor, imports: dict[str, str]) -> bool | tuple[set[str], set[str]]:
    """True when a pattern could rewrite the loop, False when none could; otherwise the
    lists it appends to (it produces something when one is stacked after it) and the
    names it binds (or when one of them is read outside it).

    Mirrors what the loop IR records for a body (`loops._BodyScanner`): nested function
    and class bodies and lambdas are opaque; nested loops are part of the body."""
    first_store: dict[str, tuple[int, int]] = {}  # where the statement first binding a name ends
    first_load: dict[str, tuple[int, int]] = {}
    produces = effect = transfer = False
    appended: set[str] = set()
    loop_names = {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
    stack: list[tuple[ast.AST, ast.AST]] = [(n, n) for n in reversed([*loop.body, *loop.orelse])]

    def store(name: str, end: tuple[int, int]) -> None:
        if name not in first_store or end < first_store[name]:
            first_store[name] = end

    def sets_attribute(target: ast.AST) -> bool:
        if isinstance(target, ast.Attribute):
            return True
        if isinstance(target, (ast.Tuple, ast.List)):
            return any(sets_attribute(t) for t in target.elts)
        return isinstance(target, ast.Starred) and sets_attribute(target.value)

    while stack:
        node, stmt = stack.pop()
        if isinstance(node, _STOPS):
            return False
        if isinstance(node, ast.stmt):
            stmt = node
            if isinstance(node, (*_FUNCTIONS, ast.ClassDef, ast.Global, ast.Nonlocal, ast.Delete)):
                effect = True
                if not isinstance(node, (ast.Global, ast.Nonlocal, ast.Delete)):
                    continue
            elif isinstance(node, ast.AugAssign):
                produces = True
                effect = effect or sets_attribute(node.target)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                effect = effect or any(sets_attribute(t) for t in targets)
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            produces = True
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                attr = func.attr
                if attr in TRANSFERS and any(isinstance(n, ast.Name) and n.id in loop_names
                                             for n in ast.walk(func.value)):
                    transfer = True  # `x.cuda()`, `data[i].to(device)`: a loop element moves
                elif attr == "append" and isinstance(func.value, ast.Name) and len(node.args) + len(node.keywords) == 1:
                    appended.add(func.value.id)
                elif attr in MUTATING_METHODS or _is_inplace(attr):
                    effect = True
            elif isinstance(func, ast.Name) and func.id in EFFECT_BUILTINS and func.id not in imports:
                effect = True
        if isinstance(node, ast.comprehension):
            # its variables are its own: the IR reads them but never binds them
            children: list[ast.AST] = [node.iter, *node.ifs]
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            # an inner loop binds its target before its body runs
            for sub in ast.walk(node.target):
                if isinstance(sub, ast.Subscript):
                    produces = True
                if isinstance(sub, ast.Name):
                    store(sub.id, _end(node.target))
            children = [node.iter, *node.body, *node.orelse]
        else:
            if isinstance(node, ast.Name):
                if isinstance(node.ctx, ast.Store):
                    store(node.id, _end(stmt))
                else:
                    here = _pos(node)
                    if node.id not in first_load or here < first_load[node.id]:
                        first_load[node.id] = here
            children = list(ast.iter_child_nodes(node))
        stack.extend((child, stmt) for child in reversed(children))
    if transfer:
        return True  # hoist_transfer moves the transfer out and keeps the rest of the loop
    if effect:
        return False  # every other pattern declines a loop with a side effect
    if _stopped(loop, appended):
        return False
    # a name read before (or while) it is first bound carries a value between iterations
    if produces or any(name in first_load and first_load[name] < end for name, end in first_store.items()):
        return True
    return appended, set(first_store)


def _stopped(loop: ast.For | ast.AsyncFor, appended: set[str]) -> bool:
    """Control flow every pattern declines (`guards.STOPS`, the nests' any break or continue),
    beyond the two shapes that allow some: a flag set then `break` (`if x > t: found = True;
    break`, reduction) and `if cond: continue` before an append (boolean_mask)."""
    if loop.orelse:
        return True  # for ... else
    own: set[str] = set()
    flag = False
    todo: list[ast.stmt] = list(loop.body)
    while todo:
        stmt = todo.pop()
        if isinstance(stmt, (ast.While, ast.Try, ast.With, ast.AsyncWith)) or type(stmt).__name__ == "TryStar":
            return True
        if isinstance(stmt, ast.Break):
            own.add("break")
        elif isinstance(stmt, ast.Continue):
            own.add("continue")
        if isinstance(stmt, ast.If) and len(stmt.body) == 2 and isinstance(stmt.body[1], ast.Break) \
                and isinstance(stmt.body[0], ast.Assign) and isinstance(stmt.body[0].value, ast.Constant) \
                and isinstance(stmt.body[0].value.value, bool):
            flag = True
        if isinstance(stmt, (ast.For, ast.AsyncFor)):
            # an inner loop's break and continue are its own; its body still counts for the rest
            todo.extend(s for s in ast.walk(stmt) if isinstance(s, (ast.While, ast.Try, ast.With, ast.AsyncWith)))
            continue
        for name in ("body", "orelse", "finalbody"):
            todo.extend(getattr(stmt, name, ()) or ())
        for part in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ())):
            todo.extend(part.body)
    if "break" in own and ("continue" in own or not flag):
        return True
    return "continue" in own and not appended


_NUMBER_WORD = re.compile(r"\b(?:int|float|bool)\b")


def _walks_annotated_list(loop: ast.For | ast.AsyncFor, function: ast.AST) -> bool:
    """`for node in nodes` where the parameter is annotated a Python sequence of anything
    but numbers (`nodes: list[Node]`): every pattern declines it (`facts.sequence_problem`)
    except `sweep`, which walks lists of numbers or tuples of numbers."""
    if not isinstance(loop.iter, ast.Name):
        return False
    args = getattr(function, "args", None)
    if args is None:
        return False
    for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
        if arg is None or arg.arg != loop.iter.id or arg.annotation is None:
            continue
        annotation = arg.annotation
        head = annotation.value if isinstance(annotation, ast.Subscript) else annotation
        name = ast_dotted(head)
        if name is None or name.rsplit(".", 1)[-1] not in SEQUENCE_ANNOTATIONS:
            return False
        return not _NUMBER_WORD.search(ast.unparse(annotation))
    return False


def _imports(nodes: list[ast.stmt]) -> dict[str, str]:
    """Local name -> qualified name, as `ModuleInfo` resolves them (any depth, last wins)."""
    names: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif not node.level and node.module is not None:
            for alias in node.names:
                if alias.name == "*":
                    break
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _has_domain(iterable: ast.expr) -> bool:
    """Whether a pattern could describe what the loop walks (a superset of what
    `loopvec.analysis.domain.build_domain` accepts, plus `sweep`'s Python lists of numbers):
    `range/enumerate/zip(...)`, or a name, attribute or subscript. Every pattern declines
    other iterations: `for k, v in d.items()`, `for m in self.modules()`, `for x in [a, b]`."""
    if isinstance(iterable, ast.Call):
        return isinstance(iterable.func, ast.Name) and iterable.func.id in {"range", "enumerate", "zip"}
    return isinstance(iterable, (ast.Name, ast.Attribute, ast.Subscript))


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_LOOPS = (ast.For, ast.AsyncFor)


@dataclass
class _Unit:
    """A top-level statement or a class member: what becomes one chunk if it holds a candidate."""

    stmt: ast.stmt
    classes: tuple[ast.ClassDef, ...]
    loops: list[tuple[ast.For | ast.AsyncFor, ast.AST | None]]  # with the innermost enclosing def
    nodes: tuple[ast.AST, ...]  # where comprehensions may hide
    chunkable: bool = True  # False for a class's own decorators and bases


def _collect(body: list[ast.stmt], function: ast.AST | None, unit: _Unit, imports: list[ast.stmt]) -> None:
    """Statements only (expressions cannot hold loops or imports): cheap on any file."""
    for stmt in body:
        if isinstance(stmt, _LOOPS):
            unit.loops.append((stmt, function))
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            imports.append(stmt)
        inner = stmt if isinstance(stmt, _FUNCTIONS) else function
        for name in ("body", "orelse", "finalbody"):
            block = getattr(stmt, name, None)
            if isinstance(block, list):
                _collect(block, inner, unit, imports)
        for part in (*getattr(stmt, "handlers", ()), *getattr(stmt, "cases", ())):
            _collect(part.body, inner, unit, imports)


def _units(tree: ast.Module, imports: list[ast.stmt]) -> list[_Unit]:
    units: list[_Unit] = []

    def add(stmt: ast.stmt, classes: tuple[ast.ClassDef, ...]) -> None:
        if isinstance(stmt, ast.ClassDef):
            # the class's own expressions run outside any function
            own = (*stmt.decorator_list, *stmt.bases, *stmt.keywords)
            if own:
                units.append(_Unit(stmt, classes, [], own, chunkable=False))
            for inner in stmt.body:
                add(inner, (*classes, stmt))
            return
        unit = _Unit(stmt, classes, [], (stmt,))
        _collect([stmt], None, unit, imports)
        units.append(unit)

    for stmt in tree.body:
        add(stmt, ())
    return units


def _comprehension_calls(unit: _Unit):
    """(call, inside a function) for each call whose first argument is a comprehension."""
    stack = [(node, False) for node in unit.nodes]
    while stack:
        node, in_function = stack.pop()
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], (ast.ListComp, ast.GeneratorExp)):
            yield node, in_function
        inner = in_function or isinstance(node, _FUNCTIONS)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", ())
    return min([node.lineno, *(d.lineno for d in decorators)])


MAX_DEPTH = 3000  # libcst's native parser overflows the C stack near 8,000 nested expressions
_LONG = 2 * MAX_DEPTH  # a statement nested that deep is at least this many characters long


class TooDeep(Exception):
    """Nesting libcst would crash the process on (not an exception: a segfault); one line."""


def _parse(source: str) -> ast.Module | None:
    """The ast, or None when `ast` cannot parse it (libcst then says why, or parses newer syntax)."""
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        if "too many nested" in str(exc.msg):
            raise TooDeep("too deeply nested to parse: left unchanged") from None
        return None
    except (RecursionError, MemoryError):
        raise TooDeep("too deeply nested to parse: left unchanged") from None
    except ValueError:  # null bytes
        return None


def _check_depth(statements: list[ast.stmt], starts: list[int]) -> None:
    """Raise TooDeep for an expression nested deeper than MAX_DEPTH. Only the statements are
    walked; an expression is walked only when its text is long enough to be that deep."""
    todo: list[ast.AST] = list(statements)
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                todo.append(child)
            elif getattr(child, "end_lineno", None) is not None and \
                    starts[child.end_lineno - 1] - starts[child.lineno - 1] + child.end_col_offset >= _LONG:
                stack = [(child, 1)]
                while stack:
                    sub, depth = stack.pop()
                    if depth > MAX_DEPTH:
                        raise TooDeep(f"nested more than {MAX_DEPTH} levels deep at line {child.lineno}: "
                                      f"left unchanged")
                    stack.extend((c, depth + 1) for c in ast.iter_child_nodes(sub))


def _starts(lines: list[str]) -> list[int]:
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return starts


def select(source: str) -> Selection | None:
    """The chunks of `source` that may hold a candidate; None when `ast` cannot tell (it
    cannot parse the file: libcst then gives the real error, or parses newer syntax).
    Raises TooDeep for nesting that would crash libcst."""
    tree = _parse(source)
    if tree is None:
        return None
    lines = split_lines(source)
    starts = _starts(lines)
    import_nodes: list[ast.stmt] = []
    units = _units(tree, import_nodes)
    imports = _imports(import_nodes)
    collectors = {local for local, full in imports.items() if full in _COLLECTOR_QUALNAMES} | COLLECTOR_NAMES
    may_collect = re.compile(r"\b(?:%s)[\s\\]*\(" % "|".join(sorted(map(re.escape, collectors))))
    loads: dict[int, dict[str, list[tuple[int, int]]]] = {}
    count = 0
    chunks: list[Chunk] = []
    for unit in units:
        text = source[starts[_first_line(unit.nodes[0]) - 1]: starts[unit.nodes[-1].end_lineno]]
        count += len(unit.loops)
        fors = sorted(unit.loops, key=lambda lf: _pos(lf[0]))
        wanted = frozenset(k for k, (loop, function) in enumerate(fors)
                           if function is not None and _has_domain(loop.iter) and not _walks_annotated_list(loop, function)
                           and _loop_produces(loop, function, loads, imports, collectors))
        hit = bool(wanted)
        if "for" in text and may_collect.search(text):
            for call, in_function in _comprehension_calls(unit):
                name = ast_dotted(call.func)
                if name is None:
                    continue
                head, _, rest = name.partition(".")
                full = imports.get(head)
                counted = full is not None and (f"{full}.{rest}" if rest else full) in _COLLECTOR_QUALNAMES
                count += counted
                comp = call.args[0]
                if in_function and (counted or name.rsplit(".", 1)[-1] in COLLECTOR_NAMES) \
                        and len(comp.generators) == 1 and _has_domain(comp.generators[0].iter):
                    hit = True
        if hit and unit.chunkable:
            _check_depth([unit.stmt], starts)  # libcst parses what becomes a chunk
            header = tuple(_indent(lines[c.lineno - 1]) + f"class {c.name}:" + _ending(lines[c.lineno - 1])
                           for c in unit.classes)
            spans = tuple((f.lineno, f.col_offset, f.end_lineno, _column(lines[f.end_lineno - 1], f.end_col_offset))
                          for f, _ in fors)
            chunks.append(Chunk(_first_line(unit.stmt), unit.stmt.end_lineno, header, spans, wanted))
    if not chunks:
        return Selection((), count, ())
    import_nodes.sort(key=_pos)
    texts = tuple(_segment(lines, node) for node in import_nodes)
    return Selection(tuple(chunks), count, texts, module_level_names(tree), tuple(_imports(import_nodes).items()))


def _loop_produces(loop: ast.For | ast.AsyncFor, function: ast.AST, cache: dict, imports: dict,
                   collectors: set[str]) -> bool:
    found = _produces(loop, imports)
    if isinstance(found, bool):
        return found
    appended, bound = found
    facts = cache.get(id(function))
    if facts is None:
        facts = cache[id(function)] = _function_facts(function, collectors)
    loads, stacked = facts
    # a list appended to and then given to torch.stack/tensor/cat: patterns collect it; a
    # list that never reaches one stays a Python list, which no pattern produces
    if appended & stacked:
        return True
    # a name bound in the loop and read outside it (`found = True` ... `return found`)
    first, last = _pos(loop.body[0]), _end(loop)
    return any(not first <= p <= last for name in bound for p in loads.get(name, ()))


def _function_facts(function: ast.AST, collectors: set[str]) -> tuple[dict[str, list[tuple[int, int]]], set[str]]:
    """Where each name is read, and the names passed first to a collector (`torch.stack(out)`)."""
    loads: dict[str, list[tuple[int, int]]] = {}
    stacked: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            loads.setdefault(node.id, []).append(_pos(node))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Name):
            name = ast_dotted(node.func)
            if name is not None and name.rsplit(".", 1)[-1] in collectors:
                stacked.add(node.args[0].id)
    return loads, stacked


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The node's source text (`ast.get_source_segment` splits the whole file on every call)."""
    first, last = node.lineno - 1, node.end_lineno - 1
    head = lines[first].encode("utf-8")
    if first == last:
        return head[node.col_offset:node.end_col_offset].decode("utf-8")
    tail = lines[last].encode("utf-8")[:node.end_col_offset].decode("utf-8")
    return head[node.col_offset:].decode("utf-8") + "".join(lines[first + 1:last]) + tail


def _column(line: str, offset: int) -> int:
    """ast columns count UTF-8 bytes; libcst columns count characters."""
    return offset if line.isascii() else len(line.encode("utf-8")[:offset].decode("utf-8", "replace"))


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t\f"))]


def _ending(line: str) -> str:
    return line[len(line.rstrip("\r\n")):] or "\n"


# --------------------------------------------------------------------------- chunk modules


class ChunkInfo(ModuleInfo):
    """A `ModuleInfo` over one chunk. Positions report the file's real lines; `source` is the
    whole file (the IR reads `# loopvec: skip` comments from it by real line number); `imports`
    are the whole file's, so `th.sin` resolves as in a full parse.

    Positions of `for` statements come from `ast` (libcst's position pass costs twice its
    parse); any other node's position is computed by libcst on the first request."""

    offset: int = 0  # real line = chunk line + offset
    chunk: Chunk = Chunk(0, 0)
    lines: list[str] = []
    names: frozenset[str] = frozenset()

    def module_level_names(self) -> frozenset[str]:
        return self.names  # from the prefilter's parse of the whole file

    def local_text(self) -> str:
        if "_text" not in self.__dict__:
            self.__dict__["_text"] = chunk_source(self.lines, self.chunk)
        return self.__dict__["_text"]

    def position(self, node) -> CodeRange:
        r = self.positions.get(node)
        if r is None:
            self.positions.update(MetadataWrapper(self.module, unsafe_skip_copy=True).resolve(PositionProvider))
            r = self.positions[node]
        k = self.offset
        return CodeRange(CodePosition(r.start.line + k, r.start.column), CodePosition(r.end.line + k, r.end.column))

    def replaced_lines(self, chunk_code: str) -> list[str]:
        """The lines that take the place of the file's lines `chunk.start`..`chunk.end` when
        the chunk is rendered as `chunk_code` (its header dropped)."""
        new_lines = split_lines(chunk_code)[len(self.chunk.header):]
        old_last = self.lines[self.chunk.end - 1]
        if new_lines and old_last == old_last.rstrip("\r\n"):  # the file ended without a newline
            new_lines[-1] = new_lines[-1].rstrip("\r\n")
        return new_lines

    def window(self, chunk_code: str, context: int) -> tuple[int, list[str], list[str]]:
        """(k, old, new): the file's lines from index k (0-based) through `context` lines
        past the chunk, before and after the chunk is rendered as `chunk_code`. Outside
        them the two files are the same, so a diff of these with `context` lines of
        context is the whole files' diff, at the cost of the chunk's lines (building the
        whole new file for each candidate made planning quadratic in the file's size)."""
        start, end = self.chunk.start - 1, self.chunk.end
        k = max(0, start - context)
        after = self.lines[end: end + context]
        return k, self.lines[k:end] + after, self.lines[k:start] + self.replaced_lines(chunk_code) + after


class _ChunkLoopFinder(_LoopFinder):
    """The IR's loop finder, building records only for the loops the prefilter kept (the
    others cost as much and no pattern could rewrite them); it still tracks every loop's
    nesting, and places each `for` statement from its `ast` position."""

    def __init__(self, info: ChunkInfo) -> None:
        super().__init__(info)
        self.seen = 0

    def visit_For(self, node: cst.For) -> None:
        info = self.info
        line, column, end_line, end_column = info.chunk.fors[self.seen]
        k = info.offset
        info.positions[node] = CodeRange(CodePosition(line - k, column), CodePosition(end_line - k, end_column))
        self.seen += 1
        if self.seen - 1 in info.chunk.wanted:
            return super().visit_For(node)
        self.loop_stack.append(node)  # as `_LoopFinder.visit_For` does, without the record
        return None


class ChunkMismatch(Exception):
    """ast and libcst disagree about a chunk's loops, or the chunk would not render as the
    whole file does: parse the whole file instead."""


def find_loops(info: ChunkInfo) -> list[Loop]:
    finder = _ChunkLoopFinder(info)
    try:
        traverse.visit(info.module, finder)
    except IndexError:
        raise ChunkMismatch from None
    if finder.seen != len(info.chunk.fors):
        raise ChunkMismatch
    return finder.loops


def chunk_source(lines: list[str], chunk: Chunk) -> str:
    body = lines[chunk.start - 1: chunk.end]
    if body and body[-1] == body[-1].rstrip("\r\n"):
        body = [*body[:-1], body[-1] + _ending(lines[0])]
    return "".join(chunk.header) + "".join(body)


def _file_format(source: str) -> tuple[str, str]:
    """(default indent, default newline) as libcst detects them for the whole file: the first
    INDENT token and the first newline. Rewrites that open a new block indent it by this."""
    match = re.search(r"\r\n?|\n", source)
    newline = match.group(0) if match else "\n"
    indent = "    "
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.INDENT:
                indent = tok.string
                break
    except (tokenize.TokenError, SyntaxError):
        pass
    return indent, newline


def chunk_infos(path: str, source: str, selection: Selection) -> list[ChunkInfo] | None:
    """One `ChunkInfo` per chunk; None when a chunk would not render exactly as the whole
    file does (another default indent or newline), so the caller parses the whole file."""
    try:
        return list(iter_chunk_infos(path, source, selection))
    except ChunkMismatch:
        return None


def iter_chunk_infos(path: str, source: str, selection: Selection) -> Iterator[ChunkInfo]:
    """`chunk_infos` one at a time, each chunk parsed when it is asked for, so a chunk's
    tree can be dropped once it is planned (a large file's trees do not fit in memory
    together). Raises ChunkMismatch at a chunk that would not render exactly as the whole
    file does."""
    lines = split_lines(source)
    imports = dict(selection.import_map)
    indent, newline = _file_format(source)
    for chunk in selection.chunks:
        try:
            module = cst.parse_module(chunk_source(lines, chunk))
        except (cst.ParserSyntaxError, RecursionError):
            raise ChunkMismatch from None  # the whole-file parse reports it
        if module.default_indent != indent or module.default_newline != newline:
            raise ChunkMismatch
        info = ChunkInfo(path, source, module, {}, dict(imports))
        info.offset = chunk.start - 1 - len(chunk.header)
        info.chunk = chunk
        info.lines = lines
        info.names = selection.names
        yield info


def plan_chunks(path: str, source: str, pattern_names: tuple[str, ...] = (), whole: bool = False):
    """`engine.plan_source` over only the chunks that may hold a candidate (a `FilePlan`),
    or None when the whole file must be parsed instead (always, with `whole`: then only
    nesting that would crash libcst is refused)."""
    from . import engine

    try:
        if whole:
            return _depth_checked(source)
        selection = select(source)
    except TooDeep as exc:
        raise engine.SourceError(str(exc)) from None
    if selection is None:
        return None
    planned = _plan_selection(path, source, selection, pattern_names)
    if planned is None:
        try:
            return _depth_checked(source)  # select checked only the chunks' depth
        except TooDeep as exc:
            raise engine.SourceError(str(exc)) from None
    return planned


def _depth_checked(source: str) -> None:
    """None (parse the whole file), after refusing nesting that would crash libcst."""
    tree = _parse(source)
    if tree is not None:
        _check_depth(tree.body, _starts(split_lines(source)))
    return None


def _plan_selection(path: str, source: str, selection: Selection, pattern_names: tuple[str, ...]):
    import codemods

    from . import engine

    lines = source.count("\n") + 1
    if not selection.chunks:
        return engine.FilePlan(path, source, (), (), selection.loops, lines)
    patterns = codemods.select(pattern_names)
    planned = []
    try:
        for info in iter_chunk_infos(path, source, selection):
            _, rewrites, _ = engine.match_loops(info, patterns, find_loops(info))
            for rw in rewrites:
                if rw.imports:
                    return None  # an added import goes to the file's head, outside the chunk
                planned.append(engine.plan_rewrite(path, info, patterns, rw))
    except ChunkMismatch:
        return None
    return engine.FilePlan(path, source, tuple(planned), (), selection.loops, lines)
