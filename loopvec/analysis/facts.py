"""What a function's text says about its names before a loop runs: ranks, dtype classes,
Python numbers and lists versus tensors.

Declared facts come from the signature: annotations (jaxtyping's `Float[Tensor, "b c"]`
included) and the `# loopvec: shapes x=[n,3] k=int` hint comment on the def line. Both are
read with the verifier's own spec parser (`loopvec.verify.specs`, which imports no torch),
and merged as the verifier merges them -- a parameter's hint wins over its annotation --
so a pattern relies on exactly what the verifier draws inputs from.

Flow facts add what statements before the loop establish: `n, d = x.shape` fixes x's
rank, `t = torch.zeros(n, 3)` is a 2-d float tensor, `vals = [1.0, 2.0]` a list of floats.

* `Signature(info, function)`: per parameter, its spec, rank, dtype class, list-ness.
* `declared_ranks(loop, info)`: ranks as declared -- the signature plus `.shape`
  unpacking before the loop -- for names the function never rebinds.
* `function_facts(loop, info, statement)` and `infer(node, facts, info)`: `Fact`s flowing
  through the straight-line statements before `statement`.
* `sequence_problem(...)`, `python_lists(loop)`: names that are visibly Python sequences.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from loopvec.verify.source import has_hint_comments, hint_comments
from loopvec.verify.specs import ListSpec, ScalarSpec, Spec, SpecError, TensorSpec, TupleSpec, parse_annotation, \
    parse_spec

from ..dtypes import CAST_METHODS, FLOATING_DTYPES, KEEP_FUNCTIONS, TORCH_DTYPES
from .module import (ModuleInfo, bound_names, code, contains, dotted, names_in, number_value, parameters,
                     top_statement_index)
from . import traverse
from .memo import per_node

if TYPE_CHECKING:
    from .loops import Loop



# --------------------------------------------------------------------------- ranks


@dataclass(frozen=True)
class Rank:
    """What is known about a tensor's rank: at least `lo`, exactly `exact` when known."""

    lo: int = 0
    exact: int | None = None

    def at_least(self, k: int) -> Rank:
        if self.exact is not None:
            return self
        return Rank(max(self.lo, k), None)

    def minus(self, k: int) -> Rank:
        return Rank(max(self.lo - k, 0), None if self.exact is None else self.exact - k)


UNKNOWN = Rank()


def _spec_rank(spec: Spec | None, annotation: str | None = None) -> Rank:
    """A tensor spec's rank. jaxtyping's `"*batch c"` and `"... c"` stand for any number of
    dims (the spec parser reads them as one dim each): at least the named ones."""
    if not isinstance(spec, TensorSpec) or spec.dims is None:
        return UNKNOWN
    if annotation is not None and ("*" in annotation or "..." in annotation):
        tokens = _shape_string(annotation)
        if tokens is None:
            return UNKNOWN
        fixed = [t for t in tokens if t != "..." and not t.startswith("*")]
        return Rank(len(fixed), None)
    return Rank(len(spec.dims), len(spec.dims))


def _shape_string(annotation: str) -> list[str] | None:
    """The dims of jaxtyping's shape string in `Float[Tensor, "*b c"]`, as tokens."""
    try:
        node = ast.parse(annotation.strip(), mode="eval").body
    except SyntaxError:
        return None
    for sub in ast.walk(node):
        if isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Tuple) and len(sub.slice.elts) == 2:
            shape = sub.slice.elts[1]
            if isinstance(shape, ast.Constant) and isinstance(shape.value, str):
                return shape.value.split()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _shape_string(node.value)  # a string annotation: "Float[Tensor, '... c']"
    return None


# --------------------------------------------------------------------------- the signature


