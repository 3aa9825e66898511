"""Observed inputs: the kinds of values a function received in a real run (`loopvec record`).

The vocabulary both sides share: the tracer (`loopvec.record`, inside the user's process)
describes every argument of a call, and the `self` attributes a method reads, as a `Kind`;
the calls of one function are kept as a `Record` of distinct `Signature`s and a few small
samples. The engine turns a record into hint specs (`hints`) the verifier plans inputs
from; the verifier's worker replays the samples (`read_samples`) and builds the instance of
a method from its observed attributes (`attribute_constants`).

Nothing here imports torch at import time: the tracer runs in every Python process of the
recorded command, and the engine reads records without it.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

SELF = "self."  # hint names of a method's attributes: `self.factors=[n]`
_ITEMS = 8  # item kinds kept per list or tuple
_RAGGED_SCAN = 1000  # items looked at to tell a ragged list of tensors
_SCALARS = ("int", "float", "bool")
# jaxtyping's name for a dtype: a list item's spec is an annotation, `list[Float32[Tensor, "3"]]`
_JAXTYPING = {
    "float32": "Float32", "float64": "Float64", "float16": "Float16", "bfloat16": "BFloat16",
    "int64": "Int64", "int32": "Int32", "int16": "Int16", "int8": "Int8", "uint8": "UInt8",
    "bool": "Bool", "complex64": "Complex64", "complex128": "Complex128",
}
_SYMBOLS = "n m k p q r s t u v w".split()
# A larger size that never changed (an embedding width of 768) is still drawn small: the
# verifier draws every element, and an axis shared by equal sizes keeps the shapes agreeing.
_LITERAL_MAX = 16


@dataclass(frozen=True)
class Kind:
    """What one value was, without the value (except a scalar attribute's, which is
    configuration rather than data: `self.eps = 1e-5`).

    `kind`: tensor, ndarray, list, tuple, size (`torch.Size`), int, float, bool, none, str,
    module, dict, other. Lists and tuples keep their length, the kinds of their first
    items, and whether their tensors differ in shape (`ragged`).
    """

    kind: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    device: str | None = None
    contiguous: bool | None = None
    length: int | None = None
    items: tuple[Kind, ...] = ()
    ragged: bool = False
    cls: str | None = None  # a module's or another object's class, `pkg.mod.Name`
    value: Any = None  # a scalar attribute's value

    def text(self) -> str:
        """`tensor[4, 3] float32`, `list[3] of tensor[2] float32 (ragged)`, ..."""
        if self.kind in ("tensor", "ndarray"):
            layout = "" if self.contiguous in (None, True) else ", non-contiguous"
            where = "" if self.device in (None, "cpu") else f" on {self.device}"
            return f"{self.kind}[{', '.join(map(str, self.shape or ()))}] {self.dtype}{where}{layout}"
        if self.kind in ("list", "tuple", "size"):
            inner = sorted({k.text() for k in self.items})
            of = f" of {' | '.join(inner)}" if inner else ""
            return f"{self.kind}[{self.length}]{of}{' (ragged)' if self.ragged else ''}"
        if self.kind in ("module", "other"):
            return f"{self.kind} {self.cls}"
        return self.kind if self.value is None else f"{self.kind} {self.value!r}"


@dataclass(frozen=True)
class Signature:
    """One call: the kind of every argument passed, and of every attribute read."""

    args: tuple[tuple[str, Kind], ...]
    attrs: tuple[tuple[str, Kind], ...] = ()

    def text(self) -> str:
        return ", ".join(f"{name}: {k.text()}" for name, k in (*self.args, *((SELF + n, k) for n, k in self.attrs)))


@dataclass
class Record:
    """What `loopvec record` saw of one function: calls per distinct signature (at most
    `record.MAX_SIGNATURES` of them) and the file names of a few small samples, each a
    `{name: value}` of one call (attributes named `self.X`), saved with `torch.save`."""

    path: str
    qualname: str
    signatures: dict[Signature, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    calls: int = 0

    def summary(self) -> str:
        kinds = len(self.signatures)
        samples = f", {len(self.samples)} sample{'s' if len(self.samples) != 1 else ''} kept" if self.samples else ""
        return f"{self.calls} call{'s' if self.calls != 1 else ''}, {kinds} signature{'s' if kinds != 1 else ''}{samples}"


# --------------------------------------------------------------------------- describing values


def describe(value: Any, keep_value: bool = False, depth: int = 0) -> Kind:
    """The kind of `value` (`keep_value`: a scalar keeps its value)."""
    torch = sys.modules.get("torch")  # not imported: no value can be a tensor
    numpy = sys.modules.get("numpy")
    if value is None:
        return Kind("none")
    if isinstance(value, bool):  # a scalar's value is kept where asked (an attribute, an argument)
        return Kind("bool", value=value if keep_value else None)
    if isinstance(value, int):
        return Kind("int", value=value if keep_value else None)
    if isinstance(value, float):
        return Kind("float", value=value if keep_value else None)
    if isinstance(value, str):
        return Kind("str", value=value if keep_value and len(value) <= 200 else None)
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return Kind("tensor", str(value.dtype).removeprefix("torch."), tuple(value.shape), value.device.type,
                        value.is_contiguous())
        if isinstance(value, torch.Size):
            return Kind("size", length=len(value), items=(Kind("int"),) if len(value) else ())
        if isinstance(value, torch.nn.Module):
            return Kind("module", cls=_class_name(value), length=len(value) if hasattr(value, "__len__") else None)
    if numpy is not None and isinstance(value, numpy.ndarray):
        return Kind("ndarray", str(value.dtype), tuple(value.shape), "cpu", bool(value.flags["C_CONTIGUOUS"]))
    if isinstance(value, (list, tuple)) and depth < 3:
        items = tuple(describe(v, depth=depth + 1) for v in value[:_ITEMS])
        return Kind("list" if isinstance(value, list) else "tuple", length=len(value), items=items,
                    ragged=_ragged(value, torch))
    if isinstance(value, dict):
        return Kind("dict", length=len(value))
    return Kind("other", cls=_class_name(value))


def _ragged(items: list | tuple, torch: Any) -> bool:
    if torch is None:
        return False
    shapes = {tuple(v.shape) for v in items[:_RAGGED_SCAN] if isinstance(v, torch.Tensor)}
    return len(shapes) > 1


def _class_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------- records to hints


def _structure(k: Kind) -> tuple:
    """A kind with its sizes left out: calls that differ only in sizes share one."""
    if k.kind in ("tensor", "ndarray"):
        return (k.kind, k.dtype, len(k.shape or ()))
    if k.kind in ("list", "tuple", "size"):
        return (k.kind, k.ragged, tuple(sorted({_structure(i) for i in k.items})))
    if k.kind in _SCALARS:
        return (k.kind,)
    return (k.kind, k.cls)


def _signature_structure(sig: Signature) -> tuple:
    return (tuple((n, _structure(k)) for n, k in sig.args), tuple((n, _structure(k)) for n, k in sig.attrs))


def groups(record: Record) -> list[list[tuple[Signature, int]]]:
    """The signatures by structure (same kinds, dtypes and ranks), the most calls first."""
    by: dict[tuple, list[tuple[Signature, int]]] = defaultdict(list)
    for sig, count in record.signatures.items():
        by[_signature_structure(sig)].append((sig, count))
    return sorted(by.values(), key=lambda g: -sum(c for _, c in g))


def main_group(record: Record) -> list[tuple[Signature, int]]:
    """The signatures of the most frequent structure."""
    found = groups(record)
    return found[0] if found else []


def hints(record: Record) -> tuple[tuple[str, str], ...]:
    """The hints of the most frequent kind of call (`group_hints`)."""
    return group_hints(main_group(record))


def other_hints(record: Record, top: int = 3) -> list[tuple[tuple[str, str], ...]]:
    """The hints of the next most frequent kinds of call (a list of curves in most calls, a
    [C, T] tensor in others): the verifier draws some examples of each."""
    return [h for h in map(group_hints, groups(record)[1:1 + top]) if h]


def group_hints(group: list[tuple[Signature, int]]) -> tuple[tuple[str, str], ...]:
    """Hint specs (`name`, `[n,3]:float32`) for the arguments and attributes of the most
    frequent kind of call. A size is a literal where it was 0 or 1, or the same (and at
    most `_LITERAL_MAX`) in calls that differed in others; otherwise a name, shared by
    every axis that always had the same size (`x=[n] self.factors=[n]`). Kinds the spec grammar cannot state (a
    ragged list, a numpy array, another object) get no hint: the samples carry them."""
    if not group:
        return ()
    sigs = [sig for sig, _ in group]
    named = [tuple((n, k) for n, k in s.args) + tuple((SELF + n, k) for n, k in s.attrs) for s in sigs]
    names = [n for n, _ in named[0]]
    taken = set(names) | {n.removeprefix(SELF) for n in names}
    symbols = (s for s in [*_SYMBOLS, *(f"n{i}" for i in range(1, 100))] if s not in taken)
    # the sizes each tensor axis had, call by call
    axes: dict[tuple[str, int], tuple[int, ...]] = {}
    for pos, name in enumerate(names):
        first = named[0][pos][1]
        if first.kind != "tensor":
            continue
        for axis in range(len(first.shape or ())):
            axes[(name, axis)] = tuple(call[pos][1].shape[axis] for call in named)
    varied = len(set(zip(*axes.values()))) > 1  # the calls differed in some size
    symbol_of: dict[tuple[int, ...], str] = {}
    dims: dict[tuple[str, int], str] = {}
    for ax, sizes in axes.items():
        constant = len(set(sizes)) == 1
        if constant and (sizes[0] <= 1 or varied and sizes[0] <= _LITERAL_MAX):
            dims[ax] = str(sizes[0])
            continue
        if sizes not in symbol_of:
            symbol_of[sizes] = next(symbols)
        dims[ax] = symbol_of[sizes]
    out = []
    for pos, name in enumerate(names):
        values = {call[pos][1].value for call in named}
        if named[0][pos][1].kind in _SCALARS and len(values) == 1:
            continue  # one value in every call (`dim=1`): drawing others would try calls the code never gets
        spec = _spec(name, named[0][pos][1], dims)
        if spec is not None:
            out.append((name, spec))
    return tuple(out)


def _spec(name: str, k: Kind, dims: dict[tuple[str, int], str]) -> str | None:
    if k.kind == "tensor":
        return "[" + ",".join(dims[(name, a)] for a in range(len(k.shape or ()))) + f"]:{k.dtype}"
    if k.kind in _SCALARS:
        return k.kind
    if k.kind == "module":
        # a container (ModuleList, Sequential) is iterated or indexed, not only called: the
        # recorded one, from a sample, rather than a stand-in model
        return "callable" if k.length is None else None
    if k.kind == "size":
        return "tuple[int, ...]"
    if k.kind in ("list", "tuple") and not k.ragged:
        item = _item_spec(k.items)
        if item is None:
            return None
        return f"tuple[{item}, ...]" if k.kind == "tuple" else f"list[{item}]"
    return None


def _item_spec(items: tuple[Kind, ...]) -> str | None:
    """The annotation of a list's items, when they are all of one kind."""
    structures = {_structure(i) for i in items}
    if len(structures) != 1:
        return None
    item = items[0]
    if item.kind in _SCALARS:
        return item.kind
    if item.kind == "tensor" and item.dtype in _JAXTYPING:
        axes = " ".join(["_"] * len(item.shape or ()))
        return f'{_JAXTYPING[item.dtype]}[Tensor, "{axes}"]'
    return None


