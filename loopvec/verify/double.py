"""A method's instance built as a test double: the attributes it reads, drawn as inputs.

Real loops live in methods (a transform's `__call__`, a metric's `compute`, a module's
`forward`) of classes whose `__init__` needs arguments the verifier cannot guess
(`ScaleTransform(factors)`). Such an instance is built the way a test double is:
`object.__new__(cls)` (an `nn.Module` then gets `nn.Module.__init__`), holding only the
attributes the method reads (`loading.bare_instance`). Those attributes are inputs like
parameters: the method's `self.X` reads become names `self.X` that usage facts read as
parameters (`self.factors[i]` ties `factors` to the loop's size, `self.eps` used as a
number is a float), and how `__init__` assigns them gives a kind where usage says little
(`self.factor = factor` with `factor: float`, `self.weight = nn.Parameter(torch.empty(o,
i))` a 2-D tensor, `self.heads = nn.ModuleList(...)` a list of stand-in models).
Methods, properties and class attributes are the class's own and are used as they are.

Plain `ast` on the class's source; nothing here builds an instance.
"""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap
from typing import Any

from loopvec.observed import SELF

from .plan import Param
from .specs import CallableSpec, ListSpec, ScalarSpec, Spec, TensorSpec, parse_annotation

# torch factories whose positional arguments (or one tuple of them) are a new tensor's sizes
_SIZED = frozenset("empty zeros ones rand randn full".split())
# containers of modules and parameters in torch.nn
_MODULE_LISTS = frozenset({"ModuleList"})
_TENSOR_LISTS = frozenset({"ParameterList"})
_WRAPS = frozenset({"Parameter", "Buffer"})  # nn.Parameter(t): t's kind


def drawn_attributes(owner: type, ref: ast.FunctionDef, new: ast.FunctionDef, hints: dict[str, Spec]
                     ) -> tuple[ast.FunctionDef, list[Param], dict[str, Spec]]:
    """For the plan of a method called on test doubles: the original method with its
    attributes as parameters (for usage facts), those parameters, and the hints with
    what `__init__` says of them added (a user's hint wins)."""
    names = attributes(owner, [ref, new])
    names += tuple(k[len(SELF):] for k in hints if k.startswith(SELF) and k[len(SELF):] not in names)
    return as_parameters(ref, names), [Param(SELF + n) for n in names], {**specs(owner, [ref, new], names), **hints}


def attributes(owner: type, nodes: list[ast.FunctionDef | ast.AsyncFunctionDef]) -> tuple[str, ...]:
    """The attributes of `self` the methods `nodes` (and the class's methods they call)
    read before they set them, less those the class itself holds."""
    names: dict[str, None] = {}
    seen: set[str] = set()
    todo = list(nodes)
    while todo:
        node = todo.pop(0)
        me = _self_name(node)
        if me is None:
            continue
        for name in _reads(node, me):
            held = _on_class(owner, name)
            if held is None:
                names.setdefault(name)
            elif name not in seen and inspect.isfunction(_function_of(held)):
                seen.add(name)  # a helper method: what it reads is read too
                helper = _parse(_function_of(held))
                if helper is not None:
                    todo.append(helper)
    return tuple(n for n in names if not _set_by_module_init(owner, n))


def as_parameters(node: ast.FunctionDef | ast.AsyncFunctionDef, names: tuple[str, ...]) -> ast.FunctionDef:
    """A copy of the method in which `self.X` (X in `names`) is a keyword-only parameter
    named `self.X`, for `usage.usage_facts`: its facts are the attribute's."""
    me = _self_name(node)
    node = copy.deepcopy(node)
    wanted = set(names)

    class Rename(ast.NodeTransformer):
        def visit_Attribute(self, e: ast.Attribute) -> ast.AST:
            if isinstance(e.value, ast.Name) and e.value.id == me and e.attr in wanted:
                return ast.copy_location(ast.Name(SELF + e.attr, e.ctx), e)
            return self.generic_visit(e)

    node = Rename().visit(node)
    node.args.kwonlyargs = [*node.args.kwonlyargs, *(ast.arg(SELF + n) for n in names)]
    node.args.kw_defaults = [*node.args.kw_defaults, *(None for _ in names)]
    return node


