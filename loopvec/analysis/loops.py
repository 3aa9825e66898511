"""The loop IR: one frozen record per loop, built once and shared by every pattern.

A record says what the loop walks (`Domain`), what its body reads and writes and with
which index expressions, what it appends and accumulates, which names carry a value
from one iteration to the next, which calls have side effects, how control leaves it,
which of its names live on after it, and which statements set it up (`out = []`,
`out = torch.zeros_like(x)`) and finish it (`out = torch.stack(out)`).

Comprehensions fed to `torch.tensor/stack/cat` are loops too (kind "comprehension").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import libcst as cst

from .domain import Domain, DomainError, build_domain, _length_of
from .facts import sequence_problem
from .module import ModuleInfo, code, contains, dotted, names_in, target_names
from . import traverse
from ..verify.source import file_lines

COLLECTORS = {"torch.stack": "stack", "torch.tensor": "tensor", "torch.cat": "cat", "torch.concat": "cat"}

# Calls whose result differs between runs or which write outside the loop.
_RANDOM_PREFIXES = ("random.", "numpy.random.", "torch.rand", "torch.normal", "torch.bernoulli",
                    "torch.multinomial", "torch.poisson", "torch.manual_seed", "torch.dropout",
                    "torch.nn.functional.dropout", "torch.nn.functional.alpha_dropout",
                    "torch.nn.functional.feature_alpha_dropout", "torch.nn.functional.gumbel_softmax",
                    "torch.nn.functional.rrelu")
_EFFECT_BUILTINS = {"print", "open", "input", "exec", "eval", "setattr", "delattr", "next"}
_RANDOM_METHODS = {"uniform_", "normal_", "random_", "bernoulli_", "exponential_", "geometric_",
                   "cauchy_", "log_normal_"}


@dataclass(frozen=True)
class Access:
    """`array[index...]` with `a[i][j]` flattened to ("i", "j")."""

    array: str
    index: tuple[str, ...]
    node: cst.Subscript = field(compare=False, repr=False)


@dataclass(frozen=True)
class Append:
    target: str
    value: cst.BaseExpression = field(repr=False)
    statement: cst.CSTNode = field(repr=False)


@dataclass(frozen=True)
class Accumulate:
    """`name op= value` (`total += x ** 2`)."""

    target: str
    op: str
    value: cst.BaseExpression = field(repr=False)
    statement: cst.CSTNode = field(repr=False)


@dataclass(frozen=True)
class Init:
    """The statement before the loop that binds an output name.

    kind: list (`[]`), like (`torch.zeros_like(a)`), alloc (`torch.zeros(n)`),
    clone (`a.clone()`), scalar (`0`, `0.0`), param (a function argument), other.
    """

    name: str
    kind: str
    statement: cst.SimpleStatementLine | None = field(repr=False)
    value: cst.BaseExpression | None = field(repr=False)
    call: str | None = None  # qualified name of the initialising call
    ref: str | None = None  # the array it is shaped like / cloned from
    interleaved: bool = False  # referenced between the init and the loop


@dataclass(frozen=True)
class Finish:
    """The statement after the loop that turns a collected list into a tensor."""

    name: str  # the list
    kind: str  # stack | tensor | cat
    statement: cst.BaseStatement = field(repr=False)
    call: cst.Call = field(repr=False)
    target: str | None  # name bound by the finish (None for `return torch.stack(out)`)
    list_used_later: bool


@dataclass(frozen=True)
class Loop:
    kind: str  # for | comprehension
    node: cst.CSTNode = field(repr=False)
    function: cst.FunctionDef | None = field(repr=False)
    qualname: str | None  # "f" or "Cls.method"
    line: int
    column: int
    end_line: int
    domain: Domain | None
    domain_problem: str | None
    body: tuple[cst.BaseStatement, ...] = field(repr=False)
    element: cst.BaseExpression | None = field(repr=False)  # comprehension element
    conditions: tuple[cst.BaseExpression, ...] = field(repr=False)  # comprehension ifs
    collector: Finish | None  # comprehension: the torch.stack/tensor/cat call around it
    reads: tuple[Access, ...]
    writes: tuple[Access, ...]
    appends: tuple[Append, ...]
    accumulators: tuple[Accumulate, ...]
    assigned: frozenset[str]
    carried: tuple[str, ...]  # reasons a value flows from one iteration to the next
    side_effects: tuple[str, ...]
    control: frozenset[str]  # break continue return yield raise
    used_after: frozenset[str]  # names bound in the loop that are read after it
    setup: dict[str, Init] = field(repr=False)
    finish: dict[str, Finish] = field(repr=False)
    nested: tuple[cst.For, ...] = field(repr=False)  # loops inside the body
    depth: int = 0  # how many loops enclose this one
    skip: bool = False  # `# loopvec: skip`
    block: tuple[cst.BaseStatement, ...] = field(default=(), repr=False)
    block_index: int = -1
    # why an iterated array is a Python sequence rather than a tensor, if it visibly is
    iterable_problem: str | None = None

    @property
    def outputs(self) -> set[str]:
        return {a.target for a in self.appends} | {w.array for w in self.writes} | {
            a.target for a in self.accumulators
        }


# --------------------------------------------------------------------------- helpers


def flatten_subscript(node: cst.Subscript) -> tuple[str, tuple[cst.BaseSlice, ...]] | None:
    """`a[i][j]` and `a[i, j]` -> ("a", (i, j)); None if the base is not a plain chain."""
    parts: list[cst.BaseSlice] = []
    cur: cst.BaseExpression = node
    while isinstance(cur, cst.Subscript):
        parts[:0] = [el.slice for el in cur.slice]
        cur = cur.value
    base = dotted(cur)
    if base is None:
        return None
    return base, tuple(parts)


def slice_code(sl: cst.BaseSlice) -> str:
    if isinstance(sl, cst.Index):
        return code(sl.value)
    return code(sl)


# --------------------------------------------------------------------------- body scan


class _BodyScanner(cst.CSTVisitor):
    """Reads, writes, appends, accumulators, effects and control flow of a loop body."""

    def __init__(self, info: ModuleInfo) -> None:
        self.info = info
        self.reads: list[Access] = []
        self.writes: list[Access] = []
        self.appends: list[Append] = []
        self.accumulators: list[Accumulate] = []
        self.assigned: list[str] = []
        self.effects: list[str] = []
        self.control: set[str] = set()
        self.nested: list[cst.For] = []
        self._store_subscripts: set[int] = set()
        self._loop_depth = 0
        # order of first read / first write of plain names, for loop-carried detection
        self.first_read: dict[str, int] = {}
        self.first_write: dict[str, int] = {}
        self._tick = 0
        self.bare_loads: set[str] = set()

    # nested scopes are opaque: a def inside a loop body is an effect we do not model
    def visit_FunctionDef(self, node) -> bool:
        self.effects.append("defines a function inside the loop")
        return False

    def visit_Lambda(self, node) -> bool:
        return False

    def visit_ClassDef(self, node) -> bool:
        self.effects.append("defines a class inside the loop")
        return False

    def visit_For(self, node: cst.For) -> None:
        self.nested.append(node)
        self._loop_depth += 1
        for name in target_names(node.target):
            self._write(name)
        traverse.visit(node.iter, self)
        traverse.visit(node.body, self)
        if node.orelse is not None:
            traverse.visit(node.orelse, self)
        self._loop_depth -= 1
        return False

    def visit_While(self, node: cst.While) -> None:
        self.control.add("while")

    def visit_Break(self, node) -> None:
        # a break inside a nested loop only leaves that loop
        self.control.add("break" if self._loop_depth == 0 else "inner-break")

    def visit_Continue(self, node) -> None:
        self.control.add("continue" if self._loop_depth == 0 else "inner-continue")

    def visit_Return(self, node) -> None:
        self.control.add("return")

    def visit_Yield(self, node) -> None:
        self.control.add("yield")

    def visit_Raise(self, node) -> None:
        self.control.add("raise")

    def visit_Await(self, node) -> None:
        self.control.add("await")

    def visit_Global(self, node) -> None:
        self.effects.append("declares a global")

    def visit_Nonlocal(self, node) -> None:
        self.effects.append("declares a nonlocal")

    def visit_Del(self, node) -> None:
        self.effects.append("deletes a name")

    def visit_Try(self, node) -> None:
        self.control.add("try")

    def visit_With(self, node) -> None:
        self.control.add("with")

    def _write(self, name: str) -> None:
        self._tick += 1
        self.first_write.setdefault(name, self._tick)
        self.assigned.append(name)

    def _read(self, name: str) -> None:
        self._tick += 1
        self.first_read.setdefault(name, self._tick)

    def _target(self, target: cst.BaseExpression) -> None:
        if isinstance(target, cst.Subscript):
            flat = flatten_subscript(target)
            self._store_subscripts.add(id(target))
            if flat is None:
                self.effects.append(f"writes into `{code(target)}`")
                return
            base, parts = flat
            self.writes.append(Access(base, tuple(slice_code(p) for p in parts), target))
            for p in parts:
                traverse.visit(p, self)
            # the subscripted base is read (it must exist) but not rebound
            return
        if isinstance(target, cst.Attribute):
            self.effects.append(f"sets attribute `{code(target)}`")
            return
        if isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                self._target(el.value)
            return
        if isinstance(target, cst.StarredElement):
            self._target(target.value)
            return
        for name in target_names(target):
            self._write(name)

    def visit_Assign(self, node: cst.Assign) -> bool:
        traverse.visit(node.value, self)
        for t in node.targets:
            self._target(t.target)
        return False

    def visit_AnnAssign(self, node: cst.AnnAssign) -> bool:
        if node.value is not None:
            traverse.visit(node.value, self)
        self._target(node.target)
        return False

    def visit_AugAssign(self, node: cst.AugAssign) -> bool:
        traverse.visit(node.value, self)
        target = node.target
        op = type(node.operator).__name__
        if isinstance(target, cst.Name):
            self._read(target.value)
            self._write(target.value)
            if self._loop_depth == 0:
                self.accumulators.append(Accumulate(target.value, op, node.value, node))
            else:
                self.accumulators.append(Accumulate(target.value, op, node.value, node))
            return False
        if isinstance(target, cst.Subscript):
            flat = flatten_subscript(target)
            if flat is not None:
                base, parts = flat
                idx = tuple(slice_code(p) for p in parts)
                self.reads.append(Access(base, idx, target))
                self.writes.append(Access(base, idx, target))
                self._store_subscripts.add(id(target))
                for p in parts:
                    traverse.visit(p, self)
                return False
        self._target(target)
        return False

    def visit_NamedExpr(self, node: cst.NamedExpr) -> bool:
        traverse.visit(node.value, self)
        self._target(node.target)
        return False

    def visit_Subscript(self, node: cst.Subscript) -> bool | None:
        if id(node) in self._store_subscripts:
            return False
        flat = flatten_subscript(node)
        if flat is not None:
            base, parts = flat
            self.reads.append(Access(base, tuple(slice_code(p) for p in parts), node))
            self._read(base.split(".")[0])
            for p in parts:
                traverse.visit(p, self)
            return False
        return None

    def visit_Name(self, node: cst.Name) -> None:
        self._read(node.value)
        self.bare_loads.add(node.value)  # not as `name[...]`: the whole value is read

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        # only the head of `a.b.c` is a name read; `b`, `c` are attributes
        traverse.visit(node.value, self)
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        traverse.visit(node.value, self)  # `dtype=` is a keyword, not a name read
        return False

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        qual = self.info.qualname(func)
        builtin = self.info.builtin_name(func)
        if builtin in _EFFECT_BUILTINS:
            self.effects.append(f"calls `{builtin}`")
        if qual is not None and qual.startswith(_RANDOM_PREFIXES):
            self.effects.append(f"draws random numbers (`{code(func)}`)")
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            if method in _RANDOM_METHODS:
                self.effects.append(f"draws random numbers (`.{method}`)")
            elif method == "append" and isinstance(func.value, cst.Name) and len(node.args) == 1:
                pass  # recorded by visit_Expr when it is a statement; else an effect below
            elif method in {"append", "extend", "insert", "pop", "remove", "clear", "update",
                            "add", "setdefault", "popitem", "discard", "write"}:
                self.effects.append(f"mutates `{code(func.value)}` with `.{method}`")
            elif method.endswith("_") and not method.endswith("__"):
                self.effects.append(f"in-place `.{method}` on `{code(func.value)}`")

    def visit_Expr(self, node: cst.Expr) -> bool | None:
        call = node.value
        if (
            isinstance(call, cst.Call)
            and isinstance(call.func, cst.Attribute)
            and call.func.attr.value == "append"
            and isinstance(call.func.value, cst.Name)
            and len(call.args) == 1
            and call.args[0].keyword is None
            and not call.args[0].star
        ):
            target = call.func.value.value
            self.appends.append(Append(target, call.args[0].value, node))
            self._read(target)
            traverse.visit(call.args[0].value, self)
            return False
        if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute) and call.func.attr.value == "append":
            self.effects.append(f"appends to `{code(call.func.value)}`")
        return None


# --------------------------------------------------------------------------- setup / finish


def _classify_init(name: str, value: cst.BaseExpression, info: ModuleInfo) -> tuple[str, str | None, str | None]:
    if isinstance(value, cst.List) and not value.elements:
        return "list", None, None
    if isinstance(value, cst.Call) and info.builtin_name(value.func) == "list" and not value.args:
        return "list", None, None
    if isinstance(value, (cst.Integer, cst.Float)) or (
        isinstance(value, cst.UnaryOperation) and isinstance(value.expression, (cst.Integer, cst.Float))
    ):
        return "scalar", None, None
    if isinstance(value, cst.Name) and value.value in {"True", "False", "None"}:
        return "scalar", None, None
    if isinstance(value, cst.Call):
        qual = info.qualname(value.func)
        if qual in {"torch.zeros_like", "torch.empty_like", "torch.ones_like", "torch.full_like",
                    "torch.clone"} and value.args:
            return ("clone" if qual == "torch.clone" else "like"), qual, code(value.args[0].value)
        if qual in {"torch.zeros", "torch.empty", "torch.ones", "torch.full"}:
            return "alloc", qual, None
        if qual == "torch.tensor":
            return "scalar-tensor", qual, None
        # x.clone(), x.clone().detach(), x.detach().clone()
        chain = value
        methods = []
        while isinstance(chain, cst.Call) and isinstance(chain.func, cst.Attribute) and not chain.args:
            methods.append(chain.func.attr.value)
            chain = chain.func.value
        if methods and "clone" in methods and set(methods) <= {"clone", "detach"} and dotted(chain):
            return "clone", "clone", code(chain)
        if isinstance(value.func, cst.Attribute) and value.func.attr.value in {
            "new_zeros", "new_empty", "new_ones", "new_full"}:
            return "alloc", "new:" + value.func.attr.value, code(value.func.value)
    return "other", None, None


def _binds(stmt: cst.BaseStatement, name: str) -> cst.BaseExpression | None | bool:
    """The value bound to `name` by a simple `name = value` statement; True if bound otherwise."""
    if isinstance(stmt, cst.SimpleStatementLine):
        for small in stmt.body:
            if isinstance(small, cst.Assign):
                for t in small.targets:
                    if isinstance(t.target, cst.Name) and t.target.value == name and len(stmt.body) == 1 \
                            and len(small.targets) == 1:
                        return small.value
                    if name in target_names(t.target):
                        return True
            if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name) and small.target.value == name:
                return small.value if small.value is not None and len(stmt.body) == 1 else True
    return None


def find_setup(name: str, block: tuple, index: int, info: ModuleInfo, params: set[str]) -> Init | None:
    interleaved = False
    for j in range(index - 1, -1, -1):
        stmt = block[j]
        bound = _binds(stmt, name)
        if isinstance(bound, cst.BaseExpression):
            kind, call, ref = _classify_init(name, bound, info)
            return Init(name, kind, stmt, bound, call, ref, interleaved)
        if bound is True:
            return Init(name, "other", stmt, None, None, None, interleaved)
        if name in names_in(stmt):
            interleaved = True
    if name in params:
        return Init(name, "param", None, None, None, None, interleaved)
    return None


def _collector_call(expr: cst.BaseExpression, info: ModuleInfo) -> tuple[str, cst.Call] | None:
    if isinstance(expr, cst.Call):
        kind = COLLECTORS.get(info.qualname(expr.func) or "")
        if kind and expr.args and expr.args[0].keyword is None and not expr.args[0].star:
            return kind, expr
    return None


def _find_finish(name: str, block: tuple, index: int, info: ModuleInfo) -> Finish | None:
    for j in range(index + 1, len(block)):
        stmt = block[j]
        if name not in names_in(stmt):
            continue
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            return None
        small = stmt.body[0]
        value, target = None, None
        if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
            value, target = small.value, small.targets[0].target.value
        elif isinstance(small, cst.Return) and small.value is not None:
            value = small.value
        if value is None:
            return None
        found = _collector_call(value, info)
        if found is None:
            return None
        kind, call = found
        arg = call.args[0].value
        if not (isinstance(arg, cst.Name) and arg.value == name):
            return None
        # the list is used again later unless the finish rebinds the same name
        later = any(name in names_in(s) for s in block[j + 1:]) and target != name
        return Finish(name, kind, stmt, call, target, later)
    return None


# --------------------------------------------------------------------------- builder


@dataclass
class _FunctionFrame:
    node: cst.FunctionDef
    qualname: str
    params: set[str]
    info: ModuleInfo = field(repr=False)
    block_depth: int  # blocks outside the function are not scanned for later uses

    @cached_property
    def lengths(self) -> dict[str, str]:
        """`_lengths_in` the function's body, read when one of its loops needs it."""
        body = tuple(self.node.body.body) if isinstance(self.node.body, cst.IndentedBlock) else ()
        return _lengths_in(body, self.info)


