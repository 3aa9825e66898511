"""A model called once per item (or per batch of one), then concatenated: call it on the batch."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import lru_cache

import libcst as cst

from loopvec.analysis.facts import Rank, Signature
from loopvec.analysis.loops import Loop, names_in
from loopvec.analysis.module import ModuleInfo, code, dotted, parameters
from loopvec.lift import Lifted, LiftError, lift
from loopvec.rewrite import SAFE, UNSAFE, Decline, PatternContext, Rewrite

from ._map_shape import map_loop
from .batched_op import B1, BatchLifter, Held, build_rewrite, inline_last_temp
from loopvec.analysis import traverse

# layers whose output for one row depends on the other rows of the batch (in train mode)
_TRAIN_MIXING = {f"torch.nn.{n}" for n in (
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d",
    "SyncBatchNorm", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
)} | {f"torch.nn.functional.{n}" for n in (
    "batch_norm", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
)}
_BATCH_NORMS = {q for q in _TRAIN_MIXING if "BatchNorm" in q}
# layers that read dim 0 as time or sequence unless built with batch_first=True
_SEQUENCE_FIRST = {f"torch.nn.{n}" for n in (
    "RNN", "LSTM", "GRU", "MultiheadAttention", "Transformer", "TransformerEncoderLayer",
    "TransformerDecoderLayer",
)}
# w.dot(v), w.matmul(v): a tensor's method, not a model (the engine never imports torch to ask)
_TENSOR_METHODS = {
    "dot", "vdot", "matmul", "mm", "bmm", "mv", "outer", "ger", "inner", "cross", "kron", "tensordot", "addmm",
    "addmv", "baddbmm", "index_select", "gather", "take", "take_along_dim", "masked_fill", "masked_select",
    "where", "expand", "expand_as", "repeat", "reshape", "view", "view_as", "type_as", "copy_", "new_tensor",
    "new_zeros", "new_ones", "new_full", "new_empty", "scatter", "scatter_add", "index_add", "index_fill",
    "index_copy", "put", "lerp", "dist", "cdist", "mul", "add", "sub", "div", "pow", "maximum", "minimum",
    "clamp", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "bitwise_and", "bitwise_or",
    "fmod", "remainder", "atan2", "hypot", "sum", "mean", "max", "min", "amax", "amin", "softmax",
    "log_softmax", "to", "float", "double", "long", "int", "bool", "half", "cpu", "cuda", "clone", "detach",
    "unsqueeze", "squeeze", "flatten", "permute", "transpose", "contiguous", "numel", "size", "dim", "item",
}
_LIBRARIES = ("torch", "numpy", "math", "scipy", "random", "builtins", "functools", "itertools", "operator")
ASSUMPTION = "`{m}` treats batch rows independently (no BatchNorm in train mode, no dropout)"
ITEM_ASSUMPTION = "`{m}` accepts a batch where the loop passes it one item"
FRESH_ASSUMPTION = "`{m}` returns a new tensor, not a view of its input"


@dataclass(frozen=True)
class Callee:
    """Where a called model comes from, and so whether the verifier runs the real one."""

    text: str
    runnable: bool  # the verifier calls the real object: a module-level or local model, or self's
    why: str  # what it is, for messages
    sources: tuple[cst.CSTNode, ...] = ()  # code that builds it, searched for batch-mixing layers
    in_eval: bool = False
    plain_function: bool = False


@lru_cache(maxsize=8)
def _whole_file(source: str) -> _Module | _FileIndex:
    # the engine may hand patterns one function of the file (see loopvec.prefilter): the
    # model, its class and `model.eval()` live elsewhere in the file
    try:
        return _FileIndex(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _Module(cst.parse_module(source).body)


class _Module:
    """Module-level bindings and classes of the whole file, for resolving a model's name."""

    def __init__(self, body) -> None:
        self.bindings: dict[str, list[cst.CSTNode]] = {}
        self.classes: dict[str, cst.ClassDef] = {}
        self.functions: dict[str, cst.FunctionDef] = {}
        self.statements = list(body)
        for stmt in body:
            if isinstance(stmt, cst.ClassDef):
                self.classes[stmt.name.value] = stmt
            elif isinstance(stmt, cst.FunctionDef):
                self.functions[stmt.name.value] = stmt
            elif isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    for name, value in _bound(small):
                        self.bindings.setdefault(name, []).append(value)
            elif isinstance(stmt, (cst.If, cst.Try, cst.With)):
                # `if TYPE_CHECKING:`, `try: import ...`: bound, but not by a plain statement
                for name in _names_bound_in(stmt):
                    self.bindings.setdefault(name, []).append(stmt)

    def mentioning(self, name: str) -> list[cst.BaseStatement]:
        return self.statements


