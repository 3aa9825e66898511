"""Run the original and the rewrite on one input and say how they differ, if they do.

Each side gets its own deep copy of the input and the same RNG seed. The comparison is
recursive and strict about kind: Python type, dtype, shape and device must match; values
match with dtype-aware tolerances (nan equals nan; integers and bools exactly). Every
argument is compared after the call, so a loop that fills `res` must leave the same
`res`, and a rewrite that also scribbles on `x` is caught.
"""

from __future__ import annotations

import copy
import math
import random
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

# (rtol, atol) per dtype; integers and bools compare exactly.
TOLERANCES = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1e-5, 1e-6),
    torch.complex64: (1e-5, 1e-6),
    torch.float64: (1e-10, 1e-10),
    torch.complex128: (1e-10, 1e-10),
}
# Python floats may come from float32 arithmetic on either side (`x.sum().item()`).
_PY_FLOAT_TOL = (1e-6, 1e-9)
_SHOWN = 3  # differing positions listed
_MAX_DEPTH = 6

Call = Callable[[tuple, dict], tuple[Any, Any]]  # (args, kwargs) -> (value, instance or None)


class UserExit(BaseException):
    """User code called sys.exit. A BaseException so that hypothesis does not shrink it."""

    def __init__(self, code: Any, side: str) -> None:
        super().__init__(code, side)
        self.code = code
        self.side = side


@dataclass
class Outcome:
    value: Any = None
    args: tuple = ()
    kwargs: dict | None = None
    instance: Any = None
    error: BaseException | None = None
    warnings: tuple[tuple[type, str], ...] = ()


@dataclass(frozen=True)
class Difference:
    where: str  # "return value[1]", "argument res", "self.weight", "the rewrite"
    what: str  # one line
    details: tuple[str, ...] = ()  # differing positions

    def text(self) -> str:
        return "\n".join([f"{self.where}: {self.what}", *("  " + d for d in self.details)])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional for user code; torch's seed is what matters
        return
    np.random.seed(seed)