def _lengths_in(body: tuple, info: ModuleInfo) -> dict[str, str]:
    """`n = len(x)`, `n = x.shape[0]`, `n, m = x.shape` at the top of a function."""
    out: dict[str, str] = {}
    for stmt in body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if not isinstance(small, cst.Assign) or len(small.targets) != 1:
                continue
            t = small.targets[0].target
            if isinstance(t, cst.Name):
                arr = _length_of(small.value, info)
                if arr:
                    out[t.value] = arr
            elif isinstance(t, (cst.Tuple, cst.List)) and t.elements:
                first = t.elements[0].value
                v = small.value
                if (isinstance(first, cst.Name) and isinstance(v, cst.Attribute)
                        and v.attr.value == "shape"):
                    out[first.value] = code(v.value)
    return out


def _has_skip(info: ModuleInfo, line: int) -> bool:
    lines = file_lines(info.source)  # split once per file, where the tokenizer splits
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    above = lines[line - 2].strip() if line >= 2 else ""
    return "loopvec: skip" in here or above.startswith("#") and "loopvec: skip" in above


class _LoopFinder(cst.CSTVisitor):
    def __init__(self, info: ModuleInfo) -> None:
        self.info = info
        self.loops: list[Loop] = []
        self.frames: list[_FunctionFrame] = []
        self.classes: list[str] = []
        self.blocks: list[tuple] = []  # statement sequences enclosing the current node
        self.loop_depth = 0
        self.loop_stack: list[cst.For] = []

    # scopes -------------------------------------------------------------
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.classes.append(node.name.value)

    def leave_ClassDef(self, node) -> None:
        self.classes.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        params = {p.name.value for p in (*node.params.params, *node.params.posonly_params,
                                         *node.params.kwonly_params)}
        for star in (node.params.star_arg, node.params.star_kwarg):
            if isinstance(star, cst.Param):
                params.add(star.name.value)
        prefix = ".".join(self.classes[-1:]) if self.classes and not self.frames else None
        qual = f"{prefix}.{node.name.value}" if prefix else node.name.value
        if self.frames:  # nested function: not importable by name
            qual = f"{self.frames[-1].qualname}.<locals>.{node.name.value}"
        self.frames.append(_FunctionFrame(node, qual, params, self.info, len(self.blocks)))

    def leave_FunctionDef(self, node) -> None:
        self.frames.pop()

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self.blocks.append(tuple(node.body))

    def leave_IndentedBlock(self, node) -> None:
        self.blocks.pop()

    def visit_Module(self, node: cst.Module) -> None:
        self.blocks.append(tuple(node.body))

    # loops --------------------------------------------------------------
    def visit_For(self, node: cst.For) -> None:
        self.loops.append(self._for_record(node))
        self.loop_stack.append(node)

    def leave_For(self, node) -> None:
        self.loop_stack.pop()

    def visit_Call(self, node: cst.Call) -> None:
        found = _collector_call(node, self.info)
        if found is None:
            return
        arg = node.args[0].value
        if isinstance(arg, (cst.ListComp, cst.GeneratorExp)):
            self.loops.append(self._comprehension_record(node, arg, found[0]))

    # records ------------------------------------------------------------
    def _frame(self) -> _FunctionFrame | None:
        return self.frames[-1] if self.frames else None

    def _domain(self, target, iterable) -> tuple[Domain | None, str | None]:
        frame = self._frame()
        try:
            return build_domain(target, iterable, self.info, frame.lengths if frame else {}), None
        except DomainError as exc:
            return None, str(exc)

    def _for_record(self, node: cst.For) -> Loop:
        info = self.info
        frame = self._frame()
        pos = info.position(node)
        domain, problem = self._domain(node.target, node.iter)
        scan = _BodyScanner(info)
        traverse.visit(node.body, scan)
        if node.orelse is not None:
            scan.control.add("else")
        targets = set(target_names(node.target))
        block = self.blocks[-1] if self.blocks else ()
        index = next((k for k, s in enumerate(block) if s is node), -1)
        params = frame.params if frame else set()

        # every name the loop writes or rebinds: outputs, accumulators, flags like `best = x`
        outputs = {a.target for a in scan.appends} | {w.array for w in scan.writes} | {
            a.target for a in scan.accumulators} | (set(scan.assigned) - targets)
        setup: dict[str, Init] = {}
        finish: dict[str, Finish] = {}
        for name in sorted(outputs):
            if "." in name:
                continue
            init = find_setup(name, block, index, info, params) if index >= 0 else None
            if init is not None:
                setup[name] = init
            if init is not None and init.kind == "list":
                fin = _find_finish(name, block, index, info)
                if fin is not None:
                    finish[name] = fin

        carried = _carried(scan, targets)
        inner_blocks = self.blocks[frame.block_depth:] if frame else self.blocks
        used_after = _used_after(node, set(scan.assigned) | targets, inner_blocks, self.loop_stack, index)
        return Loop(
            kind="for", node=node, function=frame.node if frame else None,
            qualname=frame.qualname if frame else None,
            line=pos.start.line, column=pos.start.column + 1, end_line=pos.end.line,
            domain=domain, domain_problem=problem, body=tuple(node.body.body) if isinstance(
                node.body, cst.IndentedBlock) else (), element=None, conditions=(), collector=None,
            reads=tuple(scan.reads), writes=tuple(scan.writes), appends=tuple(scan.appends),
            accumulators=tuple(scan.accumulators), assigned=frozenset(scan.assigned) - targets,
            carried=carried, side_effects=tuple(dict.fromkeys(scan.effects)),
            control=frozenset(scan.control), used_after=frozenset(used_after), setup=setup,
            finish=finish, nested=tuple(scan.nested), depth=len(self.loop_stack),
            skip=_has_skip(info, pos.start.line), block=block, block_index=index,
            iterable_problem=_iterable_problem(frame.node if frame else None, domain, info),
        )

    def _comprehension_record(self, call: cst.Call, comp, kind: str) -> Loop:
        info = self.info
        frame = self._frame()
        pos = info.position(call)
        clauses = []
        f = comp.for_in
        while f is not None:
            clauses.append(f)
            f = f.inner_for_in
        domain, problem = self._domain(clauses[0].target, clauses[0].iter)
        if len(clauses) > 1:
            domain, problem = None, "nested comprehension"
        if clauses[0].asynchronous is not None:
            domain, problem = None, "async comprehension"
        scan = _BodyScanner(info)
        traverse.visit(comp.elt, scan)
        for cond in clauses[0].ifs:
            traverse.visit(cond.test, scan)
        block = self.blocks[-1] if self.blocks else ()
        stmt_index = -1
        target = None
        fin = Finish("<comprehension>", kind, call, call, target, False)
        return Loop(
            kind="comprehension", node=comp, function=frame.node if frame else None,
            qualname=frame.qualname if frame else None,
            line=pos.start.line, column=pos.start.column + 1, end_line=pos.end.line,
            domain=domain, domain_problem=problem, body=(), element=comp.elt,
            conditions=tuple(c.test for c in clauses[0].ifs), collector=fin,
            reads=tuple(scan.reads), writes=tuple(scan.writes), appends=(), accumulators=(),
            assigned=frozenset(scan.assigned), carried=(), side_effects=tuple(dict.fromkeys(scan.effects)),
            control=frozenset(scan.control), used_after=frozenset(), setup={}, finish={},
            nested=(), depth=len(self.loop_stack), skip=_has_skip(info, pos.start.line),
            block=block, block_index=stmt_index,
            iterable_problem=_iterable_problem(frame.node if frame else None, domain, info),
        )