def hint_comment(info: ModuleInfo, function: cst.FunctionDef) -> dict[str, str]:
    """`# loopvec: shapes ...` on the def line or any line of a multi-line signature, as
    the verifier reads it: name -> spec text."""
    if not has_hint_comments(info.source):
        return {}  # no hint anywhere in the file: no need for positions
    try:
        first = info.position(function.name).start.line
        body = function.body
        last = first
        if isinstance(body, cst.IndentedBlock) and body.body:
            last = max(first, info.position(body.body[0]).start.line - 1)
    except KeyError:
        return {}  # a node outside the parsed module has no position
    return hint_comments(info.source, first, last)  # indexed once per file


_SEQUENCE_HEADS = {"list", "List", "tuple", "Tuple", "Sequence"}  # len() and torch.tensor() work


class Signature:
    """What a function's signature declares about each named parameter.

    `specs` holds the hint comment's spec where there is one that parses, else the
    annotation's (the verifier's order); `ranks` their ranks; `annotations` the
    annotations' text.
    """

    def __init__(self, info: ModuleInfo, function: cst.FunctionDef | None) -> None:
        self.params: tuple[str, ...] = ()
        self.annotations: dict[str, str] = {}
        self.specs: dict[str, Spec] = {}
        self.ranks: dict[str, Rank] = {}
        self.hinted: set[str] = set()
        if function is None:
            return
        params = parameters(function)
        self.params = tuple(p.name.value for p in params)
        for p in params:
            if p.annotation is None:
                continue
            name, text = p.name.value, code(p.annotation.annotation)
            self.annotations[name] = text
            spec = parse_annotation(text)
            if spec is not None:
                self.specs[name] = spec
                self.ranks[name] = _spec_rank(spec, text)
        for name, text in hint_comment(info, function).items():
            if name not in self.params:
                continue  # the verifier draws parameters only
            try:
                spec = parse_spec(text)
            except SpecError:
                continue  # the verifier reports it; the annotation still says what it says
            self.specs[name] = spec
            self.ranks[name] = _spec_rank(spec)
            self.hinted.add(name)

    def spec(self, name: str) -> Spec | None:
        return self.specs.get(name)

    def tensor(self, name: str) -> TensorSpec | None:
        spec = self.specs.get(name)
        return spec if isinstance(spec, TensorSpec) else None

    def rank(self, name: str) -> Rank:
        return self.ranks.get(name, UNKNOWN)

    def exact_rank(self, name: str) -> int | None:
        """The rank, when a hint or a shaped annotation fixes it."""
        return self.rank(name).exact

    def dtypes(self, name: str) -> tuple[str, ...] | None:
        spec = self.tensor(name)
        return tuple(spec.dtypes) if spec is not None and spec.dtypes else None

    def floating(self, name: str) -> bool:
        """A tensor whose every declared dtype is floating or complex."""
        dtypes = self.dtypes(name)
        return bool(dtypes) and set(dtypes) <= FLOATING_DTYPES

    def scalar(self, name: str) -> str | None:
        """`int`, `float` or `bool` for a parameter declared a Python number."""
        spec = self.specs.get(name)
        return spec.kind if isinstance(spec, ScalarSpec) else None

    def not_a_tensor(self, name: str) -> bool:
        """Declared a list, tuple or number: iterating it yields Python values."""
        return isinstance(self.specs.get(name), (ListSpec, TupleSpec, ScalarSpec))

    def fact(self, name: str) -> Fact | None:
        """The parameter as a `Fact` (see `function_facts`)."""
        spec = self.specs.get(name)
        fact = _fact_from_spec(spec, self.rank(name))
        # Iterable[float] may be a generator: no len(), no torch.tensor()
        if fact is not None and fact.kind == "list" and name not in self.hinted and \
                self.annotations[name].split("[")[0].split(".")[-1] not in _SEQUENCE_HEADS:
            return Fact("list")
        return fact


# --------------------------------------------------------------------------- declared ranks


