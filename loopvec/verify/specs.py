"""What a hint or an annotation says one argument is.

Two sources, one vocabulary:

* hints, `# loopvec: shapes x=[n,3] idx=[n]:int64 k=int` on the def line or as
  `[tool.loopvec.hints]` entries: `name=[dim,...]` (dims are symbolic names shared
  across arguments, or ints), an optional `:dtype`, or a type such as `int`, `float`,
  `bool`, `list[float]`;
* annotations, read as text and never imported: `torch.Tensor`, jaxtyping's
  `Float[Tensor, "b c h w"]`, `int`, `list[tuple[float, float]]`, `Optional[...]`,
  `nn.Module` / `Callable[...]` (a parameter the function calls).

A dimension is a name shared across arguments, an int, `_` (anonymous), or a variadic
group: `*batch` (jaxtyping's "any number of dims", the same ones wherever the name
appears) or `...` (anonymous, independent per argument). Hints accept the same forms.

Nothing here imports torch; dtypes are names (`"float32"`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    dims: tuple[str | int, ...] | None = None  # None: rank unknown; "_" an anonymous dim
    dtypes: tuple[str, ...] | None = None  # None: whatever the code's values suggest


@dataclass(frozen=True)
class CallableSpec:
    """A model or function the code calls; the verifier passes a stand-in module."""


@dataclass(frozen=True)
class ScalarSpec:
    kind: str  # int | float | bool


@dataclass(frozen=True)
class ListSpec:
    item: Spec | None  # None: item type unknown (usage decides)
    tuple_: bool = False  # tuple[X, ...] rather than list[X]


@dataclass(frozen=True)
class TupleSpec:
    items: tuple[Spec | None, ...]


Spec = TensorSpec | ScalarSpec | ListSpec | TupleSpec | CallableSpec

ANONYMOUS_VARIADIC = "..."  # a dims entry: any number of dims, not shared


class SpecError(ValueError):
    """A hint that does not parse; the message quotes it."""


DTYPE_ALIASES = {
    "float": "float32", "float32": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16",
    "int": "int64", "long": "int64", "int64": "int64", "int32": "int32", "int16": "int16",
    "int8": "int8", "uint8": "uint8", "byte": "uint8", "bool": "bool",
    "complex64": "complex64", "complex128": "complex128",
}

# jaxtyping's dtype-annotated names, to the dtypes drawn for them.
_JAXTYPING = {
    "Float": ("float32", "float64"), "Float32": ("float32",), "Float64": ("float64",),
    "Float16": ("float16",), "BFloat16": ("bfloat16",),
    "Int": ("int64", "int32"), "Int64": ("int64",), "Int32": ("int32",), "Int16": ("int16",),
    "Int8": ("int8",), "UInt8": ("uint8",), "UInt": ("uint8",), "Integer": ("int64", "uint8"),
    "Bool": ("bool",), "Complex": ("complex64",), "Complex64": ("complex64",),
    "Complex128": ("complex128",), "Inexact": ("float32", "float64"),
    "Real": ("float32", "int64"), "Num": ("float32", "int64"), "Shaped": None,
}
_LEGACY_TENSORS = {
    "FloatTensor": ("float32",), "DoubleTensor": ("float64",), "HalfTensor": ("float16",),
    "LongTensor": ("int64",), "IntTensor": ("int32",), "ByteTensor": ("uint8",),
    "BoolTensor": ("bool",),
}
_SCALARS = {"int": "int", "float": "float", "bool": "bool"}
# Annotations of something called: nn.Module, torch.nn.Module, Callable, a bare `callable` hint.
_CALLABLES = {"Module", "Callable", "callable"}
_LISTS = {"list", "List", "Sequence", "MutableSequence", "Iterable"}
_HINT_COMMENT = re.compile(r"#\s*loopvec:\s*shapes\b(.*)$")
_HINT_NAME = re.compile(r"(?:^|\s)([A-Za-z_]\w*)\s*=")


def parse_hint_comment(text: str) -> dict[str, str]:
    """`# loopvec: shapes x=[n, 3] k=int` (anywhere in `text`) -> {"x": "[n, 3]", "k": "int"}."""
    m = _HINT_COMMENT.search(text)
    if not m:
        return {}
    body = m.group(1)
    starts = list(_HINT_NAME.finditer(body))
    out = {}
    for k, start in enumerate(starts):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(body)
        out[start.group(1)] = body[start.end() : end].strip()
    return out


def parse_spec(text: str) -> Spec:
    """One hint spec: `[n,3]`, `[*batch,c]`, `[n]:int64`, `[]`, `int`, `float`, `bool`,
    `list[float]`, `callable`."""
    text = text.strip()
    m = re.fullmatch(r"\[(.*)\]\s*(?::\s*(\w+))?", text)
    if m:
        dims = tuple(_dim(d) for d in m.group(1).split(",") if d.strip())
        dtype = m.group(2)
        if dtype is not None and dtype not in DTYPE_ALIASES:
            raise SpecError(f"unknown dtype {dtype!r} in hint {text!r}")
        return TensorSpec(dims, (DTYPE_ALIASES[dtype],) if dtype else None)
    spec = parse_annotation(text)
    if spec is None:
        raise SpecError(f"cannot read hint {text!r}: expected [dims][:dtype], int, float or bool")
    return spec


def _dim(text: str) -> str | int:
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    if re.fullmatch(r"\*?[A-Za-z_]\w*", text):
        return ANONYMOUS_VARIADIC if text == "*_" else text
    if text == "...":
        return ANONYMOUS_VARIADIC
    raise SpecError(f"cannot read dimension {text!r}: expected a name, *name, ... or an integer")


def parse_annotation(text: str) -> Spec | None:
    """The spec an annotation's source text describes, or None when it says nothing usable."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None
    return _annotation(node)


