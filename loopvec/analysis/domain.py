"""What a loop iterates over, normalised once.

`for i in range(len(x))`, `for i in range(x.shape[0])`, `for i in range(x.size(0))`,
`for i in range(n)` (with `n = len(x)` earlier), `for v in x`, `for i, v in enumerate(x)`,
`for a, b in zip(x, y)` and `for i, (a, b) in enumerate(zip(x, y))` all become one
`Domain`: an optional integer index, the element names bound to `array[index]`, the
arrays whose leading dimension is walked, and whether the walk is complete.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from .module import ModuleInfo, code


@dataclass(frozen=True)
class Domain:
    kind: str  # range | enumerate | zip | iter
    index: str | None  # the integer loop variable, if any
    elements: tuple[tuple[str, str], ...]  # (name, array): name is array[index] each turn
    arrays: tuple[str, ...]  # arrays whose leading dimension the loop walks
    extent: str  # number of iterations, as code: "len(x)", "x.shape[0]", "n"
    full: bool  # starts at 0, steps by 1 and stops at the full extent
    start: str = "0"
    step: str = "1"

    @property
    def names(self) -> tuple[str, ...]:
        out = tuple(name for name, _ in self.elements)
        return ((self.index,) if self.index else ()) + out


class DomainError(Exception):
    """The iteration is not one loopvec can describe; the message says why."""


def _length_of(node: cst.BaseExpression, info: ModuleInfo) -> str | None:
    """The array whose leading dimension `node` measures: len(x), x.shape[0], x.size(0)."""
    if isinstance(node, cst.Call):
        if info.builtin_name(node.func) == "len" and len(node.args) == 1:
            return code(node.args[0].value)
        if (
            isinstance(node.func, cst.Attribute)
            and node.func.attr.value == "size"
            and len(node.args) == 1
            and _is_zero(node.args[0].value)
        ):
            return code(node.func.value)
    if isinstance(node, cst.Subscript) and len(node.slice) == 1:
        target = node.value
        elem = node.slice[0].slice
        if (
            isinstance(target, cst.Attribute)
            and target.attr.value == "shape"
            and isinstance(elem, cst.Index)
            and _is_zero(elem.value)
        ):
            return code(target.value)
    return None


def _is_zero(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Integer) and node.evaluated_value == 0


def _is_one(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Integer) and node.evaluated_value == 1


def _target_names(target: cst.BaseExpression) -> list[str] | None:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        names = []
        for el in target.elements:
            if not isinstance(el.value, cst.Name):
                return None
            names.append(el.value.value)
        return names
    return None


def _call_name(node: cst.BaseExpression, info: ModuleInfo) -> str | None:
    if isinstance(node, cst.Call):
        return info.builtin_name(node.func)
    return None


def _simple_iterable(node: cst.BaseExpression) -> str:
    """An iterable we may treat as an array: a name, attribute or subscript chain."""
    if isinstance(node, (cst.Name, cst.Attribute, cst.Subscript)):
        return code(node)
    raise DomainError(f"iterates over `{code(node)}`, not over an array")


def build_domain(
    target: cst.BaseExpression,
    iterable: cst.BaseExpression,
    info: ModuleInfo,
    lengths: dict[str, str],
) -> Domain:
    """`lengths` maps names like `n` to the array they measure (`n = len(x)` earlier)."""
    kind = _call_name(iterable, info)
    if kind == "range":
        return _range_domain(target, iterable, info, lengths)
    if kind == "enumerate":
        call = iterable
        assert isinstance(call, cst.Call)
        # enumerate(x, 1) shifts the index: a rewrite from x[i] would be off by one
        if len(call.args) != 1:
            raise DomainError("enumerate with a start offset")
        if not isinstance(target, cst.Tuple) or len(target.elements) != 2:
            raise DomainError("enumerate target is not `i, value`")
        idx = target.elements[0].value
        if not isinstance(idx, cst.Name):
            raise DomainError("enumerate index is not a plain name")
        inner = build_domain(target.elements[1].value, call.args[0].value, info, lengths)
        if inner.index is not None:
            raise DomainError("enumerate over range")
        return Domain("enumerate", idx.value, inner.elements, inner.arrays, inner.extent, True)
    if kind == "zip":
        call = iterable
        assert isinstance(call, cst.Call)
        names = _target_names(target)
        if names is None or len(names) != len(call.args):
            raise DomainError("zip target does not unpack to one name per sequence")
        # zip(..., strict=True) and starred args change what the loop sees
        if any(a.keyword is not None or a.star for a in call.args):
            raise DomainError("zip with keywords or starred arguments")
        arrays = tuple(_simple_iterable(a.value) for a in call.args)
        return Domain("zip", None, tuple(zip(names, arrays)), arrays, f"len({arrays[0]})", True)
    if kind is not None:
        raise DomainError(f"iterates over `{kind}(...)`")
    if not isinstance(target, cst.Name):
        raise DomainError("unpacks each element of a tensor")
    array = _simple_iterable(iterable)
    return Domain("iter", None, ((target.value, array),), (array,), f"len({array})", True)


def _range_domain(target, call: cst.Call, info: ModuleInfo, lengths: dict[str, str]) -> Domain:
    if not isinstance(target, cst.Name):
        raise DomainError("range target is not a plain name")
    if any(a.keyword is not None or a.star for a in call.args) or not 1 <= len(call.args) <= 3:
        raise DomainError("range with unusual arguments")
    args = [a.value for a in call.args]
    start, stop, step = (
        (cst.Integer("0"), args[0], cst.Integer("1"))
        if len(args) == 1
        else (args[0], args[1], args[2] if len(args) == 3 else cst.Integer("1"))
    )
    array = _length_of(stop, info)
    if array is None and isinstance(stop, cst.Name):
        array = lengths.get(stop.value)
    full = _is_zero(start) and _is_one(step)
    arrays = (array,) if array else ()
    return Domain("range", target.value, (), arrays, code(stop), full, code(start), code(step))