def shape_unpacking(target: cst.BaseExpression, value: cst.BaseExpression) -> tuple[str, Rank] | None:
    """`n, c, h, w = x.shape` (or `x.size()`): x has exactly four dims, or the line raises;
    `n, *rest = x.shape`: at least one."""
    if not isinstance(target, (cst.Tuple, cst.List)):
        return None
    if isinstance(value, cst.Call) and not value.args:
        value = value.func
        if not (isinstance(value, cst.Attribute) and value.attr.value == "size"):
            return None
    elif not (isinstance(value, cst.Attribute) and value.attr.value == "shape"):
        return None
    if not isinstance(value.value, cst.Name):
        return None
    starred = sum(isinstance(el, cst.StarredElement) for el in target.elements)
    count = len(target.elements) - starred
    return value.value.value, Rank(count, None) if starred else Rank(count, count)


_RESHAPING_INPLACE = {"unsqueeze_", "squeeze_", "resize_", "resize_as_", "set_", "as_strided_"}


def _reshaped_in_place(node: cst.CSTNode) -> set[str]:
    """`x.unsqueeze_(0)`: the same name, another rank."""
    found: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            func = call.func
            if (isinstance(func, cst.Attribute) and func.attr.value in _RESHAPING_INPLACE
                    and isinstance(func.value, cst.Name)):
                found.add(func.value.value)

    traverse.visit(node, _V())
    return found


def declared_ranks(loop: Loop, info: ModuleInfo) -> dict[str, Rank]:
    """Ranks of the function's names as the user stated them, before the loop runs: the
    signature, then `n, d = x.shape` lines of the function body before the loop. A name
    the function rebinds anywhere (`x = x.flatten()`) loses its declared rank."""
    fn = loop.function
    if fn is None:
        return {}
    sig = Signature(info, fn)
    out = {name: rank for name, rank in sig.ranks.items() if rank != UNKNOWN}
    body = fn.body.body if isinstance(fn.body, cst.IndentedBlock) else ()
    for stmt in body:
        if info.position(stmt).start.line >= loop.line:
            break
        if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
            small = stmt.body[0]
            if isinstance(small, cst.Assign) and len(small.targets) == 1:
                found = shape_unpacking(small.targets[0].target, small.value)
                if found is not None:
                    out[found[0]] = found[1]
    for name in bound_names(fn.body, nested=True) | _reshaped_in_place(fn.body):
        out.pop(name, None)
    return out


# --------------------------------------------------------------------------- Python sequences

_SEQUENCE_CALLS = {"list", "tuple", "range", "sorted", "reversed", "dict", "set", "map", "filter"}
_SEQUENCE_METHODS = {"tolist", "split", "keys", "values", "items", "splitlines"}
_SEQUENCE_ANNOTATIONS = {"list", "tuple", "List", "Tuple", "Sequence", "MutableSequence", "Iterable", "Iterator",
                         "dict", "Dict", "set", "Set", "str", "range", "Generator", "Mapping"}


def sequence_value(value: cst.BaseExpression, info: ModuleInfo) -> bool:
    """`[...]`, `(...)`, a comprehension, a string, `list(...)`, `x.tolist()`: not a tensor."""
    if isinstance(value, (cst.List, cst.Tuple, cst.ListComp, cst.GeneratorExp, cst.Dict, cst.Set,
                          cst.DictComp, cst.SetComp, cst.SimpleString, cst.ConcatenatedString)):
        return True
    if isinstance(value, cst.Call):
        if info.builtin_name(value.func) in _SEQUENCE_CALLS:
            return True
        if isinstance(value.func, cst.Attribute) and value.func.attr.value in _SEQUENCE_METHODS:
            return True
    return False


def sequence_problem(function: cst.FunctionDef | None, names, info: ModuleInfo) -> str | None:
    """Why one of `names` is visibly a Python sequence rather than a tensor: annotated as
    one (`xs: list[float]`), defaulting to one, or assigned one in the function."""
    if function is None:
        return None
    names = set(names)
    if not names:
        return None
    for p in parameters(function):
        if p.name.value in names and p.annotation is not None:
            ann = p.annotation.annotation
            head = ann.value if isinstance(ann, cst.Subscript) else ann
            text = dotted(head) or ""
            if text.split(".")[-1] in _SEQUENCE_ANNOTATIONS:
                return f"`{p.name.value}` is annotated as a Python sequence, not a tensor"
        if p.name.value in names and p.default is not None and sequence_value(p.default, info):
            return f"`{p.name.value}` defaults to a Python sequence, not a tensor"

    for targets, value in _name_assigns(function):
        hit = [t for t in targets if t in names]
        if hit and sequence_value(value, info):
            return f"`{hit[0]}` is a Python sequence, not a tensor"
    return None


