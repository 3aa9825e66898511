"""reduction: every fixture pair is rewritten exactly, idempotent and verified; noops stay.

The verifier draws float inputs unless the code compares or does integer arithmetic, and
1-D tensors unless indexing says otherwise. Reductions are where integer dtypes (uint8
wrap-around, bool -> int64), empty inputs (the Python start value survives) and odd
shapes ([n, 1] elements are truthy too) go wrong, so a strict battery below also runs
every rewritten fixture function on all of them.
"""

import itertools
import math
import types

import pytest
import torch

import fixture_cases
from loopvec.engine import apply_keys, plan_source

PAIRS, NOOPS = fixture_cases.discover("reduction")

def test_catalogue_is_complete():
    assert len(PAIRS) >= 8 and len(NOOPS) >= 5


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("reduction", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("reduction", case)


# --------------------------------------------------------------------------- strict battery

ALL = (torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8,
       torch.uint8, torch.bool)
FLOATS = (torch.float32, torch.float64)
VECTORS = ((0,), (1,), (6,), (5, 1), (0, 3))  # [n, 1]: each element is still one number
ROWS = ((0, 3), (1, 3), (4, 3), (4, 1), (3,), (2, 3, 2))
MATRICES = ((0, 3), (1, 3), (4, 3), (4, 1))

# fixture function -> (argument kinds, shapes, dtypes): T a tensor of the shape, R one of
# its rows, f a Python float.
# Dtypes beyond a function's hint are included wherever the rewrite claims them too.
BATTERY = {
    ("reduction_sum_of_squares", "sum_of_squares"): ("T", VECTORS, ALL),
    ("reduction_mean_square", "mean_square"): ("T", ((0,), (1,), (6,)), (torch.float32,)),
    ("reduction_dot_product", "dot"): ("TT", ((0,), (1,), (6,)), ALL),
    ("reduction_narrow_int_wraps", "byte_checksum"): ("T", VECTORS, ALL),
    ("reduction_narrow_int_wraps", "signed_product"): ("T", VECTORS, ALL),
    ("reduction_narrow_int_wraps", "vote_count"): ("T", VECTORS, ALL),
    ("reduction_python_float_sum", "log_partition"): ("T", VECTORS, ALL),
    ("reduction_python_float_sum", "offset_total"): ("T", VECTORS, ALL),
    ("reduction_column_sums", "column_sums"): ("T", MATRICES, (torch.float32,)),
    ("reduction_column_sums", "column_sums_like"): ("T", ROWS, ALL),
    ("reduction_count_above", "count_above"): ("Tf", VECTORS, ALL),
    ("reduction_masked_sum", "positive_sum"): ("T", VECTORS, ALL),
    # abs() rejects bool tensors: the loop only returns for an empty one, the rewrite raises
    ("reduction_any_all_flags", "has_outlier"): ("Tf", VECTORS, tuple(d for d in ALL if d != torch.bool)),
    ("reduction_any_all_flags", "all_below"): ("Tf", VECTORS, ALL),
    ("reduction_running_max_nan", "running_max"): ("T", VECTORS, ALL),
    ("reduction_argmax_first", "argmax_first"): ("T", VECTORS, ALL),
    ("reduction_argmin_last_tie", "argmin_last"): ("T", VECTORS, ALL),
    ("reduction_max_builtin", "peak"): ("T", VECTORS, ALL),
    ("reduction_rowwise_mean", "row_means"): ("T", ROWS, ALL),
    ("reduction_rowwise_mean", "row_means_2d"): ("T", MATRICES, ALL),
    ("reduction_rowwise_tensor_sum", "row_sums"): ("T", ROWS, ALL),
    ("reduction_rowwise_tensor_sum", "row_ranges"): ("T", MATRICES, ALL),
    ("reduction_rowwise_append_norm", "row_norms"): ("T", MATRICES, (torch.float32,)),
    ("reduction_two_accumulators", "mean_and_var"): ("T", ((0,), (1,), (6,)), (torch.float64,)),
    ("reduction_weighted_column_sums", "weighted_column_sums"): ("TR", MATRICES, (torch.float32,)),
    ("reduction_rowwise_sum_of_product", "neighbour_energy"): ("T", MATRICES, ALL),
    ("reduction_rowwise_sum_of_product", "total_variation"): ("T", MATRICES, ALL),
}


def test_battery_covers_every_rewritten_function():
    rewritten = set()
    for case in PAIRS:
        source = case.path.read_text(encoding="utf-8")
        for p in plan_source(str(case.path), source, ("reduction",), show_declined=True).planned:
            rewritten.add((str(case), p.qualname))
    assert rewritten == set(BATTERY)


def _values(shape, dtype, gen):
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    if dtype.is_floating_point:
        x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).round().to(dtype)
        flat = x.view(-1)
        if flat.numel() > 2:  # ties, NaN, infinities and zeros are where folds differ
            flat[0] = flat[flat.numel() - 1]
            k = int(torch.randint(1, flat.numel() - 1, (1,), generator=gen))
            flat[k] = (math.nan, math.inf, -math.inf, -0.0)[int(torch.randint(0, 4, (1,), generator=gen))]
        return x
    low, high = {torch.uint8: (0, 256), torch.int8: (-128, 128)}.get(dtype, (-100, 200))
    return torch.randint(low, high, shape, generator=gen).to(dtype)