def _annotation(node: ast.expr) -> Spec | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return parse_annotation(node.value)  # a string annotation: "torch.Tensor"
    name = ast_dotted(node)
    if name is not None:
        last = name.rsplit(".", 1)[-1]
        if last == "Tensor" or last == "Parameter":
            return TensorSpec()
        if last in _LEGACY_TENSORS:
            return TensorSpec(dtypes=_LEGACY_TENSORS[last])
        if name in _SCALARS:
            return ScalarSpec(_SCALARS[name])
        if last in _CALLABLES:
            return CallableSpec()
        if last in _LISTS or name == "tuple":
            return ListSpec(None, tuple_=name == "tuple")
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _optional(node.left, node.right)
    if not isinstance(node, ast.Subscript):
        return None
    head = ast_dotted(node.value)
    if head is None:
        return None
    head = head.rsplit(".", 1)[-1]
    args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    if head in _JAXTYPING and len(args) == 2:
        dims = args[1].value if isinstance(args[1], ast.Constant) else None
        return TensorSpec(_jaxtyping_dims(dims) if isinstance(dims, str) else None, _JAXTYPING[head])
    if head == "Callable":
        return CallableSpec()
    if head == "Optional" and len(args) == 1:
        return _annotation(args[0])
    if head == "Union" and len(args) == 2:
        return _optional(args[0], args[1])
    if head in _LISTS and len(args) == 1:
        return ListSpec(_annotation(args[0]))
    if head in ("tuple", "Tuple"):
        if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
            return ListSpec(_annotation(args[0]), tuple_=True)
        return TupleSpec(tuple(_annotation(a) for a in args))
    return None


def _optional(a: ast.expr, b: ast.expr) -> Spec | None:
    """X | None is X: the None case is the caller's default, not a value to draw."""
    if isinstance(b, ast.Constant) and b.value is None:
        return _annotation(a)
    if isinstance(a, ast.Constant) and a.value is None:
        return _annotation(b)
    return None


def _jaxtyping_dims(text: str) -> tuple[str | int, ...]:
    """jaxtyping's shape string: "b c h w", "3 n", "*batch c", "#n", "_", "...".

    `*batch` stays a variadic group ("*batch"); `...` and `*_` are anonymous variadics.
    """
    dims: list[str | int] = []
    for token in text.split():
        token = token.split("=", 1)[0]
        if token in ("...", "*_"):
            dims.append(ANONYMOUS_VARIADIC)
            continue
        variadic = token.startswith("*")
        token = token.lstrip("*#")
        if variadic and token:
            dims.append("*" + token)
        elif token in ("", "_"):
            dims.append("_")
        elif token.isdigit():
            dims.append(int(token))
        else:
            dims.append(token)
    return tuple(dims)


def ast_dotted(node: ast.AST) -> str | None:
    """`a.b.c` for an `ast` chain of Names/Attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = ast_dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def format_spec(spec: Spec) -> str:
    """The hint text for `spec`, the inverse of `parse_spec`."""
    if isinstance(spec, TensorSpec):
        dims = "[" + ",".join(str(d) for d in spec.dims or ()) + "]"
        return dims + (f":{spec.dtypes[0]}" if spec.dtypes and len(spec.dtypes) == 1 else "")
    if isinstance(spec, ScalarSpec):
        return spec.kind
    if isinstance(spec, CallableSpec):
        return "callable"
    if isinstance(spec, ListSpec):
        inner = format_spec(spec.item) if spec.item is not None else "float"
        return f"tuple[{inner}, ...]" if spec.tuple_ else f"list[{inner}]"
    return "tuple[" + ", ".join(format_spec(s) if s else "float" for s in spec.items) + "]"