class _FileIndex:
    """`_Module` of a whole file without parsing all of it with libcst (a large file costs
    a second or more): `ast` says which top-level statements may bind each name, and a
    lookup parses just those (in file order) and answers as `_Module` over them would."""

    def __init__(self, source: str) -> None:
        from loopvec.prefilter import split_lines

        tree = ast.parse(source)
        self.lines = split_lines(source)
        self.spans: list[tuple[int, int]] = []  # top-level statements' lines (with decorators)
        self.names: dict[str, list[int]] = {}  # name -> spans that may bind it
        for stmt in tree.body:
            start = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", ()))])
            span = (start, stmt.end_lineno or stmt.lineno)
            if self.spans and span[0] <= self.spans[-1][1]:  # `import a; b = 1`: one line, one libcst statement
                span = (self.spans[-1][0], max(span[1], self.spans[-1][1]))
                self.spans[-1] = span
            else:
                self.spans.append(span)
            for name in _ast_bound(stmt):
                found = self.names.setdefault(name, [])
                if not found or found[-1] != len(self.spans) - 1:
                    found.append(len(self.spans) - 1)
        self.parsed: dict[int, cst.BaseStatement] = {}
        self.views: dict[str, _Module] = {}
        self.classes = _Lookup(self, "classes")
        self.functions = _Lookup(self, "functions")
        self.bindings = _Lookup(self, "bindings")

    def _statement(self, k: int) -> cst.BaseStatement:
        if k not in self.parsed:
            start, end = self.spans[k]
            self.parsed[k] = cst.parse_module("".join(self.lines[start - 1: end])).body[0]
        return self.parsed[k]

    def view(self, name: str) -> _Module:
        if name not in self.views:
            self.views[name] = _Module([self._statement(k) for k in self.names.get(name, ())])
        return self.views[name]

    def mentioning(self, name: str) -> list[cst.BaseStatement]:
        """The top-level statements whose text spells `name` (the others cannot call
        `name.eval()`), in file order."""
        word = re.compile(rf"\b{re.escape(name)}\b")
        return [self._statement(k) for k, (start, end) in enumerate(self.spans)
                if any(word.search(line) for line in self.lines[start - 1: end])]


class _Lookup:
    """`classes`/`functions`/`bindings` of a `_FileIndex`, one name at a time."""

    def __init__(self, index: _FileIndex, attr: str) -> None:
        self.index, self.attr = index, attr

    def __contains__(self, name: str) -> bool:
        return name in self.index.names and name in getattr(self.index.view(name), self.attr)

    def __getitem__(self, name: str):
        return getattr(self.index.view(name), self.attr)[name]

    def get(self, name: str, default=None):
        return self[name] if name in self else default