@per_node
def _name_assigns(function: cst.FunctionDef) -> tuple[tuple[tuple[str, ...], cst.BaseExpression], ...]:
    """`(names, value)` of each `name = value` in the function (not its nested functions), in order."""
    found: list[tuple[tuple[str, ...], cst.BaseExpression]] = []

    class _Assigns(cst.CSTVisitor):
        def visit_FunctionDef(self, node) -> bool:
            return node is function

        def visit_Assign(self, node: cst.Assign) -> None:
            targets = tuple(t.target.value for t in node.targets if isinstance(t.target, cst.Name))
            if targets:
                found.append((targets, node.value))

    traverse.visit(function, _Assigns())
    return tuple(found)


def python_lists(loop: Loop, info: ModuleInfo) -> list[str]:
    """Arrays the loop walks, reads, writes or indexes with that are visibly Python sequences."""
    if loop.function is None or loop.domain is None:
        return []
    names = {a.split(".")[0] for a in loop.domain.arrays}
    names |= {r.array.split(".")[0] for r in (*loop.reads, *loop.writes)}
    return [n for n in sorted(names) if sequence_problem(loop.function, {n}, info)]


# --------------------------------------------------------------------------- flow facts


@dataclass(frozen=True)
class Fact:
    """What a loop-invariant name holds, as far as the function's text shows.

    kind: tensor | float | int | bool | list. A list holds numbers (`items` has one
    kind) or tuples of numbers (`tuple_`, one kind per slot).
    """

    kind: str
    rank: int | None = None
    floating: bool = False  # a tensor of a floating or complex dtype: a Python float keeps it
    items: tuple[str, ...] = ()
    tuple_: bool = False
    local: bool = False  # a list literal bound in the function (mutable before the loop)


NUMBER_KINDS = ("float", "int")
_FLOAT_DTYPE_NAMES = {name for name, dtype in TORCH_DTYPES.items() if dtype in FLOATING_DTYPES}
ZERO_ARG_FLOAT_CASTS = {m: d for m, d in CAST_METHODS.items() if d in FLOATING_DTYPES and not d.startswith("complex")}
ZERO_ARG_INT_CASTS = {m: d for m, d in CAST_METHODS.items() if d.startswith(("int", "uint"))}
_FACTORY_SIZES = {"zeros", "ones", "empty", "rand", "randn"}
# the unary functions a sweep lifts, each "keep" (its input's dtype) or "float" (see loopvec.dtypes)
_UNARY_LIFTED = ("abs", "neg", "negative", "sign", "square", "relu", "floor", "ceil", "trunc", "round", "frac",
                 "sqrt", "rsqrt", "exp", "expm1", "exp2", "log", "log1p", "log2", "log10", "sin", "cos", "tan",
                 "asin", "acos", "atan", "sinh", "cosh", "tanh", "sigmoid", "erf", "erfc", "reciprocal", "sinc")
UNARY_DTYPES = {n: "keep" if n in KEEP_FUNCTIONS else "float" for n in _UNARY_LIFTED}
FUNCTIONAL_UNARY = {"relu", "sigmoid", "tanh", "silu", "gelu", "softplus", "elu", "leaky_relu", "logsigmoid"}
MATH_FNS = {
    "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan",
    "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "exp": "exp", "expm1": "expm1", "log1p": "log1p",
    "log2": "log2", "log10": "log10", "sqrt": "sqrt", "fabs": "abs", "erf": "erf", "erfc": "erfc",
    "atan2": "atan2", "hypot": "hypot",
}
_MATH_CONSTS = {"pi", "e", "tau", "inf"}