def _differs(a, b, path="result"):
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} vs {type(b).__name__} ({a!r} vs {b!r})"
    if isinstance(a, tuple):
        return next((d for k, (x, y) in enumerate(zip(a, b)) if (d := _differs(x, y, f"{path}[{k}]"))), None)
    if isinstance(a, torch.Tensor):
        if (a.dtype, a.shape) != (b.dtype, b.shape):
            return f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
        if a.dtype.is_floating_point:
            tol = {torch.float16: 1e-2, torch.float32: 1e-5}.get(a.dtype, 1e-9)
            ok = torch.allclose(a.double(), b.double(), rtol=tol, atol=tol, equal_nan=True)
        else:
            ok = torch.equal(a, b)
        return None if ok else f"{path}: {a} vs {b}"
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return None
    if isinstance(a, float):
        return None if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else f"{path}: {a} vs {b}"
    return None if a == b else f"{path}: {a!r} vs {b!r}"


def _modules(case):
    source = case.path.read_text(encoding="utf-8")
    plan = plan_source(str(case.path), source, ("reduction",), show_declined=True)
    new = apply_keys(str(case.path), source, {p.key for p in plan.planned}, ("reduction",))
    before, after = types.ModuleType("before"), types.ModuleType("after")
    exec(compile(source, str(case.path), "exec"), before.__dict__)
    exec(compile(new, str(case.path), "exec"), after.__dict__)
    return before, after


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_battery_of_dtypes_shapes_and_empty_inputs(case):
    before, after = _modules(case)
    functions = [(fn, spec) for (name, fn), spec in BATTERY.items() if name == str(case)]
    assert functions
    ran = 0
    for fn, (kinds, shapes, dtypes) in functions:
        for dtype, shape, seed in itertools.product(dtypes, shapes, range(3)):
            gen = torch.Generator().manual_seed(seed)
            args = [_values(shape if k == "T" else shape[1:], dtype, gen) if k in "TR"
                    else float(torch.randn((), generator=gen)) for k in kinds]
            try:
                expected = getattr(before, fn)(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
            except Exception:
                continue  # inputs the original rejects (bool - bool, mean of ints, ...)
            copies = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
            got = getattr(after, fn)(*copies)
            problem = _differs(expected, got)
            assert problem is None, f"{fn}({dtype}, {shape}, seed={seed}): {problem}"
            for a, c in zip(args, copies):
                assert not isinstance(a, torch.Tensor) or torch.equal(a.nan_to_num(), c.nan_to_num())
            ran += 1
    assert ran


# --------------------------------------------------------------------------- focused examples


def _messages(source: str) -> list[str]:
    return [p.message for p in plan_source("m.py", source, ("reduction",), show_declined=True).planned]


def _declines(source: str) -> str:
    plan = plan_source("m.py", source, ("reduction",), show_declined=True)
    assert not plan.planned
    return " ".join(f.message for f in plan.declined)


def _sum_loop(start: str, update: str = "total += x", hint: str = "") -> str:
    return (f"import torch\ndef f(data):{hint}\n    total = {start}\n    for x in data:\n"
            f"        {update}\n    return total\n")


def test_uint8_accumulation_wraps_like_the_loop():
    # 0 + tensor(200, uint8) is uint8: the loop wraps at 256, x.sum() (int64) would not
    src = _sum_loop("0")
    assert _messages(src) == ["becomes `total = data.sum(0, dtype=torch.result_type(data, 0)) if len(data) else 0`"]
    ns: dict = {}
    exec(compile(apply_keys("m.py", src, {p.key for p in plan_source("m.py", src, ("reduction",)).planned},
                            ("reduction",)), "m.py", "exec"), ns)
    got = ns["f"](torch.tensor([200, 100], dtype=torch.uint8))
    assert got.dtype == torch.uint8 and int(got) == 44


def test_float_start_keeps_its_promotion():
    # 0.0 + int tensor is float32: the start stays in the expression
    assert _messages(_sum_loop("0.0")) == ["becomes `total = 0.0 + data.sum(0) if len(data) else 0.0`"]


def test_floating_hint_gives_the_plain_sum():
    src = _sum_loop("0", "total += x * 2", "  # loopvec: shapes data=[n]:float64")
    assert _messages(src) == ["becomes `total = (data * 2).sum(0) if len(data) else 0`"]


def test_nonzero_start_is_added():
    assert _messages(_sum_loop("5", "total -= x", "  # loopvec: shapes data=[n]:float32")) == [
        "becomes `total = 5 - data.sum(0) if len(data) else 5`"]


def test_in_place_accumulator_into_a_bool_tensor_folds_in_its_dtype():
    src = ("import torch\ndef f(X):  # loopvec: shapes X=[n,d]\n    acc = torch.zeros(X.shape[1], dtype=torch.bool)\n"
           "    for row in X:\n        acc += row\n    return acc\n")
    assert _messages(src) == ["becomes `acc += X.sum(0, dtype=acc.dtype)`"]


def test_in_place_update_of_a_scalar_tensor_runs_only_when_there_are_rows():
    # torch.tensor(0.0) += rows of [3] fails on the first row; with no rows the loop is fine
    src = ("import torch\ndef f(data):\n    t = torch.tensor(0.0)\n    for x in data:\n        t += x\n"
           "    return t\n")
    assert _messages(src) == ["becomes `if len(data): t += data.sum(0, dtype=t.dtype)`"]


def test_row_norm_passes_the_dim_by_keyword():
    # Tensor.norm(1) is the 1-norm; the row reduction needs norm(dim=1)
    src = "import torch\ndef f(X):\n    return torch.stack([row.norm() for row in X])\n"
    assert _messages(src) == ["becomes `X.reshape(len(X), -1).norm(dim=1)`"]


def test_running_max_with_non_strict_comparison_keeps_the_last_tie():
    src = ("import torch\ndef f(data):\n    best = float('-inf')\n    k = -1\n    for i, x in enumerate(data):\n"
           "        if x >= best:\n            best = x\n            k = i\n    return best, k\n")
    assert "[-1, 0]" in plan_source("m.py", src, ("reduction",), show_declined=True).planned[0].diff


def test_mean_of_integers_is_not_folded_into_mean():
    # (data ** 2).mean() rejects int tensors; total / len(data) is a true division
    src = ("import torch\ndef f(data):\n    total = 0\n    for x in data:\n        total += x\n"
           "    return total / len(data)\n")
    assert _messages(src) == ["becomes `total = data.sum(0, dtype=torch.result_type(data, 0)) if len(data) else 0`"]


@pytest.mark.parametrize("update, reason", [
    ("total /= x", "`/=` chain has no exact whole-array form"),
    ("total |= x", "`|=` chain"),
    ("total += x.item()", ".item()"),
    ("total += 1", "does not depend on the loop element"),
], ids=["division chain", "bitwise or", "item per element", "constant step"])
def test_declines_updates_without_an_exact_fold(update, reason):
    assert reason in _declines(_sum_loop("0", update))


def test_declines_an_accumulator_that_restarts_every_turn():
    # the loop returns the last turn's x * 2 + x, not a sum
    src = ("import torch\ndef f(data):\n    total = 0.0\n    for x in data:\n        total = x * 2\n"
           "        total += x\n    return total\n")
    assert "`total` is reassigned in the loop body" in _declines(src)


def test_declines_a_start_that_is_not_a_number():
    src = "import torch\ndef f(data, start):\n    total = start\n    for x in data:\n        total += x\n    return total\n"
    assert "does not start as a number" in _declines(src)


def test_declines_running_max_from_a_tensor_start_of_unknown_dtype():
    # an int32 0-d start against int8 elements compares in int32 per element, in int8 batched
    src = ("import torch\ndef f(data, start):\n    best = start\n    for x in data:\n        if x > best:\n"
           "            best = x\n    return best\n")
    assert "does not start as a number" in _declines(src)


def test_row_reduction_with_a_dim_declines():
    src = "import torch\ndef f(X):\n    return torch.stack([row.sum(0) for row in X])\n"
    assert "positional arguments" in _declines(src)


def test_mixed_arrays_of_unknown_rank_are_an_assumption():
    src = ("import torch\ndef f(a, b):\n    s = 0.0\n    for x, y in zip(a, b):\n        s += x * y\n"
           "    return s\n")
    planned = plan_source("m.py", src, ("reduction",)).planned
    assert "`a` and `b` have the same rank" in planned[0].assumptions


def test_an_assert_in_the_body_is_read_not_a_crash():
    from loopvec.engine import plan_source

    src = ("import torch\n\ndef f(x):\n    total = 0\n    for v in x:\n        assert total >= 0\n"
           "        total += v\n    return total\n")
    plan = plan_source("m.py", src, ("reduction",), show_declined=True)
    assert not plan.planned and "read inside the loop" in plan.declined[0].message


# --------------------------------------------------------------------------- accumulators set in branches

_BRANCH_STARTS = {
    "set in an if and an else": "    if flag:\n        best = 0.0\n    else:\n        best = -1.0\n",
    "set in an if only": "    if flag:\n        best = 0.0\n",
    "set in a try": "    try:\n        best = 0.0\n    except ValueError:\n        best = -1.0\n",
    "set in a with": "    with flag:\n        best = 0.0\n",
}
_OTHER = ("\ndef other(x: torch.Tensor):\n    total = 0.0\n    for i in range(x.shape[0]):\n"
          "        total += x[i] ** 2\n    return total\n")


@pytest.mark.parametrize("start", list(_BRANCH_STARTS.values()), ids=list(_BRANCH_STARTS))
@pytest.mark.parametrize("loop", [
    "    for i in range(x.shape[0]):\n        best += x[i]\n",
    "    for i in range(x.shape[0]):\n        if x[i] > best:\n            best = x[i]\n            k = i\n",
    # an iteration loopvec cannot describe: the argmax form once read its index off no domain
    "    for i in x.nonzero():\n        if x[i] > best:\n            best = x[i]\n            k = i\n",
], ids=["sum", "argmax", "argmax over nonzero"])
def test_an_accumulator_set_in_a_branch_declines_and_the_file_goes_on(start, loop):
    src = ("import torch\n\ndef f(x: torch.Tensor, flag):\n    k = 0\n" + start + loop
           + "    return best, k\n" + _OTHER)
    plan = plan_source("m.py", src, ("reduction",), show_declined=True)
    assert [p.qualname for p in plan.planned] == ["other"]
    declined = [d for d in plan.declined if d.function == "f"]
    assert len(declined) == 1 and ("does not start as" in declined[0].message
                                   or "x.nonzero()" in declined[0].message)


@pytest.mark.parametrize("element, new", [
    # torch.sum(v)'s argument is not parenthesised in the source: the batched form must be
    ("-torch.sum(p[i, :-1] * p[i, 1:])", "-(p[:, :-1] * p[:, 1:]).sum(1)"),
    ("torch.sum(p[i, 1:] - p[i, :-1]) ** 2", "(p[:, 1:] - p[:, :-1]).sum(1) ** 2"),
    ("-torch.mean(d * p[i, :-1])", "-(d * p[:, :-1]).reshape(len(p), -1).mean(1)"),
    ("torch.sum(-p[i])", "(-p).sum(1)"),
], ids=["minus the sum of a product", "square of the sum of a difference", "mean of a scaled row",
        "sum of a negation"])
def test_row_reduction_of_a_function_argument_keeps_the_argument_whole(element, new):
    src = (f"import torch\ndef f(p, d: float):  # loopvec: shapes p=[n,4]\n"
           f"    return torch.stack([{element} for i in range(len(p))])\n")
    assert _messages(src) == [f"becomes `{new}`"]
