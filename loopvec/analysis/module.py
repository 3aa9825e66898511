"""One parsed module: the CST, positions, and qualified names of dotted references.

Qualified names come from the module's imports (`import torch as th` makes `th.sin`
resolve to `torch.sin`; `from torch.nn import functional as F` makes `F.relu` resolve to
`torch.nn.functional.relu`), so patterns match by what a name *is*, never by spelling.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider
from . import traverse
from .memo import per_node

_EMPTY = cst.Module(body=[])


def code(node: cst.CSTNode) -> str:
    """Source text of a node, without its leading/trailing whitespace."""
    return _EMPTY.code_for_node(node).strip()


def dotted(node: cst.BaseExpression) -> str | None:
    """`a.b.c` for a chain of Names/Attributes, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        head = dotted(node.value)
        return None if head is None else f"{head}.{node.attr.value}"
    return None


class VariableVisitor(cst.CSTVisitor):
    """Visits the names of variables only: `x.total` and `f(dtype=...)` spell `total` and
    `dtype`, which are not names in scope. Subclasses say what to do in `visit_Name`."""

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        traverse.visit(node.value, self)
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        traverse.visit(node.value, self)
        return False


class _Names(VariableVisitor):
    """Names a subtree reads or binds, skipping nested function bodies and lambdas."""

    def __init__(self, root: cst.CSTNode | None = None) -> None:
        self.loads: list[str] = []
        self.root = root

    def visit_FunctionDef(self, node) -> bool:
        return node is self.root  # a function's own body counts; nested defs do not

    def visit_Lambda(self, node) -> bool:
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.loads.append(node.value)


def names_in(node: cst.CSTNode) -> set[str]:
    """Every variable name in a subtree, read or bound (not attribute names, not keywords),
    outside nested function bodies and lambdas."""
    v = _Names(node)
    traverse.visit(node, v)
    return set(v.loads)


def number_value(node: cst.BaseExpression | None) -> int | float | None:
    """The value of a number literal: `3`, `-1`, `0.0`, `+2.5`; None for anything else
    (bools, complex numbers, names)."""
    if isinstance(node, (cst.Integer, cst.Float)):
        return node.evaluated_value
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.Minus, cst.Plus)) \
            and isinstance(node.expression, (cst.Integer, cst.Float)):
        value = node.expression.evaluated_value
        return -value if isinstance(node.operator, cst.Minus) else value
    return None


def only(stmt: cst.BaseStatement) -> cst.BaseSmallStatement | None:
    """The small statement of a line holding exactly one (`out.append(v)`), else None."""
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        return stmt.body[0]
    return None


def walk(node: cst.CSTNode):
    """`node` and every node below it, depth first."""
    return traverse.walk(node)


def used_names(function: cst.FunctionDef) -> set[str]:
    """Every name spelled anywhere in a function: parameters, its own name, locals, the
    globals it reads, attribute and keyword names, nested functions and lambdas. A new
    local named otherwise shadows nothing (a closure may read a global `keep`)."""
    return set(_spelled(function))


@per_node
def _spelled(function: cst.FunctionDef) -> frozenset[str]:
    return frozenset(n.value for n in walk(function) if isinstance(n, cst.Name))


def fresh_name(bases: str | tuple[str, ...], taken: set[str], first: int = 1, sep: str = "_") -> str:
    """The first of `bases` not in `taken`, else the first numbered one: with the defaults
    `keep`, `mask`, `keep_1`, `mask_1`, ...; with `first=2, sep=""` `t`, `t2`, `t3`, ...
    The name is added to `taken`."""
    bases = (bases,) if isinstance(bases, str) else bases
    for k in itertools.chain([None], itertools.count(first)):
        for base in bases:
            name = base if k is None else f"{base}{sep}{k}"
            if name not in taken:
                taken.add(name)
                return name
    raise AssertionError("unreachable")


def top_statement_index(function: cst.FunctionDef, target: cst.CSTNode) -> int | None:
    """The index in `function.body` of the statement holding `target` (None: not in it).
    One walk of the function answers every node of it: the loops of one function ask in turn."""
    return _statement_index(function).get(id(target))