def _fact_from_spec(spec: Spec | None, rank: Rank = UNKNOWN) -> Fact | None:
    if isinstance(spec, TensorSpec):
        floating = bool(spec.dtypes) and set(spec.dtypes) <= FLOATING_DTYPES
        return Fact("tensor", rank.exact, floating)
    if isinstance(spec, ScalarSpec):
        return Fact(spec.kind)
    if isinstance(spec, ListSpec):
        item = spec.item
        if isinstance(item, ScalarSpec) and item.kind in NUMBER_KINDS:
            return Fact("list", items=(item.kind,))
        if isinstance(item, TupleSpec) and item.items and all(
                isinstance(s, ScalarSpec) and s.kind in NUMBER_KINDS for s in item.items):
            return Fact("list", items=tuple(s.kind for s in item.items), tuple_=True)
        return Fact("list")
    return None


def _param_facts(function: cst.FunctionDef, info: ModuleInfo) -> dict[str, Fact | None]:
    sig = Signature(info, function)
    facts: dict[str, Fact | None] = {name: sig.fact(name) for name in sig.params}
    for star in (function.params.star_arg, function.params.star_kwarg):
        if isinstance(star, cst.Param):
            facts[star.name.value] = None
    return facts


def _path_to(function: cst.FunctionDef, target: cst.CSTNode) -> list[tuple[tuple, int]]:
    """The blocks from the function body down to the statement holding `target`, each with
    the index of the statement on the way."""
    path: list[tuple[tuple, int]] = []
    body = function.body
    block = tuple(body.body) if isinstance(body, cst.IndentedBlock) else ()
    top = top_statement_index(function, target)  # the first step without walking the statements
    while True:
        for k, stmt in enumerate(block):
            if (k == top) if top is not None else contains(stmt, target):
                top = None
                path.append((block, k))
                if stmt is target or isinstance(stmt, cst.SimpleStatementLine):
                    return path
                inner = _inner_block(stmt, target)
                if inner is None:
                    return path
                block = inner
                break
        else:
            return path


def _inner_block(stmt: cst.BaseStatement, target: cst.CSTNode) -> tuple | None:
    for child in traverse.children(stmt):
        for sub in ([child] if not isinstance(child, (list, tuple)) else child):
            if isinstance(sub, cst.IndentedBlock) and contains(sub, target):
                return tuple(sub.body)
            if isinstance(sub, cst.CSTNode) and not isinstance(sub, cst.IndentedBlock) and contains(sub, target):
                found = _inner_block(sub, target) if not isinstance(sub, cst.BaseExpression) else None
                if found is not None:
                    return found
    return None



def function_facts(loop: Loop, info: ModuleInfo, statement: cst.CSTNode) -> dict[str, Fact | None]:
    """Facts about names as they stand when `statement` (the loop, or the statement holding
    a comprehension) starts: parameters, then the straight-line statements before it."""
    function = loop.function
    facts = _param_facts(function, info)
    for block, index in _path_to(function, statement):
        for stmt in block[:index]:
            _learn(stmt, facts, info)
        holder = block[index]
        if holder is not statement and not isinstance(holder, cst.SimpleStatementLine):
            # the compound statement around the loop: its header binds (for targets, with-as)
            for name in _header_bindings(holder):
                facts[name] = None
            # an enclosing loop: what its body binds after our loop reaches it next time round
            if isinstance(holder, (cst.For, cst.While)):
                for name in bound_names(holder.body):
                    facts[name] = None
            # for o in range(3): o is an int
            if isinstance(holder, cst.For) and isinstance(holder.target, cst.Name) \
                    and isinstance(holder.iter, cst.Call) and info.builtin_name(holder.iter.func) == "range":
                facts[holder.target.value] = Fact("int")
    return facts