def specs(owner: type, nodes: list[ast.FunctionDef | ast.AsyncFunctionDef],
          names: tuple[str, ...]) -> dict[str, Spec]:
    """`self.X` -> the kind `__init__` gives X, or the methods' calls of its items say."""
    found: dict[str, Spec] = {}
    for node in nodes:
        me = _self_name(node)
        if me is not None:
            for name in _items_called(node, me):
                found[SELF + name] = ListSpec(CallableSpec())
    for init in _inits(owner):
        me = _self_name(init)
        if me is None:
            continue
        params = _init_params(init)
        for target, value, annotation in _assignments(init, me):
            if target not in names or SELF + target in found:
                continue
            spec = parse_annotation(annotation) if annotation else _spec_of(value, params)
            if spec is not None:
                found[SELF + target] = spec
    return found


# --------------------------------------------------------------------------- internals


def _self_name(node: ast.AST) -> str | None:
    args = getattr(node, "args", None)
    if args is None:
        return None
    positional = [*args.posonlyargs, *args.args]
    if not positional or any(isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod")
                             for d in node.decorator_list):
        return None
    return positional[0].arg


def _reads(node: ast.AST, me: str) -> list[str]:
    """`self.X` reads in source order; an attribute whose first use sets it is the
    method's own (`self.total = 0` before the loop)."""
    uses: list[tuple[tuple[int, int], str, bool]] = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == me:
            uses.append(((sub.lineno, sub.col_offset), sub.attr, isinstance(sub.ctx, ast.Load)))
    for sub in ast.walk(node):  # `self.total += x` reads before it writes
        if isinstance(sub, ast.AugAssign) and isinstance(sub.target, ast.Attribute):
            t = sub.target
            if isinstance(t.value, ast.Name) and t.value.id == me:
                uses.append(((t.lineno, t.col_offset - 1), t.attr, True))
    first: dict[str, bool] = {}
    for _, name, load in sorted(uses):
        first.setdefault(name, load)
    return [name for name, load in first.items() if load]


def _on_class(owner: type, name: str) -> Any:
    try:
        return inspect.getattr_static(owner, name)
    except AttributeError:
        return None


def _function_of(held: Any) -> Any:
    return getattr(held, "__func__", getattr(held, "fget", held))


def _parse(func: Any) -> ast.FunctionDef | None:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return None
    return next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)


def _set_by_module_init(owner: type, name: str) -> bool:
    """`training`, `_parameters`, ...: an `nn.Module` double gets them from `nn.Module.__init__`."""
    import torch

    if not issubclass(owner, torch.nn.Module):
        return False
    probe = object.__new__(owner)
    torch.nn.Module.__init__(probe)
    return name in vars(probe)


def _inits(owner: type) -> list[ast.FunctionDef]:
    """The `__init__`s of the user's classes in the MRO, most derived first."""
    out = []
    for cls in owner.__mro__:
        init = vars(cls).get("__init__")
        module = getattr(cls, "__module__", "") or ""
        if init is None or module == "builtins" or module.startswith("torch."):
            continue
        node = _parse(init)
        if node is not None:
            out.append(node)
    return out