def _ast_bound(stmt: ast.stmt) -> set[str]:
    """Every name a top-level statement may bind (a superset of what `_Module` records):
    store targets, import names, def and class names, outside nested defs and classes."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    out: set[str] = set()
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
        todo.extend(ast.iter_child_nodes(node))
    return out


def _bound(small: cst.BaseSmallStatement) -> list[tuple[str, cst.CSTNode]]:
    if isinstance(small, cst.Assign):
        return [(t.target.value, small.value) for t in small.targets if isinstance(t.target, cst.Name)]
    if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name) and small.value is not None:
        return [(small.target.value, small.value)]
    if isinstance(small, (cst.Import, cst.ImportFrom)) and not isinstance(small.names, cst.ImportStar):
        out = []
        for alias in small.names:
            local = alias.asname.name if alias.asname is not None else alias.name
            name = dotted(local) or ""
            out.append((name.split(".")[0], small))
        return out
    return []


def _names_bound_in(stmt: cst.CSTNode) -> set[str]:
    found: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
            if isinstance(node.target, cst.Name):
                found.add(node.target.value)

        def visit_ImportAlias(self, node: cst.ImportAlias) -> None:
            local = node.asname.name if node.asname is not None else node.name
            found.add((dotted(local) or "").split(".")[0])

        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            found.add(node.name.value)
            return False

        def visit_ClassDef(self, node: cst.ClassDef) -> bool:
            found.add(node.name.value)
            return False

    traverse.visit(stmt, _V())
    return found


def _constructible(cls: cst.ClassDef) -> bool:
    """The verifier builds `cls()` to call a method: no __init__ argument may be required."""
    for stmt in cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ():
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == "__init__":
            return all(p.default is not None for p in parameters(stmt)[1:])
    return True


def _enclosing_class(loop: Loop, module: _Module) -> cst.ClassDef | None:
    """The top-level class whose plain method holds the loop (not a static/class method)."""
    parts = (loop.qualname or "").split(".")
    if len(parts) != 2 or loop.function is None:
        return None
    if any(dotted(d.decorator) in ("staticmethod", "classmethod") for d in loop.function.decorators):
        return None
    return module.classes.get(parts[0])


def resolve(callee: cst.BaseExpression, loop: Loop, info: ModuleInfo, module: _Module) -> Callee | str:
    """What `callee` is; a string when it is not a model call at all (the decline reason)."""
    text = code(callee)
    root = text.split(".")[0]
    fn = loop.function
    qual = info.qualname(callee)
    if qual is not None and qual.split(".")[0] in _LIBRARIES:
        return f"`{text}` is a library function, not a model"
    params = [p.name.value for p in parameters(fn)] if fn is not None else []
    cls = _enclosing_class(loop, module)
    self_name = params[0] if cls is not None and params else None
    if self_name is not None and root == self_name:
        # self.model(...): the verifier calls the method on a fresh `Cls()`
        if not _constructible(cls):
            return Callee(text, False, f"an attribute of `{cls.name.value}`, whose __init__ needs arguments")
        return Callee(text, True, f"an attribute of `{cls.name.value}`", _sources(cls, module))
    if isinstance(callee, cst.Attribute) and callee.attr.value in _TENSOR_METHODS:
        return f"`.{callee.attr.value}()` is a tensor method, not a model"
    if root in params:
        if Signature(info, fn).tensor(root) is not None:
            return f"`{root}` is annotated as a tensor, not a model"
        return Callee(text, False, "a parameter: the verifier has no real model to call")
    local = _local_binding(fn, root, loop, info) if fn is not None else None
    if local is not None:
        if isinstance(local, str):
            return local
        value, stmts_before = local
        used = names_in(value) & set(params)
        if used and used == {self_name}:
            # net = self.net: as runnable as self.net
            if not _constructible(cls):
                return Callee(text, False, f"an attribute of `{cls.name.value}`, whose __init__ needs arguments")
            return Callee(text, True, f"an attribute of `{cls.name.value}`", (*_sources(cls, module), value))
        # model = models[k]: as unknown as the parameter it comes from; nn.Linear(d, k) with
        # parameters as arguments is still built here, and the verifier builds it too
        built_here = isinstance(value, cst.Call) and not (names_in(value.func) & set(params))
        if used and not built_here:
            return Callee(text, False, "built from a parameter: the verifier has no real model to call")
        if isinstance(value, (cst.Lambda,)) or isinstance(value, cst.FunctionDef):
            return Callee(text, True, "a local function", (value,), plain_function=True)
        return Callee(text, True, "built in the function", _sources(value, module),
                      in_eval=_evaluated(root, stmts_before, value))
    if root in module.classes:
        if root == text:
            return f"`{text}(...)` constructs a `{root}`, it does not call a model"
        return Callee(text, True, "a class attribute", (module.classes[root],))
    if root in module.functions:
        return Callee(text, True, "a module-level function", (module.functions[root],), plain_function=root == text)
    if root in module.bindings:
        values = module.bindings[root]
        sources = tuple(s for v in values for s in _sources(v, module))
        return Callee(text, True, "a module-level object", sources,
                      in_eval=_evaluated(root, module.mentioning(root), values[-1]))
    return Callee(text, False, "not defined in this module: the verifier cannot see what it is")


def _local_binding(fn: cst.FunctionDef, name: str, loop: Loop, info: ModuleInfo):
    """(value, statements before the loop) of `name = ...` in the function before the loop."""
    body = fn.body.body if isinstance(fn.body, cst.IndentedBlock) else ()
    found = None
    before = []
    for stmt in body:
        if info.position(stmt).start.line >= loop.line:
            break
        before.append(stmt)
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name:
            found = stmt
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                for bound, value in _bound(small):
                    if bound == name:
                        found = value
        elif name in _names_bound_in(stmt) and not isinstance(stmt, cst.FunctionDef):
            return f"`{name}` is bound conditionally before the loop"
    if found is None:
        return None
    return found, before


def _sources(value: cst.CSTNode, module: _Module, seen: set[str] | None = None) -> tuple[cst.CSTNode, ...]:
    """`value` and the classes and functions of this module it calls, transitively."""
    seen = set() if seen is None else seen
    out = [value]
    for name in names_in(value) if not isinstance(value, (cst.ClassDef, cst.FunctionDef)) else _all_names(value):
        if name in seen:
            continue
        seen.add(name)
        if name in module.classes:
            out += _sources(module.classes[name], module, seen)
        elif name in module.functions:
            out += _sources(module.functions[name], module, seen)
        elif name in module.bindings:
            for v in module.bindings[name]:
                out += _sources(v, module, seen)
    return tuple(out)


def _all_names(node: cst.CSTNode) -> set[str]:
    found: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            found.add(n.value)

    traverse.visit(node, _V())
    return found


def _evaluated(name: str, statements, value) -> bool:
    """`model.eval()` (or `.train(False)`) in a statement that always runs, and no `.train()`."""
    evals = trains = 0

    class _V(cst.CSTVisitor):
        def __init__(self, count_evals: bool) -> None:
            self.count_evals = count_evals

        def visit_Call(self, node: cst.Call) -> None:
            nonlocal evals, trains
            func = node.func
            if not isinstance(func, cst.Attribute):
                return
            target = dotted(func.value)
            # Net().eval() in the binding itself, or model.eval() on the name
            on_name = target == name or node is _outer_call(value)
            if not on_name:
                return
            arg = node.args[0].value if node.args else None
            if func.attr.value == "eval" and not node.args or \
                    func.attr.value == "train" and isinstance(arg, cst.Name) and arg.value == "False":
                evals += self.count_evals
            elif func.attr.value == "train":
                trains += 1

    for stmt in statements:
        # model.eval() inside a function or a branch may never run; model.train() anywhere counts
        traverse.visit(stmt, _V(isinstance(stmt, cst.SimpleStatementLine)))
    if isinstance(value, cst.CSTNode):
        traverse.visit(value, _V(True))
    return evals > 0 and trains == 0


def _outer_call(value) -> cst.Call | None:
    return value if isinstance(value, cst.Call) else None


def mixing_problem(callee: Callee, info: ModuleInfo) -> str | None:
    """A layer in the model's code whose rows see each other: the batched call would differ."""
    found: list[str] = []

    class _V(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            qual = info.qualname(node.func) or ""
            if qual in _TRAIN_MIXING:
                if qual in _BATCH_NORMS and _keyword_is(node, "track_running_stats", "False"):
                    found.append(f"`{code(node.func)}` without running stats (batch statistics even in eval mode)")
                elif not callee.in_eval or qual.startswith("torch.nn.functional."):
                    found.append(f"`{code(node.func)}` in train mode")
            elif qual in _SEQUENCE_FIRST and not _keyword_is(node, "batch_first", "True"):
                found.append(f"`{code(node.func)}` without batch_first=True (it reads dim 0 as the sequence)")

    for src in callee.sources:
        traverse.visit(src, _V())
    return found[0] if found else None


def _keyword_is(node: cst.Call, key: str, value: str) -> bool:
    return any(a.keyword is not None and a.keyword.value == key and code(a.value) == value for a in node.args)


@dataclass
class ModelLifter(BatchLifter):
    """The batched-op lifter plus one rule: `model(row)` / `model(batch of one)` -> `model(X)`."""

    module: _Module | None = None
    loop: Loop | None = None
    callees: list[tuple[Callee, bool]] = field(default_factory=list)  # (callee, called on one item)

    def call(self, node: cst.Call) -> Held | None:
        out = super().call(node)
        if out is not None:
            return out
        func = node.func
        if not isinstance(func, (cst.Name, cst.Attribute)) or dotted(func) is None:
            return None
        if names_in(func) & self.scope.loop_names:
            return None  # a method of the row itself (`row.foo()`): not a model
        if self.ctx.info.builtin_name(func) in _BUILTINS:
            return None
        resolved = resolve(func, self.loop, self.ctx.info, self.module)
        if isinstance(resolved, str):
            return None
        positional = [a for a in node.args if a.keyword is None]
        if len(positional) != 1 or any(a.star for a in node.args):
            raise LiftError(f"`{code(func)}(...)` with other than one positional input")
        arg = positional[0]
        for a in node.args:
            # model(x[i], mask[i]): a second per-item input has no batched counterpart here
            if a is not arg and self._batched(a.value):
                raise LiftError(f"`{code(func)}(...)` with a per-item keyword argument")
        if not self._batched(arg.value):
            return None
        problem = mixing_problem(resolved, self.ctx.info)
        if problem:
            raise LiftError(f"`{resolved.text}` has {problem}: one batched call would differ")
        held = arg.value
        b = self._b1_of(held)
        if b is not None:
            new = node.with_changes(args=[a.with_changes(value=b.node) if a is arg else a for a in node.args])
            self.callees.append((resolved, False))
            return self._hold_b1(B1(new, Rank(b.rank.lo, None), True, producer=resolved.text), resolved.text)
        # f(x[i]) with a plain function: whether f batches is f's business (see vmap)
        if resolved.plain_function:
            raise LiftError(f"`{resolved.text}` is a plain function called on one item (see vmap)")
        value = lift(held, self.scope)
        if value.kind != "tensor":
            raise LiftError(f"`{code(func)}(...)` of a per-element Python number")
        new = node.with_changes(args=[a.with_changes(value=value.node) if a is arg else a for a in node.args])
        self.callees.append((resolved, True))
        return self._hold(Lifted(new, True, "tensor"), Rank(), resolved.text)


_BUILTINS = {"len", "float", "int", "bool", "abs", "max", "min", "round", "pow", "sum", "list", "tuple",
             "print", "range", "enumerate", "zip", "str", "isinstance", "type", "sorted", "any", "all"}


class BatchCall:
    """One model call per item, concatenated — the catalogue's Pattern 2.

    What it rewrites:
        A map loop that calls a model (any callable that is not a library function) on
        a batch of one — `model(x[i].unsqueeze(0))`, `model(x[i:i+1])`, `model(x[i][None])`
        — and concatenates with `torch.cat`, or calls it on one item and stacks; code
        around the call (`.detach()`, `F.softmax(..., dim=1)`) is lifted as in
        `batched_op`.

    Example:
        outputs = []
        for i in range(len(images)):
            output = model(images[i].unsqueeze(0))
            outputs.append(output)
        outputs = torch.cat(outputs)

    Use instead:
        outputs = model(images)

    When it declines:
        Whether this is right depends on the model: BatchNorm in train mode, dropout, or
        an RNN/attention layer reading dim 0 as the sequence mix the rows. When the
        verifier can run the real model (built in the function, a module-level object,
        or `self.…` of a class it can construct) the rewrite is `safe`: the verifier
        proves it. A model passed in as a parameter is `unsafe`: applied only with
        `--unsafe`, under the assumption that it treats batch rows independently.
        Declines outright when the model's code visibly holds a batch-mixing layer
        (train mode), when the call takes a second per-item argument, for a plain
        function on one item (see `vmap`), and for class constructions.
    """

    NAME = "batch_call"
    DESCRIPTION = "model(x[i].unsqueeze(0)) per item, then torch.cat -> model(x) (unsafe for unknown models)"
    SAFETY = UNSAFE
    ORDER = 50

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        shape = map_loop(loop)
        if isinstance(shape, str):
            return Decline(self.NAME, shape)
        shape = inline_last_temp(shape)
        lifter = ModelLifter.for_loop(loop, ctx)
        lifter.module, lifter.loop = _whole_file(ctx.info.source), loop
        try:
            lines = lifter.temps(shape.temps)
            value = lifter.lift_value(shape.value)
        except LiftError as exc:
            return Decline(self.NAME, str(exc))
        # x[i].sum(): no model in the loop (see batched_op)
        if not lifter.callees:
            return Decline(self.NAME, "no model call in the body")
        safety = SAFE if all(c.runnable for c, _ in lifter.callees) else UNSAFE
        assumptions: list[str] = []
        for callee, on_item in lifter.callees:
            if not callee.runnable:
                assumptions.append(ASSUMPTION.format(m=callee.text))
                if on_item:
                    assumptions.append(ITEM_ASSUMPTION.format(m=callee.text))
            assumptions.append(FRESH_ASSUMPTION.format(m=callee.text))
        try:
            rewrite = build_rewrite(self.NAME, loop, ctx, shape, lifter, lines, value, safety,
                                    tuple(dict.fromkeys(assumptions)))
        except LiftError as exc:
            return Decline(self.NAME, str(exc))
        if safety == UNSAFE:
            why = "; ".join(dict.fromkeys(c.why for c, _ in lifter.callees if not c.runnable))
            rewrite = Rewrite(rewrite.pattern, loop, rewrite.edits, f"{rewrite.message} (unsafe: model is {why})",
                              safety, rewrite.assumptions, rewrite.imports)
        return rewrite