def _header_bindings(stmt: cst.BaseStatement) -> set[str]:
    out: set[str] = set()
    if isinstance(stmt, cst.For):
        out |= bound_names(stmt.target)
    if isinstance(stmt, cst.With):
        for item in stmt.items:
            if item.asname is not None:
                out |= bound_names(item.asname)
    return out


def _learn(stmt: cst.BaseStatement, facts: dict[str, Fact | None], info: ModuleInfo) -> None:
    if not isinstance(stmt, cst.SimpleStatementLine):
        for name in bound_names(stmt):
            facts[name] = None
        _forget_used_lists(stmt, facts, set())
        return
    for small in stmt.body:
        bound: set[str] = set()
        if isinstance(small, cst.Assign) and len(small.targets) == 1:
            target = small.targets[0].target
            bound = bound_names(target)
            learned = _assign(target, small.value, facts, info)
            _forget_used_lists(small.value, facts, set())
            for name in bound:
                facts[name] = learned.get(name)
            for name, fact in learned.items():
                if name not in bound:
                    facts[name] = fact  # `H, W = image.shape` fixes image's rank
            continue
        if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name) and small.value is not None:
            facts[small.target.value] = infer(small.value, facts, info)
            continue
        bound = bound_names(small)
        _forget_used_lists(small, facts, bound)
        for name in bound:
            facts[name] = None


def _forget_used_lists(node: cst.CSTNode, facts: dict[str, Fact | None], skip: set[str]) -> None:
    # values = [1.0, 2.0]; values.append(3): a local list touched before the loop may hold anything
    for name in names_in(node) - skip:
        fact = facts.get(name)
        if fact is not None and fact.kind == "list" and fact.local:
            facts[name] = None


def _assign(target: cst.BaseExpression, value: cst.BaseExpression, facts, info: ModuleInfo) -> dict[str, Fact | None]:
    if isinstance(target, cst.Name):
        return {target.value: infer(value, facts, info)}
    if not isinstance(target, (cst.Tuple, cst.List)) or not all(isinstance(e.value, cst.Name) for e in target.elements):
        return {}
    names = [e.value.value for e in target.elements]
    # H, W = image.shape: two ints, and image is a 2-d tensor
    unpacked = shape_unpacking(target, value)
    if unpacked is not None:
        array, rank = unpacked
        out: dict[str, Fact | None] = {
            e.value.value: None if isinstance(e, cst.StarredElement) else Fact("int") for e in target.elements}
        prev = facts.get(array)
        if prev is None or prev.kind == "tensor":
            exact = rank.exact if rank.exact is not None else prev.rank if prev else None
            out[array] = Fact("tensor", exact, prev.floating if prev else False)
        return out
    # yy, xx = torch.meshgrid(a, b): each as many dimensions as there are inputs
    if isinstance(value, cst.Call) and info.qualname(value.func) == "torch.meshgrid":
        args = [a for a in value.args if a.keyword is None]
        if len(args) == 1 and isinstance(args[0].value, (cst.List, cst.Tuple)):
            inputs = [e.value for e in args[0].value.elements]
        else:
            inputs = [a.value for a in args]
        if len(inputs) == len(names) and all(a.star == "" for a in args):
            floating = all((infer(v, facts, info) or Fact("?")).floating for v in inputs)
            return {n: Fact("tensor", len(names), floating) for n in names}
        return {}
    if isinstance(value, (cst.Tuple, cst.List)) and len(value.elements) == len(names) and not any(
            isinstance(e, cst.StarredElement) for e in value.elements):
        return {n: infer(e.value, facts, info) for n, e in zip(names, value.elements)}
    return {}


def literal_number(node: cst.BaseExpression) -> str | None:
    """`int` or `float` for a number literal (`3`, `-0.5`); None for anything else."""
    value = number_value(node)
    return None if value is None else type(value).__name__


