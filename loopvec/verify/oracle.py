"""Run the original and the rewrite on one input and say how they differ, if they do.

Each side gets its own deep copy of the input and the same RNG seed. The comparison is
recursive and strict about kind: Python type, dtype, shape and device must match; values
match with dtype-aware tolerances (nan equals nan; integers and bools exactly). Every
argument is compared after the call, so a loop that fills `res` must leave the same
`res`, and a rewrite that also scribbles on `x` is caught.

Memory is compared too: where the original returns a new tensor, the rewrite must not
return one that shares storage with an argument (`return x` for `torch.stack(list(x))`):
a caller writing into the result would change its input.

nan, inf and -inf are values like any other: inf where the original has nan is a
difference. With `lenient_nonfinite` (opt-in, `VerifySettings.lenient_nonfinite`), a
position where both sides are non-finite counts as equal, whichever of nan/inf/-inf
each holds: for rewrites that reach an overflow by another route (`exp(a) * exp(b)`
for `exp(a + b)`), when the caller accepts that.

User code runs in the same process, and a module may patch torch at import
(`torch.isclose = lambda *a, **k: True`, `torch.Tensor.__eq__ = ...`, `copy.deepcopy`):
the oracle would then judge with the user's functions. So it judges only with what torch
and the standard library held when this module was imported, which the worker does
before it imports any user code: the functions it calls are references taken then
(`_isclose`, `_deepcopy`, ...), and while it compares or copies, the classes whose
methods it calls (`torch.Tensor`, `torch.nn.Module`) hold their attributes of then
(`Attributes.as_taken`), the user's patches put back afterwards.
"""

from __future__ import annotations

import cmath
import contextlib
import copy
import math
import random
import warnings
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

import torch

# What the comparison calls, as it was before any user code ran (see the docstring).
_Tensor = torch.Tensor
_NNModule = torch.nn.Module
_SCALARS = (int, str, bytes, bool, type(None), torch.dtype, torch.device, torch.Size)
_STRIDED = torch.strided
_isclose = torch.isclose
_isfinite = torch.isfinite
_eq = torch.eq
_logical_not = torch.logical_not
_logical_and = torch.logical_and
_logical_or = torch.logical_or
_nonzero = torch.nonzero
_from_numpy = torch.from_numpy
_zeros_like = torch.zeros_like
_manual_seed = torch.manual_seed
_grad = torch.autograd.grad
_deepcopy = copy.deepcopy
_random_seed = random.seed
_math_isclose = math.isclose
_math_isfinite = math.isfinite
_math_isnan = math.isnan
_cmath_isfinite = cmath.isfinite

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


_MISSING = object()


class Attributes:
    """The attributes of some classes and modules as they were when taken, and the way
    back to them: for good (`restore`, between candidates) or for a while (`as_taken`,
    while the oracle compares)."""

    def __init__(self, owners: Sequence[Any]) -> None:
        self.taken = [(owner, dict(vars(owner))) for owner in owners]
        self._depth = 0

    def changes(self) -> list[tuple[Any, str, Any]]:
        """(owner, name, value now or _MISSING) for each attribute set, replaced or deleted
        since. A module's new submodule is not a change: importing it binds it there."""
        out = []
        for owner, taken in self.taken:
            now = vars(owner)
            for name, value in taken.items():
                if now.get(name, _MISSING) is not value:
                    out.append((owner, name, now.get(name, _MISSING)))
            for name in now.keys() - taken.keys():
                if not (isinstance(owner, ModuleType) and isinstance(now[name], ModuleType)):
                    out.append((owner, name, now[name]))
        return out

    def restore(self) -> list[tuple[Any, str, Any]]:
        """Put every changed attribute back; returns what was undone (`as_taken` puts it back after)."""
        undone = self.changes()
        for owner, taken in self.taken:
            for name in [name for o, name, _ in undone if o is owner]:
                _set(owner, name, taken.get(name, _MISSING))
        return undone

    @contextlib.contextmanager
    def as_taken(self) -> Iterator[None]:
        """The taken attributes for the duration; what user code had set, after."""
        if self._depth:  # already inside (judge -> compare): nothing to swap twice
            yield
            return
        undone = self.restore()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            for owner, name, value in undone:
                _set(owner, name, value)