def attribute_constants(record: Record) -> dict[str, Any]:
    """Scalar attributes (`self.eps`, `self.mode`) that held one value in every call of the
    main kind: the instance gets that value rather than a drawn one."""
    group = main_group(record)
    if not group:
        return {}
    values: dict[str, set] = defaultdict(set)
    for sig, _ in group:
        for name, k in sig.attrs:
            if k.kind in (*_SCALARS, "str", "none"):
                values[name].add((k.kind, k.value))
    return {name: next(iter(v))[1] for name, v in values.items() if len(v) == 1}


def attribute_names(record: Record) -> tuple[str, ...]:
    """The attributes the method read in calls of the main kind."""
    group = main_group(record)
    return tuple(n for n, _ in group[0][0].attrs) if group else ()


def read_record(entry: str) -> Record | None:
    """The record stored at `entry` (`cache.observed_entry`), or None."""
    import pickle

    try:
        with open(entry, "rb") as fh:
            record = pickle.load(fh)
    except Exception:  # missing, truncated, or written by another version: nothing observed
        return None
    return record if isinstance(record, Record) else None


def read_samples(entry: str, record: Record) -> list[dict[str, Any]]:
    """The record's samples (`{name: value}`, attributes as `self.X`), on the CPU; one that
    no longer loads (a class renamed since) is left out."""
    import os

    import torch

    out = []
    for name in record.samples:
        try:
            sample = torch.load(os.path.join(os.path.dirname(entry), name), map_location="cpu", weights_only=False)
        except Exception:
            continue
        if isinstance(sample, dict):
            out.append(sample)
    return out