def _carried(scan: _BodyScanner, targets: set[str]) -> tuple[str, ...]:
    reasons: list[str] = []
    for name, w in scan.first_write.items():
        if name in targets:
            continue
        r = scan.first_read.get(name)
        if r is not None and r < w and not any(a.target == name for a in scan.accumulators):
            reasons.append(f"`{name}` is read before it is assigned: its value comes from the previous iteration")
    written = {}
    for w in scan.writes:
        written.setdefault(w.array, set()).add(w.index)
    for r in scan.reads:
        if r.array in written and r.index not in written[r.array]:
            reasons.append(f"`{code(r.node)}` reads what another iteration writes")
    for array in sorted(written):
        # out.sum() while filling out[i]: every iteration sees what earlier ones wrote
        if "." not in array and array in scan.bare_loads:
            reasons.append(f"`{array}` is read as a whole while the loop writes into it")
    appended = {a.target for a in scan.appends}
    for r in scan.reads:
        if r.array in appended:
            reasons.append(f"`{code(r.node)}` reads the list being built")
    return tuple(dict.fromkeys(reasons))


def _reads_before_binding(stmt: cst.BaseStatement, name: str) -> str:
    """'read' if stmt reads name first, 'bind' if it rebinds it first, '' if neither."""
    if name not in names_in(stmt):
        return ""
    if isinstance(stmt, cst.For):
        if name in names_in(stmt.iter):
            return "read"
        if name in target_names(stmt.target):
            return "bind"
        return "read"
    bound = _binds(stmt, name)
    if bound is not None:
        value = bound if isinstance(bound, cst.BaseExpression) else None
        if value is not None and name not in names_in(value):
            return "bind"
    return "read"