def _set(owner: Any, name: str, value: Any) -> None:
    if value is _MISSING:
        delattr(owner, name)
    else:
        setattr(owner, name, value)


def torch_namespaces() -> tuple[Any, ...]:
    """Where user code patches torch and the standard library functions the oracle and
    the workers lean on (`torch.isclose = ...`, `torch.Tensor.__eq__ = ...`)."""
    import torch.nn.functional

    return (
        torch, torch.Tensor, torch.nn.Module, torch.nn.functional, torch.linalg, torch.fft, torch.special,
        torch.autograd, math, cmath, copy, random,
    )


# the classes whose methods the oracle calls on values (`.detach()`, `.shape`, `.item()`,
# `.state_dict()`), and `copy`, which a tensor's `__deepcopy__` calls back into, as they
# are now: the worker imports this module before user code. (Not all of `torch`: looking
# through its 1500 names on every comparison would cost more than the comparison.)
_AS_IMPORTED = Attributes((torch.Tensor, torch.nn.Module, copy))


def seed_everything(seed: int) -> None:
    _manual_seed(seed)
    _random_seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional for user code; torch's seed is what matters
        return
    np.random.seed(seed)


def run(call: Call, args: tuple, kwargs: dict, seed: int, side: str) -> Outcome:
    """Call `call` on a private copy of the arguments, recording result, error and warnings."""
    with _AS_IMPORTED.as_taken():
        args, kwargs = _deepcopy((args, kwargs))
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


def judge(ref: Outcome, cand: Outcome, names: list[str], lenient_nonfinite: bool = False) -> Difference | None:
    """The first way `cand` differs from `ref`; `ref` ran without error."""
    with _AS_IMPORTED.as_taken():
        return _judge(ref, cand, names, lenient_nonfinite)


def _judge(ref: Outcome, cand: Outcome, names: list[str], lenient_nonfinite: bool) -> Difference | None:
    if cand.error is not None:
        return Difference("the rewrite", f"raised {describe_error(cand.error)}")
    diff = compare(ref.value, cand.value, "return value", lenient_nonfinite=lenient_nonfinite)
    if diff:
        return diff
    diff = alias_difference(ref, cand, names)
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
        diff = compare(a, b, where, lenient_nonfinite=lenient_nonfinite)
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


# ---------------------------------------------------------------------- memory


def alias_difference(ref: Outcome, cand: Outcome, names: list[str]) -> Difference | None:
    """A returned tensor of the rewrite's that shares storage with an argument (or with
    `self`) where the original's tensor at that place in the result does not share
    storage with that same argument. Each side ran on its own copy of the arguments, so
    storages are matched within a side and compared by argument name."""
    cand_owners = _storage_owners(cand, names)
    if not cand_owners:
        return None
    ref_owners = _storage_owners(ref, names)
    for where, a, b in _paired_tensors(ref.value, cand.value, "return value"):
        owner = cand_owners.get(_storage_key(b))
        if owner is None or ref_owners.get(_storage_key(a)) == owner:
            continue
        was = ref_owners.get(_storage_key(a))
        original = f"the original's shares {was}" if was else "the original's is a new tensor"
        return Difference(where, f"shares memory with {owner}; {original}")
    return None


def _storage_key(t: _Tensor) -> tuple | None:
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse and other storage-less layouts
        return None
    if storage.nbytes() == 0:
        return None  # empty storages need not have an address of their own
    return (str(t.device), storage.data_ptr())


def _storage_owners(out: Outcome, names: list[str]) -> dict[tuple, str]:
    """storage key -> "argument x" for every tensor the call's arguments (and self) hold."""
    owners: dict[tuple, str] = {}
    labelled = [(f"argument {names[k] if k < len(names) else k}", a) for k, a in enumerate(out.args)]
    labelled += [(f"argument {key}", v) for key, v in (out.kwargs or {}).items()]
    if out.instance is not None:
        labelled.append(("self", out.instance))
    for label, value in labelled:
        for t in _held_tensors(value):
            key = _storage_key(t)
            if key is not None:
                owners.setdefault(key, label)
    return owners