def describe_kinds(record: Record, top: int = 3) -> list[str]:
    """The most frequent signatures, as text, most frequent first."""
    ranked = Counter(record.signatures).most_common(top)
    return [f"{count}x {sig.text()}" for sig, count in ranked]


# --------------------------------------------------------------------------- the verifier's side


@dataclass
class Replay:
    """What the verifier's worker takes from a record: the samples to run first, the
    attribute values every instance gets unless the example draws them (`fixed`: scalar
    constants, and values of kinds no hint states, from the first sample that holds them),
    and a line for the report."""

    samples: list[dict[str, Any]]
    fixed: dict[str, Any]
    note: str
    others: list[tuple[tuple[str, str], ...]] = field(default_factory=list)  # `other_hints`


def replay(entry: str | None) -> Replay | None:
    """The replay of the record at `entry` (`Candidate.observed`), or None."""
    record = read_record(entry) if entry else None
    if record is None or not record.signatures:
        return None
    samples = read_samples(entry, record)
    fixed = attribute_constants(record)
    drawn = {name.removeprefix(SELF) for name, _ in hints(record) if name.startswith(SELF)}
    for name in attribute_names(record):
        if name in fixed or name in drawn:
            continue
        held = next((s[SELF + name] for s in samples if SELF + name in s), None)
        if held is not None:
            fixed[name] = held
    kinds = len(main_group(record))
    replayed = f"{len(samples)} recorded call{'s' if len(samples) != 1 else ''} replayed, " if samples else ""
    note = f"{replayed}the rest drawn like the {kinds} observed signature{'s' if kinds != 1 else ''} of {record.calls}"
    return Replay(samples, fixed, f"{note} call{'s' if record.calls != 1 else ''}", other_hints(record))


def observed_inputs(folder: str, path: str, qualname: str) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """For the engine: the hints a recording of the function gives (`hints`) and the
    entry the verifier replays (`Candidate.observed`); ((), None) when never recorded."""
    import os

    from .cache import observed_entry

    entry = str(observed_entry(folder, path, qualname))
    try:
        stamp = os.stat(entry).st_mtime_ns
    except OSError:
        return (), None
    return _observed_inputs(entry, stamp)


@lru_cache(maxsize=256)
def _observed_inputs(entry: str, stamp: int) -> tuple[tuple[tuple[str, str], ...], str | None]:
    record = read_record(entry)
    if record is None or not record.signatures:
        return (), None
    return hints(record), entry
