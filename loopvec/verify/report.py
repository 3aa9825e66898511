"""Counterexamples as a person reads them: a few lines of shapes, dtypes, layout, values."""

from __future__ import annotations

from typing import Any

import torch

from .inputs import OMIT
from .oracle import Difference

_MAX_VALUES = 16  # elements printed per tensor; larger ones show their first few


def describe_value(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return describe_tensor(x)
    if isinstance(x, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in x):
        inner = ", ".join(describe_value(v) for v in x[:4])
        more = ", ..." if len(x) > 4 else ""
        return f"{type(x).__name__} of {len(x)}: [{inner}{more}]"
    text = repr(x)
    return text if len(text) <= 200 else text[:200] + "..."


def describe_tensor(t: torch.Tensor) -> str:
    dtype = str(t.dtype).removeprefix("torch.")
    parts = [f"Tensor {dtype} {list(t.shape)}"]
    if t.device.type != "cpu":
        parts.append(f"on {t.device}")
    if not t.is_contiguous():
        parts.append(f"non-contiguous (strides {tuple(t.stride())})")
    if t.storage_offset():
        parts.append(f"storage offset {t.storage_offset()}")
    values = t.detach().cpu()
    if values.numel() <= _MAX_VALUES:
        shown = _fmt(values.tolist())
    else:
        shown = _fmt(values.reshape(-1)[:_MAX_VALUES].tolist())[:-1] + ", ...] (flattened)"
    return ", ".join(parts) + " = " + shown


def _fmt(values: Any) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_fmt(v) for v in values) + "]"
    return repr(values)


def counterexample(named: dict[str, Any], device: str, diff: Difference) -> str:
    """The shrunk input and how the two versions differ on it."""
    lines = [f"inputs (on {device}):"]
    for name, value in named.items():
        if value is OMIT:
            continue
        lines.append(f"  {name} = {describe_value(value)}")
    if all(v is OMIT for v in named.values()):
        lines.append("  (no arguments)")
    lines.append(diff.text())
    return "\n".join(lines)
