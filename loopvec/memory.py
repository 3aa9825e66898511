"""How large the tensors a rewrite materialises get, next to what one loop iteration held.

A vectorized rewrite trades a loop for memory: `(points[:, None] - points[None]) ** 2`
materialises an [N, N, D] tensor where each iteration of the loop held [N, D] (the
catalogue's Pitfall 4). `measure` runs a function under a dispatch mode that records
the largest tensor any torch op returns. With fake tensors (`FakeTensorMode`) nothing is
allocated, so the estimate at the verified sizes scaled up x100 costs no memory and
little time. `estimate` compares the original and the rewrite and writes the one-line
message; `chunked` turns a vectorized expression into a loop over chunks of its leading
dimension — a rewrite whose memory is bounded by the chunk size.

`apply --max-memory` (`max_memory_option`, default `default_limit`) is enforced from the
speed gate's measurement (`loopvec.bench`: the peak tensor storage of each side at the
gate's scaled-up sizes, on real tensors); `estimate` and `chunked` are not used by the
runner yet -- a rewrite over the limit is left as it was, not chunked. Nothing here prints.
"""

from __future__ import annotations

import heapq
import itertools
import os
import re
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import libcst as cst

from .analysis.loops import Loop
from .analysis.module import code
from .analysis import traverse

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2, "g": 1000 ** 3, "gb": 1000 ** 3,
          "t": 1000 ** 4, "tb": 1000 ** 4, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}
_KEEP = 16  # largest op outputs remembered per run: enough to skip the function's own outputs


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Peak:
    """The largest tensor one torch op returned while a function ran."""

    bytes: int
    shape: tuple[int, ...]
    dtype: str
    op: str


@dataclass(frozen=True)
class MemoryEstimate:
    """The largest intermediate tensor of the rewrite, and of the loop, at one set of sizes.

    `dims` names the shape's dimensions the loop walks (`N`, `M`, ...) and keeps the rest
    as numbers; `scale` is how much the walked dimensions were scaled from the inputs given.
    """

    bytes: int
    shape: tuple[int, ...]
    dims: str  # "[N, M, 3]"
    dtype: str
    expression: str
    loop_bytes: int | None
    loop_shape: tuple[int, ...] | None
    loop_dims: str | None
    scale: float
    message: str

    @property
    def ratio(self) -> float | None:
        """How many times the loop's largest tensor the rewrite's largest is."""
        if not self.loop_bytes:
            return None
        return self.bytes / self.loop_bytes

    def exceeds(self, limit_bytes: int | None) -> bool:
        return limit_bytes is not None and self.bytes > limit_bytes


class MeasureError(Exception):
    """The function could not be measured (it raised, or cannot run on fake tensors)."""


# --------------------------------------------------------------------------- sizes


def parse_size(text: str) -> int:
    """`"4GiB"`, `"512 MB"`, `"1e9"`, `"2g"` -> bytes (binary units for `KiB/MiB/GiB`)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot read size {text!r}: expected a number with B, KB, MB, GB, KiB, MiB or GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def default_limit() -> int | None:
    """A quarter of the machine's physical memory: what one intermediate tensor of a
    rewrite may take before `--max-memory` leaves the loop as it was."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return None


def max_memory_option(text: str | int | None) -> int | None:
    """`--max-memory` / `[tool.loopvec] max_memory`: a size (`"4GiB"`, bytes as a number),
    `"off"` for no limit, or None for the default (see `default_limit`)."""
    if text is None:
        return default_limit()
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text > 0 else None
    if str(text).strip().lower() in ("off", "none", "0"):
        return None
    return parse_size(str(text))