def _literal_list(node: cst.BaseExpression) -> Fact | None:
    """`[1.0, 2.5]` or `[(0, 1.5), (2, 3.0)]`: the kind of each slot, when every item agrees."""
    if not isinstance(node, (cst.List, cst.Tuple)) or not node.elements:
        return None
    slots: list[tuple[str, ...]] = []
    tuple_ = None
    for el in node.elements:
        if isinstance(el, cst.StarredElement):
            return None
        v = el.value
        if isinstance(v, (cst.Tuple, cst.List)):
            kinds = tuple(literal_number(e.value) for e in v.elements)
            is_tuple = True
        else:
            kinds = (literal_number(v),)
            is_tuple = False
        if None in kinds or (tuple_ is not None and is_tuple != tuple_):
            return None
        tuple_ = is_tuple
        slots.append(kinds)
    if len(set(slots)) != 1:
        return Fact("list", local=True)  # ints and floats mixed in one slot: no single dtype
    return Fact("list", items=slots[0], tuple_=bool(tuple_), local=True)


def float_dtype(node: cst.BaseExpression, info: ModuleInfo) -> bool | None:
    qual = info.qualname(node) or ""
    if qual.startswith("torch."):
        return qual[len("torch."):] in _FLOAT_DTYPE_NAMES
    return None


def infer(node: cst.BaseExpression, facts: dict[str, Fact | None], info: ModuleInfo) -> Fact | None:
    """What a loop-invariant expression holds, or None when its text does not say."""
    number = literal_number(node)
    if number is not None:
        return Fact(number)
    if isinstance(node, cst.Name):
        if node.value in ("True", "False"):
            return Fact("bool")
        return facts.get(node.value)
    if isinstance(node, (cst.List, cst.Tuple)):
        return _literal_list(node)
    if isinstance(node, cst.Attribute):
        if info.qualname(node.value) == "math" and node.attr.value in _MATH_CONSTS:
            return Fact("float")
        if node.attr.value == "ndim":
            return Fact("int")
        return None
    if isinstance(node, cst.UnaryOperation):
        inner = infer(node.expression, facts, info)
        if inner is None or isinstance(node.operator, cst.Not):
            return None
        if isinstance(node.operator, cst.BitInvert) and inner.kind != "tensor":
            return None
        return inner
    if isinstance(node, cst.BinaryOperation):
        return _infer_binary(node, facts, info)
    if isinstance(node, cst.Comparison):
        sides = [infer(node.left, facts, info)] + [infer(t.comparator, facts, info) for t in node.comparisons]
        if any(s is None for s in sides):
            return None
        tensors = [s for s in sides if s.kind == "tensor"]
        if not tensors:
            return Fact("bool")
        return Fact("tensor", _max_rank(tensors))
    if isinstance(node, cst.Subscript):
        return _infer_subscript(node, facts, info)
    if isinstance(node, cst.Call):
        return _infer_call(node, facts, info)
    return None


def _max_rank(facts: list[Fact]) -> int | None:
    ranks = [f.rank if f.kind == "tensor" else 0 for f in facts]
    return None if None in ranks else max(ranks)


def _infer_binary(node: cst.BinaryOperation, facts, info) -> Fact | None:
    a, b = infer(node.left, facts, info), infer(node.right, facts, info)
    if a is None or b is None or isinstance(node.operator, cst.MatrixMultiply):
        return None
    if "list" in (a.kind, b.kind):
        return None
    if a.kind != "tensor" and b.kind != "tensor":
        if isinstance(node.operator, cst.Divide):
            return Fact("float")
        if isinstance(node.operator, cst.Power) and "float" not in (a.kind, b.kind):
            return None  # 2 ** -1 is a float
        return Fact("float" if "float" in (a.kind, b.kind) else "int")
    floating = a.floating or b.floating or "float" in (a.kind, b.kind) or isinstance(node.operator, cst.Divide)
    return Fact("tensor", _max_rank([a, b]), floating)