def _held_tensors(obj: Any, depth: int = 0):
    if isinstance(obj, _Tensor):
        yield obj
    elif depth >= _MAX_DEPTH:
        return
    elif isinstance(obj, _NNModule):
        yield from obj.state_dict(keep_vars=True).values()
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _held_tensors(x, depth + 1)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _held_tensors(x, depth + 1)
    elif hasattr(obj, "__dict__") and not callable(obj):
        for x in vars(obj).values():
            yield from _held_tensors(x, depth + 1)


def _paired_tensors(a: Any, b: Any, where: str, depth: int = 0):
    """(where, original's tensor, rewrite's tensor) at each place of two results that
    `compare` found alike."""
    if isinstance(a, _Tensor) and isinstance(b, _Tensor):
        yield where, a, b
    elif depth >= _MAX_DEPTH or type(a) is not type(b):
        return
    elif isinstance(a, (list, tuple)) and len(a) == len(b):
        for k, (x, y) in enumerate(zip(a, b)):
            yield from _paired_tensors(x, y, f"{where}[{k}]", depth + 1)
    elif isinstance(a, dict):
        for key in a:
            if key in b:
                yield from _paired_tensors(a[key], b[key], f"{where}[{key!r}]", depth + 1)


# ---------------------------------------------------------------------- values


def compare(a: Any, b: Any, where: str, depth: int = 0, *, lenient_nonfinite: bool = False) -> Difference | None:
    """How `b` (the rewrite's) differs from `a` (the original's), or None.

    With `lenient_nonfinite`, non-finite against non-finite (nan, inf, -inf in any
    combination) counts as equal; off, each must match exactly."""
    with _AS_IMPORTED.as_taken():
        return _compare(a, b, where, depth, lenient_nonfinite)


def _compare(a: Any, b: Any, where: str, depth: int, lenient: bool) -> Difference | None:
    if a is b:
        return None
    if type(a) is not type(b):
        return Difference(where, f"type differs: original {_type(a)}, rewrite {_type(b)}")
    if isinstance(a, _Tensor):
        return _compare_tensors(a, b, where, lenient)
    if isinstance(a, float):
        return None if _close_floats(a, b, lenient) else Difference(where, f"original {a!r}, rewrite {b!r}")
    if isinstance(a, complex):
        if lenient and not _cmath_isfinite(a) and not _cmath_isfinite(b):
            return None
        ok = _close_floats(a.real, b.real) and _close_floats(a.imag, b.imag)
        return None if ok else Difference(where, f"original {a!r}, rewrite {b!r}")
    if isinstance(a, _SCALARS):
        return None if a == b else Difference(where, f"original {a!r}, rewrite {b!r}")
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return Difference(where, f"length differs: original {len(a)}, rewrite {len(b)}")
        for k, (x, y) in enumerate(zip(a, b)):
            diff = _compare(x, y, f"{where}[{k}]", depth + 1, lenient)
            if diff:
                return diff
        return None
    if isinstance(a, dict):
        return _compare_mappings(a, b, where, depth, lambda key: f"{where}[{key!r}]", lenient)
    if isinstance(a, _NNModule):
        return _compare_mappings(
            a.state_dict(), b.state_dict(), where, depth, lambda key: f"{where}.{key}", lenient
        )
    return _compare_objects(a, b, where, depth, lenient)


def _compare_mappings(
    a: dict, b: dict, where: str, depth: int, label: Callable[[Any], str], lenient: bool = False
) -> Difference | None:
    if set(a) != set(b):
        return Difference(where, f"keys differ: original {sorted(map(repr, a))}, rewrite {sorted(map(repr, b))}")
    for key in a:
        diff = _compare(a[key], b[key], label(key), depth + 1, lenient)
        if diff:
            return diff
    return None


def _compare_objects(a: Any, b: Any, where: str, depth: int, lenient: bool = False) -> Difference | None:
    try:
        import numpy as np
    except ImportError:  # without numpy there are no arrays to compare
        np = None
    if np is not None and isinstance(a, np.ndarray):
        return _compare(_from_numpy(a.copy()), _from_numpy(b.copy()), where, depth, lenient)
    if hasattr(a, "__dict__") and not callable(a):
        return _compare_mappings(vars(a), vars(b), where, depth, lambda key: f"{where}.{key}", lenient)
    try:
        equal = bool(a == b)
    except Exception:  # objects that cannot say: nothing to report
        return None
    return None if equal or callable(a) else Difference(where, f"original {a!r}, rewrite {b!r}")