def run(call: Call, args: tuple, kwargs: dict, seed: int, side: str) -> Outcome:
    """Call `call` on a private copy of the arguments, recording result, error and warnings."""
    args, kwargs = copy.deepcopy((args, kwargs))
    seed_everything(seed)
    out = Outcome(args=args, kwargs=kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out.value, out.instance = call(args, kwargs)
        except SystemExit as e:
            raise UserExit(e.code, side) from None
        except Exception as e:  # any error in user code is data, not a verifier failure
            out.error = e
    out.warnings = tuple((w.category, str(w.message)) for w in caught)
    return out


def judge(ref: Outcome, cand: Outcome, names: list[str]) -> Difference | None:
    """The first way `cand` differs from `ref`; `ref` ran without error."""
    if cand.error is not None:
        return Difference("the rewrite", f"raised {describe_error(cand.error)}")
    diff = compare(ref.value, cand.value, "return value")
    if diff:
        return diff
    after = [
        (f"argument {names[k] if k < len(names) else k}", a, b)
        for k, (a, b) in enumerate(zip(ref.args, cand.args))
    ]
    after += [(f"argument {key}", v, (cand.kwargs or {}).get(key)) for key, v in (ref.kwargs or {}).items()]
    if ref.instance is not None:
        after.append(("self", ref.instance, cand.instance))
    for where, a, b in after:
        diff = compare(a, b, where)
        if diff:
            return replace(diff, where=f"{diff.where} after the call")
    seen = set(ref.warnings)
    for category, message in cand.warnings:
        # Deprecation and similar notes are not behaviour; these two are.
        if issubclass(category, (RuntimeWarning, UserWarning)) and (category, message) not in seen:
            return Difference("the rewrite", f"warns {category.__name__}: {message}")
    return None


def describe_error(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(e).__name__}: {first[:200]}" if first else type(e).__name__


def compare(a: Any, b: Any, where: str, depth: int = 0) -> Difference | None:
    """How `b` (the rewrite's) differs from `a` (the original's), or None."""
    if a is b:
        return None
    if type(a) is not type(b):
        return Difference(where, f"type differs: original {_type(a)}, rewrite {_type(b)}")
    if isinstance(a, torch.Tensor):
        return _compare_tensors(a, b, where)
    if isinstance(a, float):
        return None if _close_floats(a, b) else Difference(where, f"original {a!r}, rewrite {b!r}")
    if isinstance(a, complex):
        ok = _close_floats(a.real, b.real) and _close_floats(a.imag, b.imag)
        return None if ok else Difference(where, f"original {a!r}, rewrite {b!r}")
    if isinstance(a, (int, str, bytes, bool, type(None), torch.dtype, torch.device, torch.Size)):
        return None if a == b else Difference(where, f"original {a!r}, rewrite {b!r}")
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return Difference(where, f"length differs: original {len(a)}, rewrite {len(b)}")
        for k, (x, y) in enumerate(zip(a, b)):
            diff = compare(x, y, f"{where}[{k}]", depth + 1)
            if diff:
                return diff
        return None
    if isinstance(a, dict):
        return _compare_mappings(a, b, where, depth, lambda key: f"{where}[{key!r}]")
    if isinstance(a, torch.nn.Module):
        return _compare_mappings(a.state_dict(), b.state_dict(), where, depth, lambda key: f"{where}.{key}")
    return _compare_objects(a, b, where, depth)


def _compare_mappings(a: dict, b: dict, where: str, depth: int, label: Callable[[Any], str]) -> Difference | None:
    if set(a) != set(b):
        return Difference(where, f"keys differ: original {sorted(map(repr, a))}, rewrite {sorted(map(repr, b))}")
    for key in a:
        diff = compare(a[key], b[key], label(key), depth + 1)
        if diff:
            return diff
    return None


def _compare_objects(a: Any, b: Any, where: str, depth: int) -> Difference | None:
    try:
        import numpy as np
    except ImportError:  # without numpy there are no arrays to compare
        np = None
    if np is not None and isinstance(a, np.ndarray):
        return compare(torch.from_numpy(a.copy()), torch.from_numpy(b.copy()), where, depth)
    if hasattr(a, "__dict__") and not callable(a):
        return _compare_mappings(vars(a), vars(b), where, depth, lambda key: f"{where}.{key}")
    try:
        equal = bool(a == b)
    except Exception:  # objects that cannot say: nothing to report
        return None
    return None if equal or callable(a) else Difference(where, f"original {a!r}, rewrite {b!r}")


def _type(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"Tensor ({str(x.dtype).removeprefix('torch.')})"
    return type(x).__name__


def _close_floats(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    rtol, atol = _PY_FLOAT_TOL
    return a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def _compare_tensors(a: torch.Tensor, b: torch.Tensor, where: str) -> Difference | None:
    for attr in ("device", "dtype", "layout"):
        if getattr(a, attr) != getattr(b, attr):
            return Difference(where, f"{attr} differs: original {getattr(a, attr)}, rewrite {getattr(b, attr)}")
    if a.shape != b.shape:
        return Difference(where, f"shape differs: original {list(a.shape)}, rewrite {list(b.shape)}")
    x, y = a.detach().cpu(), b.detach().cpu()
    if x.layout != torch.strided:
        x, y = x.to_dense(), y.to_dense()
    if x.dtype in TOLERANCES:
        rtol, atol = TOLERANCES[x.dtype]
        close = torch.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
    else:
        close = x == y
    bad = (~close).nonzero()
    if len(bad) == 0:
        return None
    details = []
    for pos in bad[:_SHOWN].tolist():
        idx = ", ".join(map(str, pos))
        details.append(f"at [{idx}]: original {x[tuple(pos)].item()!r}, rewrite {y[tuple(pos)].item()!r}")
    return Difference(where, f"values differ at {len(bad)} of {x.numel()} positions", tuple(details))


# ---------------------------------------------------------------------- gradients


def grad_difference(ref: Call, cand: Call, args: tuple, kwargs: dict, seed: int, names: list[str]) -> Difference | None:
    """Compare input gradients of the sum of float outputs; None when the original has none."""
    ref_grads = _grads(ref, args, kwargs, seed, "original")
    if ref_grads is None:
        return None  # no graph through the original (or it refuses autograd): nothing to check
    try:
        cand_grads = _grads(cand, args, kwargs, seed, "rewrite", strict=True)
    except Exception as e:  # the rewrite breaks under autograd where the original did not
        return Difference("the rewrite", f"fails under autograd: {describe_error(e)}")
    for k, (g, h) in enumerate(zip(ref_grads, cand_grads)):
        diff = compare(g, h, f"gradient of {names[k] if k < len(names) else k}")
        if diff:
            return diff
    return None


def _grads(call: Call, args: tuple, kwargs: dict, seed: int, side: str, strict: bool = False) -> list | None:
    args, kwargs = copy.deepcopy((args, kwargs))
    leaves = []
    args = list(args)
    for k, a in enumerate(args):
        if isinstance(a, torch.Tensor) and a.dtype.is_floating_point:
            args[k] = a.detach().clone().requires_grad_(True)
            leaves.append(args[k])
        else:
            leaves.append(None)
    if not any(x is not None for x in leaves):
        return None
    seed_everything(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value, _ = call(tuple(args), kwargs)
            # Returned values, and arguments the call wrote differentiable values into.
            outputs = [
                t
                for t in _flat_tensors((value, args, kwargs))
                if t.grad_fn is not None and t.dtype.is_floating_point
            ]
            if not outputs:
                return None if not strict else [None if x is None else torch.zeros_like(x) for x in leaves]
            total = sum(t.sum() for t in outputs)
            grads = torch.autograd.grad(total, [x for x in leaves if x is not None], allow_unused=True)
        except SystemExit as e:
            raise UserExit(e.code, side) from None
        except Exception:
            if strict:
                raise
            return None
    it = iter(grads)
    out = []
    for x in leaves:
        if x is None:
            out.append(None)
        else:
            g = next(it)
            out.append(torch.zeros_like(x) if g is None else g)
    return out


def _flat_tensors(obj: Any, depth: int = 0):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < _MAX_DEPTH and isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _flat_tensors(x, depth + 1)
    elif depth < _MAX_DEPTH and isinstance(obj, dict):
        for x in obj.values():
            yield from _flat_tensors(x, depth + 1)