@per_node
def _statement_index(function: cst.FunctionDef) -> dict[int, int]:
    index: dict[int, int] = {}
    body = function.body.body if isinstance(function.body, cst.IndentedBlock) else ()
    for k, stmt in enumerate(body):
        for node in traverse.walk(stmt):
            index[id(node)] = k
    return index


def contains(node: cst.CSTNode, target: cst.CSTNode) -> bool:
    """`target` is `node` or one of its descendants (by identity)."""
    return any(n is target for n in traverse.walk(node))


def parameters(function: cst.FunctionDef) -> list[cst.Param]:
    """A function's named parameters, in order (not `*args`, `**kwargs`)."""
    p = function.params
    return [*p.posonly_params, *p.params, *p.kwonly_params]


def target_names(target: cst.BaseExpression) -> list[str]:
    """The names an assignment target binds: `a`, `a, (b, *c)`; none for `x[i]` or `x.a`."""
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for el in target.elements for n in target_names(el.value)]
    if isinstance(target, cst.StarredElement):
        return target_names(target.value)
    return []


class _Bound(cst.CSTVisitor):
    """Every name a subtree binds, at any depth; a nested def or class binds only its name,
    unless `nested`, when what its body binds counts too (a `nonlocal x` in a closure)."""

    def __init__(self, nested: bool) -> None:
        self.names: set[str] = set()
        self.nested = nested

    def _add(self, target: cst.BaseExpression) -> None:
        self.names.update(target_names(target))

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._add(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._add(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._add(node.target)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._add(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._add(node.target)

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self._add(node.target)

    def visit_AsName(self, node: cst.AsName) -> None:
        self._add(node.name)

    def visit_ImportAlias(self, node: cst.ImportAlias) -> None:
        if node.asname is None:
            self.names.add((dotted(node.name) or "").split(".")[0])

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.names.add(node.name.value)
        return self.nested

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.names.add(node.name.value)
        return self.nested

    def visit_Global(self, node: cst.Global) -> None:
        self.names.update(n.name.value for n in node.names)

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        self.names.update(n.name.value for n in node.names)


def bound_names(node: cst.CSTNode, nested: bool = False) -> set[str]:
    """Every name `node` binds: assignment and loop targets, `as` names, imports, defs.
    `node` may be a target expression itself (`a, b`)."""
    v = _Bound(nested)
    if isinstance(node, cst.BaseExpression):
        v._add(node)
    traverse.visit(node, v)
    return v.names


@lru_cache(maxsize=8)
def _module_level_names(source: str) -> frozenset[str]:
    """Names the module binds at its top level (defs, classes, assignments, imports), read
    with `ast` from the whole file's text: a chunk of the file (see `loopvec.prefilter`)
    must shadow builtins exactly as the whole file does."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    return module_level_names(tree)


def module_level_names(tree: ast.Module) -> frozenset[str]:
    """`_module_level_names` of a parsed file."""
    out: set[str] = set()
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        stmt = todo.pop()
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(stmt.name)
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                out.add(node.id)
            elif isinstance(node, ast.alias):
                out.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(node.name)  # under `if TYPE_CHECKING:`, `try:` ...
    return frozenset(out)


class _LocalShadows(cst.CSTVisitor):
    """For every call of a builtin's name inside a function: the names the enclosing
    functions bind (parameters, assignments), which shadow the builtin there."""

    def __init__(self) -> None:
        self.stack: list[frozenset[str]] = []
        self.shadows: dict[int, frozenset[str]] = {}

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        names = {p.name.value for p in parameters(node)}
        for star in (node.params.star_arg, node.params.star_kwarg):
            if isinstance(star, cst.Param):
                names.add(star.name.value)
        names |= bound_names(node.body)
        outer = self.stack[-1] if self.stack else frozenset()
        self.stack.append(outer | names)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.stack.pop()

    def visit_Lambda(self, node: cst.Lambda) -> None:
        # `lambda max: max(x)` calls its argument
        params = node.params
        names = {p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)}
        for star in (params.star_arg, params.star_kwarg):
            if isinstance(star, cst.Param):
                names.add(star.name.value)
        self.stack.append((self.stack[-1] if self.stack else frozenset()) | names)

    def leave_Lambda(self, original_node: cst.Lambda) -> None:
        self.stack.pop()

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if self.stack and isinstance(func, cst.Name) and func.value in _BUILTINS:
            self.shadows[id(func)] = self.stack[-1]


_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_"))


def _alias_name(alias: cst.ImportAlias) -> str:
    return dotted(alias.name) or ""


class _ImportCollector(cst.CSTVisitor):
    """Every import in the module (any depth): local name -> qualified name."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = _alias_name(alias)
            if alias.asname is not None:
                self.names[dotted(alias.asname.name) or ""] = full
            else:
                # `import torch.nn.functional` binds `torch`
                top = full.split(".")[0]
                self.names[top] = top

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
            return
        base = dotted(node.module) or ""
        for alias in node.names:
            name = _alias_name(alias)
            local = dotted(alias.asname.name) if alias.asname is not None else name
            self.names[local or name] = f"{base}.{name}"


@dataclass
class ModuleInfo:
    path: str
    source: str
    module: cst.Module
    positions: dict = field(repr=False)
    imports: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, path: str, source: str) -> ModuleInfo:
        wrapper = MetadataWrapper(cst.parse_module(source), unsafe_skip_copy=True)
        positions = wrapper.resolve(PositionProvider)
        collector = _ImportCollector()
        traverse.visit(wrapper.module, collector)
        return cls(path, source, wrapper.module, dict(positions), collector.names)

    def module_level_names(self) -> frozenset[str]:
        """Names the whole file binds at its top level (see `_module_level_names`)."""
        return _module_level_names(self.source)

    def position(self, node: cst.CSTNode) -> CodeRange:
        return self.positions[node]

    def qualname(self, node: cst.BaseExpression) -> str | None:
        """`torch.sin` for `th.sin` under `import torch as th`; None if not an imported name."""
        text = dotted(node)
        if text is None:
            return None
        head, _, rest = text.partition(".")
        if head not in self.imports:
            return None
        full = self.imports[head]
        return f"{full}.{rest}" if rest else full

    def builtin_name(self, node: cst.BaseExpression) -> str | None:
        """`len`, `float`, ... when the name is a Python builtin that nothing shadows: no
        import, no module-level def or assignment, no parameter or local of an enclosing
        function (`def clip(x, max)` calls its argument, not the builtin)."""
        if not isinstance(node, cst.Name):
            return None
        name = node.value
        if name not in _BUILTINS or name in self.imports or name in self.module_level_names():
            return None
        if not self._may_rebind(name):
            return name
        if "_shadows" not in self.__dict__:
            v = _LocalShadows()
            traverse.visit(self.module, v)
            self.__dict__["_shadows"] = v.shadows
        if name in self.__dict__["_shadows"].get(id(node), ()):
            return None
        return name

    def local_text(self) -> str:
        """The text `module` was parsed from."""
        return self.source

    def _may_rebind(self, name: str) -> bool:
        """Whether the text could bind `name` anywhere: somewhere it is not just called
        (`len(x)`), or a `def`/`class` of that name. False spares the scope analysis of
        the whole module, which most builtin calls (`len`, `range`) never need."""
        seen = self.__dict__.setdefault("_rebinds", {})
        if name not in seen:
            pattern = rf"\b{re.escape(name)}\b(?!\s*\()|\b(?:def|class)\s+{re.escape(name)}\b"
            seen[name] = re.search(pattern, self.local_text()) is not None
        return seen[name]

    def alias_for(self, qualified: str) -> str | None:
        """The local spelling of a module (`th` for `torch`), if the module imports it."""
        for local, full in self.imports.items():
            if full == qualified:
                return local
        return None