def _used_after(node: cst.For, names: set[str], blocks: list[tuple], loop_stack: list, index: int) -> set[str]:
    """Names bound in the loop that a later statement may read before rebinding them."""
    used: set[str] = set()
    if not names:
        return used
    # statements after the loop in its block, then after the enclosing blocks (innermost first)
    after: list[list[cst.BaseStatement]] = []
    spelled: dict[int, set[str]] = {}  # names_in of each statement after the loop, as needed
    for depth in range(len(blocks) - 1, -1, -1):
        block = blocks[depth]
        if depth == len(blocks) - 1:
            start = index + 1
        else:  # after the enclosing statement in this block that contains the loop
            start = next((k + 1 for k, s in enumerate(block) if contains(s, node)), len(block))
        after.append(block[start:])
    # an enclosing loop runs statements before ours again on its next iteration
    rerun: list[set[str]] = []
    for outer in loop_stack:
        before: set[str] = set()
        for stmt in outer.body.body if isinstance(outer.body, cst.IndentedBlock) else ():
            if contains(stmt, node):
                break
            before |= names_in(stmt)
        rerun.append(before)
    for name in names:
        state = ""
        for stmts in after:
            for stmt in stmts:
                if id(stmt) not in spelled:
                    spelled[id(stmt)] = names_in(stmt)
                state = _reads_before_binding(stmt, name) if name in spelled[id(stmt)] else ""
                if state:
                    break
            if state:
                break
        if state == "read" or any(name in before for before in rerun):
            used.add(name)
    return used


def _iterable_problem(function: cst.FunctionDef | None, domain: Domain | None, info: ModuleInfo) -> str | None:
    """`vals = [1.0, 2.0]; for v in vals`, `def f(xs: list[float])`: not a tensor."""
    if domain is None:
        return None
    return sequence_problem(function, {a for a in domain.arrays if "." not in a and "[" not in a}, info)


def find_loops(info: ModuleInfo) -> list[Loop]:
    finder = _LoopFinder(info)
    traverse.visit(info.module, finder)
    return finder.loops