def _init_params(init: ast.FunctionDef) -> dict[str, tuple[str | None, ast.expr | None]]:
    """name -> (annotation text, default) of `__init__`'s parameters."""
    a = init.args
    positional = [*a.posonlyargs, *a.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = [*zip(positional, defaults), *zip(a.kwonlyargs, a.kw_defaults)]
    return {arg.arg: (ast.unparse(arg.annotation) if arg.annotation is not None else None, default)
            for arg, default in pairs}


def _assignments(init: ast.FunctionDef, me: str):
    """(attribute, value, annotation text or None) for `self.X = v`, `self.X: T = v` and
    `self.register_buffer("X", v)`."""
    for sub in ast.walk(init):
        if isinstance(sub, ast.Assign):
            for target in sub.targets:
                if _is_self_attr(target, me):
                    yield target.attr, sub.value, None
        elif isinstance(sub, ast.AnnAssign) and _is_self_attr(sub.target, me):
            yield sub.target.attr, sub.value, ast.unparse(sub.annotation)
        elif (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
              and sub.func.attr in ("register_buffer", "register_parameter") and len(sub.args) >= 2
              and isinstance(sub.args[0], ast.Constant) and isinstance(sub.args[0].value, str)):
            yield sub.args[0].value, sub.args[1], None


def _is_self_attr(e: ast.expr, me: str) -> bool:
    return isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == me


def _spec_of(value: ast.expr | None, params: dict[str, tuple[str | None, ast.expr | None]]) -> Spec | None:
    """What an assigned value says of the attribute's kind; None when it says nothing sure."""
    if isinstance(value, ast.Name) and value.id in params:
        annotation, default = params[value.id]
        if annotation is not None:
            return parse_annotation(annotation)
        return _spec_of(default, {}) if default is not None else None
    if isinstance(value, ast.Constant) and type(value.value) in (int, float, bool):
        return ScalarSpec(type(value.value).__name__)
    if isinstance(value, (ast.List, ast.Tuple, ast.ListComp)):
        items = value.elts if not isinstance(value, ast.ListComp) else [value.elt]
        if items and all(isinstance(_spec_of(i, params), CallableSpec) for i in items):
            return ListSpec(CallableSpec(), tuple_=isinstance(value, ast.Tuple))
        return None
    if not isinstance(value, ast.Call):
        return None
    name = _dotted(value.func)
    if name is None:
        return None
    head, _, last = name.rpartition(".")
    if last in ("float", "int", "bool") and not head:
        return ScalarSpec(last)
    if last in _WRAPS and value.args:
        return _spec_of(value.args[0], params) or TensorSpec()
    if head == "torch" and last in _SIZED:
        sizes = value.args[:1] if last == "full" else value.args
        if len(sizes) == 1 and isinstance(sizes[0], (ast.Tuple, ast.List)):
            sizes = sizes[0].elts
        if sizes and not any(isinstance(s, ast.Starred) for s in sizes):
            return TensorSpec(tuple("_" for _ in sizes))
        return TensorSpec()
    if name.startswith("torch.") and last in ("tensor", "as_tensor", "arange", "linspace", "eye"):
        return TensorSpec()
    if last in _MODULE_LISTS:
        return ListSpec(CallableSpec())
    if last in _TENSOR_LISTS:
        return ListSpec(TensorSpec())
    if head.endswith("nn") and last[:1].isupper():
        return CallableSpec()  # nn.Linear(...), nn.Sequential(...): a module the method calls
    return None


def _dotted(e: ast.expr) -> str | None:
    parts = []
    while isinstance(e, ast.Attribute):
        parts.append(e.attr)
        e = e.value
    if not isinstance(e, ast.Name):
        return None
    return ".".join([e.id, *reversed(parts)])


def _items_called(node: ast.AST, me: str) -> set[str]:
    """Attributes whose items the method calls: `self.heads[h](x)`, `for head in
    self.heads: head(x)` — a list of models, whatever `__init__` built it from."""
    out: set[str] = set()
    loops: dict[str, str] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Subscript) and _is_self_attr(sub.func.value, me):
            out.add(sub.func.value.attr)
        if isinstance(sub, (ast.For, ast.comprehension)) and isinstance(sub.target, ast.Name):
            it = sub.iter
            if isinstance(it, ast.Call) and _dotted(it.func) == "enumerate" and it.args:
                it = it.args[0]
            if _is_self_attr(it, me):
                loops[sub.target.id] = it.attr
        if isinstance(sub, (ast.For, ast.comprehension)) and isinstance(sub.target, ast.Tuple) and \
                isinstance(sub.iter, ast.Call) and _dotted(sub.iter.func) == "enumerate" and sub.iter.args and \
                _is_self_attr(sub.iter.args[0], me) and len(sub.target.elts) == 2 and \
                isinstance(sub.target.elts[1], ast.Name):
            loops[sub.target.elts[1].id] = sub.iter.args[0].attr
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in loops:
            out.add(loops[sub.func.id])
    return out