def human(n: int) -> str:
    """2**30 -> "1.0 GiB"."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# --------------------------------------------------------------------------- measuring


def _tracker():
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class _Tracker(TorchDispatchMode):
        """Remembers the largest tensors torch ops return, by size."""

        def __init__(self) -> None:
            super().__init__()
            self.heap: list[tuple[int, int, Peak, Any]] = []
            self.counter = itertools.count()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    size = t.numel() * t.element_size()
                    peak = Peak(size, tuple(int(d) for d in t.shape), str(t.dtype).replace("torch.", ""),
                                str(func.overloadpacket.__name__))
                    item = (size, next(self.counter), peak, weakref.ref(t))
                    if len(self.heap) < _KEEP:
                        heapq.heappush(self.heap, item)
                    elif size > self.heap[0][0]:
                        heapq.heapreplace(self.heap, item)
            return out

    return _Tracker()


def _outputs(value: Any) -> list:
    import torch
    from torch.utils._pytree import tree_flatten

    return [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]


def _is_output(t, outputs: list) -> bool:
    if t is None:
        return False
    for o in outputs:
        if t is o or getattr(o, "_base", None) is t:
            return True
    return False


def measure(fn: Callable, args: Sequence = (), kwargs: Mapping | None = None, *,
            intermediates_only: bool = True) -> Peak | None:
    """The largest tensor a torch op returns while `fn(*args, **kwargs)` runs.

    With `intermediates_only`, tensors the function returns (or views of them) do not
    count: the loop and its rewrite produce the same outputs, what differs is what they
    build on the way. Run under `FakeTensorMode` (pass fake tensors, see `estimate`) to
    measure sizes that would not fit in memory.
    """
    tracker = _tracker()
    try:
        with tracker:
            result = fn(*args, **(kwargs or {}))
    except Exception as exc:
        raise MeasureError(f"{type(exc).__name__}: {exc}") from None
    outputs = _outputs(result) if intermediates_only else []
    ranked = sorted(tracker.heap, key=lambda item: (-item[0], item[1]))
    for size, _, peak, ref in ranked:
        if not _is_output(ref(), outputs):
            return peak
    return None


# --------------------------------------------------------------------------- inputs


def walked_axes(loop: Loop) -> dict[str, tuple[int, ...]]:
    """The parameters whose sizes set how many iterations a loop (and its nested loops)
    makes: {array: (0,)} for arrays whose rows are walked; a Python list by its length."""
    out: dict[str, tuple[int, ...]] = {}
    if loop.domain is not None:
        for array in loop.domain.arrays:
            if "." not in array and "[" not in array:
                out[array] = (0,)
    else:
        node = loop.node
        iterable = node.iter if isinstance(node, cst.For) else getattr(getattr(node, "for_in", None), "iter", None)
        if isinstance(iterable, cst.Name):
            out[iterable.value] = (0,)
    for inner in loop.nested:
        it = inner.iter
        if isinstance(it, cst.Name):
            out.setdefault(it.value, (0,))
        elif isinstance(it, cst.Call) and it.args:
            # range(len(y)), enumerate(y), zip(a, b)
            for a in it.args:
                text = code(a.value)
                m = re.fullmatch(r"len\((\w+)\)|(\w+)\.shape\[0\]|(\w+)", text)
                if m:
                    name = next(g for g in m.groups() if g)
                    out.setdefault(name, (0,))
    return out


def _scaled_size(size: int, factor: float) -> int:
    return max(int(round(size * factor)), 1) if size else 0


def scale_inputs(args: Mapping[str, Any], walked: Mapping[str, Iterable[int]] | None, scale: float,
                 fake_mode=None) -> dict[str, Any]:
    """`args` with every walked axis scaled by `scale`; tensors become fake tensors of the
    same dtype and (scaled) shape when `fake_mode` is given, lists repeat their items."""
    import torch

    walked = {k: tuple(v) for k, v in (walked or {}).items()}
    out: dict[str, Any] = {}
    for name, value in args.items():
        axes = walked.get(name, ())
        if isinstance(value, torch.Tensor):
            shape = list(value.shape)
            for a in axes:
                if a < len(shape):
                    shape[a] = _scaled_size(shape[a], scale)
            if fake_mode is not None:
                with fake_mode:
                    out[name] = torch.empty(shape, dtype=value.dtype, device="cpu" if value.device.type == "meta"
                                            else value.device)
            elif tuple(shape) != tuple(value.shape):
                out[name] = _repeat_rows(value, shape)
            else:
                out[name] = value
        elif isinstance(value, (list, tuple)) and axes and value:
            n = _scaled_size(len(value), scale)
            items = [value[k % len(value)] for k in range(n)]
            out[name] = type(value)(items) if isinstance(value, tuple) else items
        else:
            out[name] = value
    return out


def _repeat_rows(value, shape: list[int]):
    """A real tensor of `shape` filled by repeating `value` along the scaled axes."""
    import torch

    reps = [-(-s // max(d, 1)) if d else 1 for s, d in zip(shape, value.shape)]
    big = value.repeat(*reps) if value.numel() else torch.empty(shape, dtype=value.dtype)
    return big[tuple(slice(0, s) for s in shape)]


# --------------------------------------------------------------------------- estimate


def _name_dims(shape: tuple[int, ...], walked_sizes: dict[int, str]) -> str:
    return "[" + ", ".join(walked_sizes.get(d, str(d)) for d in shape) + "]"


def _walked_sizes(args: Mapping[str, Any], walked: Mapping[str, Iterable[int]]) -> dict[int, str]:
    """Size -> letter (N, M, ...) for each distinct size a walked axis has."""
    import torch

    letters = iter("NMKPQRSTUVW")
    names: dict[int, str] = {}
    for name, axes in walked.items():
        value = args.get(name)
        for a in axes:
            if isinstance(value, torch.Tensor) and a < value.dim():
                size = int(value.shape[a])
            elif isinstance(value, (list, tuple)):
                size = len(value)
            else:
                continue
            if size > 1 and size not in names:
                names[size] = next(letters, f"d{size}")
    return names


def estimate(reference: Callable, candidate: Callable, args: Mapping[str, Any], *,
             walked: Mapping[str, Iterable[int]] | None = None, scale: float = 1, fake: bool = True,
             expression: str = "", sizes_label: str = "the given sizes") -> MemoryEstimate:
    """The rewrite's largest intermediate tensor against the loop's, on `args` (keyword
    arguments) with the walked axes scaled by `scale`.

    With `fake`, tensors are replaced by fake ones: no memory is allocated, so `scale`
    may be large. Functions that read tensor values (`.item()`, `if x > 0`) cannot run on
    fake tensors; pass `fake=False` (and a small `scale`) for those.
    """
    walked = dict(walked or {})
    if fake:
        from torch._subclasses.fake_tensor import FakeTensorMode

        mode = FakeTensorMode(allow_non_fake_inputs=True)
        inputs = scale_inputs(args, walked, scale, fake_mode=mode)

        def run(fn):
            with mode:
                return measure(fn, (), inputs)
    else:
        inputs = scale_inputs(args, walked, scale)

        def run(fn):
            return measure(fn, (), inputs)

    new = run(candidate)
    old = run(reference)
    sizes = _walked_sizes(inputs, walked)
    if new is None:
        new = Peak(0, (), "", "")
    dims = _name_dims(new.shape, sizes)
    loop_dims = _name_dims(old.shape, sizes) if old is not None else None
    at = f"at {sizes_label}" if scale == 1 else f"at {sizes_label} x {scale:g}"
    what = expression or new.op
    message = f"materialises a {dims} {new.dtype} tensor (~{human(new.bytes)} {at})"
    if old is not None:
        message += f"; the loop's largest was {loop_dims} (~{human(old.bytes)})"
    return MemoryEstimate(new.bytes, new.shape, dims, new.dtype, what, old.bytes if old else None,
                          old.shape if old else None, loop_dims, scale, message)


def estimate_sources(reference_source: str, candidate_source: str, qualname: str, args: Mapping[str, Any], *,
                     namespace: Mapping[str, Any] | None = None, prelude: str = "", **options) -> MemoryEstimate:
    """`estimate` for two function definitions given as text (a `Planned`'s
    `function_source` and the original's), compiled into copies of `namespace`
    (the module's globals; torch, math and torch.nn.functional as F by default)."""
    import math

    import torch

    base = dict(namespace) if namespace is not None else {"torch": torch, "math": math, "F": torch.nn.functional,
                                                           "nn": torch.nn}
    name = qualname.rsplit(".", 1)[-1]

    def compile_(source: str, extra: str) -> Callable:
        ns = dict(base)
        if extra:
            exec(compile(extra, "<prelude>", "exec"), ns)
        exec(compile(source, f"<{name}>", "exec"), ns)
        return ns[name]

    return estimate(compile_(reference_source, ""), compile_(candidate_source, prelude), args, **options)


# --------------------------------------------------------------------------- chunking


class _Rename(cst.CSTTransformer):
    """Every load of a batched name -> its chunk's name (attributes and keywords kept)."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        new = self.mapping.get(original.value)
        return updated.with_changes(value=new) if new else updated

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        return updated.with_changes(attr=original.attr)

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        return updated.with_changes(keyword=original.keyword)


def chunked(expression: str, batched: Sequence[str], chunk: int | str, *, torch: str = "torch",
            reduce: str | None = None) -> str:
    """`expression`, computed `chunk` rows at a time along the leading dimension of the
    tensors named in `batched`, and joined again.

    Every occurrence of a batched name must carry the leading dimension as its first
    axis, and the expression must treat its rows independently (a map): then
    `torch.cat([E(rows) for rows in x.split(chunk)])` equals `E(x)` while materialising
    only `chunk` rows of each intermediate. With `reduce="sum"` the expression ends in a
    sum over the rows, and the chunks' sums are added (`total = E(x).sum()` style).
    An empty leading dimension still gives one (empty) chunk, so `torch.cat` sees one tensor.
    """
    if not batched:
        raise ValueError("nothing to chunk: no batched names")
    node = cst.parse_expression(expression)
    used = _names(node)
    mapping: dict[str, str] = {}
    for name in batched:
        base = f"{name}_chunk"
        candidate, k = base, 2
        while candidate in used or candidate in mapping.values():
            candidate, k = f"{base}{k}", k + 1
        mapping[name] = candidate
    body = code(node.visit(_Rename(mapping)))
    targets = ", ".join(mapping[n] for n in batched)
    if len(batched) == 1:
        source = f"{batched[0]}.split({chunk})"
    else:
        source = "zip(" + ", ".join(f"{n}.split({chunk})" for n in batched) + ")"
    if reduce is None:
        return f"{torch}.cat([{body} for {targets} in {source}])"
    if reduce == "sum":
        return f"{torch}.stack([{body} for {targets} in {source}]).sum(0)"
    raise ValueError(f"unknown reduce {reduce!r}: expected None or 'sum'")


def _names(node: cst.CSTNode) -> set[str]:
    found: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            found.add(n.value)

    traverse.visit(node, _V())
    return found


def chunk_rows(limit_bytes: int, estimate_: MemoryEstimate, rows: int) -> int:
    """How many of `rows` leading rows fit `limit_bytes`, assuming the largest
    intermediate grows linearly with them (at least 1)."""
    if estimate_.bytes <= limit_bytes or rows <= 1:
        return rows
    per_row = estimate_.bytes / rows
    return max(int(limit_bytes // per_row), 1)