def _type(x: Any) -> str:
    if isinstance(x, _Tensor):
        return f"Tensor ({str(x.dtype).removeprefix('torch.')})"
    return type(x).__name__


def _close_floats(a: float, b: float, lenient: bool = False) -> bool:
    if lenient and not _math_isfinite(a) and not _math_isfinite(b):
        return True
    if _math_isnan(a) or _math_isnan(b):
        return _math_isnan(a) and _math_isnan(b)
    rtol, atol = _PY_FLOAT_TOL
    return a == b or _math_isclose(a, b, rel_tol=rtol, abs_tol=atol)


def _compare_tensors(a: _Tensor, b: _Tensor, where: str, lenient: bool = False) -> Difference | None:
    for attr in ("device", "dtype", "layout"):
        if getattr(a, attr) != getattr(b, attr):
            return Difference(where, f"{attr} differs: original {getattr(a, attr)}, rewrite {getattr(b, attr)}")
    if a.shape != b.shape:
        return Difference(where, f"shape differs: original {list(a.shape)}, rewrite {list(b.shape)}")
    x, y = a.detach().cpu(), b.detach().cpu()
    if x.layout != _STRIDED:
        x, y = x.to_dense(), y.to_dense()
    if x.dtype in TOLERANCES:
        rtol, atol = TOLERANCES[x.dtype]
        close = _isclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
        if lenient:
            close = _logical_or(close, _logical_and(_logical_not(_isfinite(x)), _logical_not(_isfinite(y))))
    else:
        close = _eq(x, y)
    bad = _nonzero(_logical_not(close))
    if len(bad) == 0:
        return None
    details = []
    for pos in bad[:_SHOWN].tolist():
        idx = ", ".join(map(str, pos))
        details.append(f"at [{idx}]: original {x[tuple(pos)].item()!r}, rewrite {y[tuple(pos)].item()!r}")
    return Difference(where, f"values differ at {len(bad)} of {x.numel()} positions", tuple(details))


# ---------------------------------------------------------------------- gradients


def grad_difference(
    ref: Call, cand: Call, args: tuple, kwargs: dict, seed: int, names: list[str], lenient_nonfinite: bool = False
) -> Difference | None:
    """Compare input gradients of the sum of float outputs; None when the original has none."""
    ref_grads = _grads(ref, args, kwargs, seed, "original")
    if ref_grads is None:
        return None  # no graph through the original (or it refuses autograd): nothing to check
    try:
        cand_grads = _grads(cand, args, kwargs, seed, "rewrite", strict=True)
    except Exception as e:  # the rewrite breaks under autograd where the original did not
        return Difference("the rewrite", f"fails under autograd: {describe_error(e)}")
    for k, (g, h) in enumerate(zip(ref_grads, cand_grads)):
        diff = compare(g, h, f"gradient of {names[k] if k < len(names) else k}", lenient_nonfinite=lenient_nonfinite)
        if diff:
            return diff
    return None


def _grads(call: Call, args: tuple, kwargs: dict, seed: int, side: str, strict: bool = False) -> list | None:
    with _AS_IMPORTED.as_taken():
        args, kwargs = _deepcopy((args, kwargs))
        leaves = []
        args = list(args)
        for k, a in enumerate(args):
            if isinstance(a, _Tensor) and a.dtype.is_floating_point:
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
            with _AS_IMPORTED.as_taken():
                # Returned values, and arguments the call wrote differentiable values into.
                outputs = [
                    t
                    for t in _flat_tensors((value, args, kwargs))
                    if t.grad_fn is not None and t.dtype.is_floating_point
                ]
                if not outputs:
                    return None if not strict else [None if x is None else _zeros_like(x) for x in leaves]
                total = sum(t.sum() for t in outputs)
            grads = _grad(total, [x for x in leaves if x is not None], allow_unused=True)
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
            out.append(_zeros_like(x) if g is None else g)
    return out


def _flat_tensors(obj: Any, depth: int = 0):
    if isinstance(obj, _Tensor):
        yield obj
    elif depth < _MAX_DEPTH and isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _flat_tensors(x, depth + 1)
    elif depth < _MAX_DEPTH and isinstance(obj, dict):
        for x in obj.values():
            yield from _flat_tensors(x, depth + 1)