def _infer_subscript(node: cst.Subscript, facts, info) -> Fact | None:
    base = node.value
    # x.shape[0]
    if isinstance(base, cst.Attribute) and base.attr.value == "shape":
        return Fact("int")
    fact = infer(base, facts, info)
    if fact is None or fact.kind != "tensor" or fact.rank is None:
        return None
    rank = fact.rank
    for el in node.slice:
        sl = el.slice
        if isinstance(sl, cst.Slice):
            continue
        value = sl.value
        if isinstance(value, cst.Name) and value.value == "None":
            rank += 1
        elif isinstance(value, cst.Integer) or (infer(value, facts, info) or Fact("?")).kind == "int":
            rank -= 1
        else:
            return None
    return Fact("tensor", rank, fact.floating) if rank >= 0 else None


def _infer_call(node: cst.Call, facts, info) -> Fact | None:
    qual = info.qualname(node.func)
    builtin = info.builtin_name(node.func)
    args = [a.value for a in node.args if a.keyword is None and not a.star]
    kwargs = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
    if builtin == "len" and len(args) == 1:
        return Fact("int")
    if builtin in ("int", "float") and len(args) == 1:
        return Fact(builtin)
    if qual is not None:
        module, _, name = qual.rpartition(".")
        if module == "math":
            if name in ("floor", "ceil", "trunc"):
                return Fact("int")
            return Fact("float") if name in MATH_FNS or name in ("pow", "copysign", "fmod", "radians",
                                                                   "degrees") else None
        if module != "torch":
            if module == "torch.nn.functional" and name in FUNCTIONAL_UNARY and args:
                inner = infer(args[0], facts, info)
                return inner if inner is not None and inner.kind == "tensor" else None
            return None
        dtype_kw = kwargs.get("dtype")
        dtype_float = float_dtype(dtype_kw, info) if dtype_kw is not None else None
        if name in ("arange", "linspace", "logspace"):
            if name == "arange":
                floating = dtype_float if dtype_float is not None else any(
                    (infer(a, facts, info) or Fact("?")).kind == "float" for a in args)
            else:
                floating = dtype_float if dtype_float is not None else True
            return Fact("tensor", 1, bool(floating))
        if name in _FACTORY_SIZES or name == "full":
            sizes = args[:1] if name == "full" else args
            if len(sizes) == 1 and isinstance(sizes[0], (cst.Tuple, cst.List)):
                rank = len(sizes[0].elements)
            elif all((infer(s, facts, info) or Fact("?")).kind == "int" for s in sizes):
                rank = len(sizes)
            else:
                return None
            floating = dtype_float if dtype_float is not None else name != "full"
            return Fact("tensor", rank, bool(floating))
        if name in UNARY_DTYPES and len(args) == 1:
            inner = infer(args[0], facts, info)
            if inner is None or inner.kind != "tensor":
                return None
            return Fact("tensor", inner.rank, inner.floating or UNARY_DTYPES[name] == "float")
        return None
    if isinstance(node.func, cst.Attribute):
        inner = infer(node.func.value, facts, info)
        method = node.func.attr.value
        if inner is None or inner.kind != "tensor":
            return None
        if method in ("size", "dim", "numel") and not kwargs:
            return Fact("int") if args or method != "size" else None
        if method in ZERO_ARG_FLOAT_CASTS and not args:
            return Fact("tensor", inner.rank, True)
        if method in ZERO_ARG_INT_CASTS or method == "bool":
            return Fact("tensor", inner.rank, False)
        if method in ("clone", "detach", "contiguous", "cpu", "cuda") or method in UNARY_DTYPES:
            return Fact("tensor", inner.rank, inner.floating or UNARY_DTYPES.get(method) == "float")
        if method == "to":
            dtypes = [a for a in [*args, *kwargs.values()] if float_dtype(a, info) is not None]
            if dtypes:
                return Fact("tensor", inner.rank, bool(float_dtype(dtypes[0], info)))
            return Fact("tensor", inner.rank, inner.floating)
        if method == "unsqueeze" and inner.rank is not None:
            return Fact("tensor", inner.rank + 1, inner.floating)
    return None
