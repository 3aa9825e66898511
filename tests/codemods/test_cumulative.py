"""cumulative: every fixture pair is rewritten exactly, idempotent and verified; noops stay.

Beside the verifier's generated inputs, the dtype and NaN rules a scan must keep are
checked on hand-picked ones: cumsum of int32/uint8/bool promotes to int64 (the in-place
`x[:] =` or `.to(x.dtype)` must wrap it back as the loop's own arithmetic does), Python
`max` skips a NaN where cummax would propagate it, and empty and length-1 inputs.
"""


import pytest
import torch

import exactness
import fixture_cases
from loopvec.engine import apply_keys, plan_source

PATTERN = "cumulative"
PAIRS, NOOPS = fixture_cases.discover(PATTERN)


def test_catalogue_is_complete():
    assert len(PAIRS) >= 8 and len(NOOPS) >= 5


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair(PATTERN, case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop(PATTERN, case)


# --------------------------------------------------------------------------- exactness on chosen inputs


def agree(case_name, function, *args):
    """The fixture and its expected rewrite return and mutate the same, or both raise."""
    return exactness.agree(PAIRS, case_name, function, *args)


NAN = float("nan")
INTS = [torch.tensor([200, 100, 7, 255], dtype=torch.uint8), torch.tensor([2**31 - 2, 5, -3], dtype=torch.int32),
        torch.tensor([-100, 27, 3], dtype=torch.int8), torch.tensor([False, True, False, True]),
        torch.tensor([1.5, -2.25, 4.0], dtype=torch.float64), torch.tensor([], dtype=torch.int32),
        torch.tensor([7], dtype=torch.int16)]
INT_IDS = ["uint8 wraps", "int32 wraps", "int8 wraps", "bool", "float64", "empty", "one element"]


@pytest.mark.parametrize("x", INTS, ids=INT_IDS)
def test_in_place_sum_keeps_the_dtype_and_wraps_like_the_loop(x):
    assert agree("cumulative_inplace_sum", "running_total", x) == "ok"
    assert agree("cumulative_shifted_range", "integrate", x) == "ok"


@pytest.mark.parametrize("x", INTS, ids=INT_IDS)
def test_in_place_product_keeps_the_dtype(x):
    assert agree("cumulative_product", "survival", x) == "ok"


@pytest.mark.parametrize("x", [t for t in INTS if t.numel()], ids=[i for i, t in zip(INT_IDS, INTS) if t.numel()])
def test_separate_output_keeps_the_input_dtype(x):
    assert agree("cumulative_separate_output", "prefix_sums", x) == "ok"
    assert agree("cumulative_float64_output", "exact_totals", x) == "ok"


def test_separate_output_of_an_empty_input():
    # `out[0] = x[0]` raises on an empty x; the rewrite that drops it returns an empty scan
    # (the verifier discards inputs on which the original raises)
    assert exactness.run(exactness.pair(PAIRS, "cumulative_separate_output")[0].prefix_sums, [torch.tensor([])])[0] == "raised"
    assert agree("cumulative_separate_keeps_first", "balance", torch.tensor([]), 1.0) == "raised"


@pytest.mark.parametrize("x", [
    torch.tensor([1.0, NAN, 3.0, 0.0, 5.0, NAN]), torch.tensor([NAN, 1.0, 3.0]),
    torch.tensor([-1.0, -0.0, 0.0, -2.0]), torch.tensor([3, 1, 4, 1, 5], dtype=torch.uint8),
    torch.tensor([False, True, False]), torch.tensor([]), torch.tensor([2.0]),
], ids=["nan inside is skipped", "nan first sticks", "signed zeros", "uint8", "bool", "empty", "one element"])
def test_python_max_skips_nan_like_the_loop(x):
    assert agree("cumulative_running_max_builtin", "high_water_mark", x) == "ok"


@pytest.mark.parametrize("x", [
    torch.tensor([4.0, NAN, 3.0, 5.0]), torch.tensor([NAN, 1.0]), torch.tensor([5, 3, 9], dtype=torch.int32),
], ids=["nan propagates", "nan first", "int32"])
def test_torch_minimum_and_maximum_propagate_nan_like_cummin_and_cummax(x):
    assert agree("cumulative_running_min_torch", "running_low", x) == "ok"
    assert agree("cumulative_clone_running_max", "peaks", x) == "ok"


def test_separate_output_keeps_its_first_value():
    deposits = torch.tensor([100.0, 1.5, -2.0, 4.25], dtype=torch.float64)  # float64 into float32
    assert agree("cumulative_separate_keeps_first", "balance", deposits, 10.0) == "ok"
    assert agree("cumulative_separate_keeps_first", "balance", torch.tensor([3, 4]), 0.5) == "ok"


def test_rows_and_columns_scan_the_right_dimension():
    grid = torch.arange(12, dtype=torch.int32).reshape(4, 3)
    assert agree("cumulative_augmented_rows", "accumulate_rows", grid) == "ok"
    assert agree("cumulative_along_columns", "cumulative_columns", grid) == "ok"
    assert agree("cumulative_along_columns", "cumulative_columns", grid[:, :0]) == "ok"
    assert agree("cumulative_along_columns", "cumulative_columns", grid.t()) == "ok"


# --------------------------------------------------------------------------- focused matches and declines


def _plan(source):
    return plan_source("m.py", source, (PATTERN,), show_declined=True)


def _messages(source):
    return [p.message for p in _plan(source).planned]


def _declines(source):
    plan = _plan(source)
    assert not plan.planned, [p.message for p in plan.planned]
    return " ".join(f.message for f in plan.declined)


def _agree_source(source, function, *args):
    """Where the loop runs, the rewrite returns and mutates the same."""
    planned = _plan(source).planned
    new = apply_keys("m.py", source, {p.key for p in planned}, (PATTERN,))
    before, after = {}, {}
    exec(compile(source, "before.py", "exec"), before)
    exec(compile(new, "after.py", "exec"), after)
    a, b = exactness.run(before[function], args), exactness.run(after[function], args)
    assert a[0] == "ok" == b[0], (a, b)
    exactness.same(a[1], b[1])
    exactness.same(a[2], b[2])


def test_torch_alias_and_two_argument_torch_max():
    src = "import torch as th\ndef f(x):\n    for i in range(1, len(x)):\n        x[i] = th.max(x[i - 1], x[i])\n    return x\n"
    assert _messages(src) == ["becomes `x[:] = th.cummax(x, 0).values`"]
    _agree_source(src, "f", torch.tensor([1.0, NAN, 0.0]))


def test_stop_measuring_another_array_scans_a_prefix():
    src = "import torch\ndef f(x, y):\n    for i in range(1, len(y)):\n        x[i] += x[i - 1]\n    return x\n"
    assert _messages(src) == ["becomes `x[:len(y)] = torch.cumsum(x[:len(y)], 0)`"]
    _agree_source(src, "f", torch.tensor([1, 2, 3, 4]), torch.zeros(2))
    _agree_source(src, "f", torch.tensor([1, 2, 3, 4]), torch.zeros(0))


def test_separate_output_walking_a_prefix():
    src = "import torch\ndef f(x, y):\n    out = torch.ones(len(x), dtype=torch.float64)\n" \
          "    for i in range(1, len(y)):\n        out[i] = out[i - 1] * x[i]\n    return out\n"
    assert _messages(src) == ["becomes `out[1:len(y)] = out[:1] * torch.cumprod(x[1:len(y)], 0)`"]
    _agree_source(src, "f", torch.tensor([2.0, 3.0, 0.5, 4.0]), torch.zeros(3))
    _agree_source(src, "f", torch.tensor([2.0, 3.0]), torch.zeros(0))


def test_separate_python_min_skips_nan():
    src = "import torch\ndef f(x):\n    out = x.clone()\n    out[0] = 0.0\n" \
          "    for i in range(1, len(x)):\n        out[i] = min(out[i - 1], x[i])\n    return out\n"
    assert _messages(src) == ["becomes `out[1:] = torch.minimum(out[:1], torch.cummin(torch.where("
                              "x[1:].isnan(), out[:1], x[1:]), 0).values)`"]
    for x in (torch.tensor([5.0, NAN, -1.0, 2.0]), torch.tensor([5.0]), torch.tensor([3, -2, 4])):
        _agree_source(src, "f", x)


def test_exclusive_scan_declines():
    # out[i] = out[i-1] + x[i-1] sums the elements before i, not up to i
    src = "import torch\ndef f(x):\n    out = torch.zeros_like(x)\n    for i in range(1, len(x)):\n" \
          "        out[i] = out[i - 1] + x[i - 1]\n    return out\n"
    assert "is not the current element" in _declines(src)


def test_loop_variable_used_after_declines():
    src = "import torch\ndef f(x):\n    for i in range(1, len(x)):\n        x[i] += x[i - 1]\n    return i\n"
    assert "used after" in _declines(src)


def test_column_scan_over_the_row_count_declines():
    src = "import torch\ndef f(x):\n    for j in range(1, len(x)):\n        x[:, j] += x[:, j - 1]\n    return x\n"
    assert "not the length of `x` along dimension 1" in _declines(src)


def test_output_of_unknown_dtype_declines():
    src = "import torch\ndef f(x, out):\n    for i in range(1, len(x)):\n        out[i] = out[i - 1] + x[i]\n    return out\n"
    assert "dtype is unknown" in _declines(src)


def test_max_along_a_dimension_is_not_a_running_max():
    # torch.max(x[i - 1], 0) is a reduction over dimension 0, not a pairwise maximum
    src = "import torch\ndef f(x):\n    for i in range(1, len(x)):\n        x[i] = torch.max(x[i - 1], 0)\n    return x\n"
    assert _messages(src) == []


def test_full_with_an_integer_fill_is_an_integer_output():
    src = "import torch\ndef f(x):\n    out = torch.full((len(x),), 0)\n    for i in range(1, len(x)):\n" \
          "        out[i] = out[i - 1] + x[i]\n    return out\n"
    assert "takes its dtype from the fill value" in _declines(src)


def test_new_zeros_of_the_input_has_its_dtype():
    src = "import torch\ndef f(x):\n    out = x.new_zeros(len(x))\n    for i in range(1, len(x)):\n" \
          "        out[i] = out[i - 1] + x[i]\n    return out\n"
    assert _messages(src) == ["becomes `out[1:] = out[:1] + torch.cumsum(x[1:], 0)`"]
    _agree_source(src, "f", torch.tensor([3, 200, 100], dtype=torch.uint8))


def test_a_length_taken_before_the_array_is_rebound_declines():
    # n is the old length: after `x = torch.cat([x, x])` the loop scans only its first half
    src = "import torch\ndef f(x):\n    n = len(x)\n    x = torch.cat([x, x])\n    for i in range(1, n):\n" \
          "        x[i] += x[i - 1]\n    return x\n"
    assert "not the length of `x`" in _declines(src)


def test_a_rebound_parameter_scanned_with_its_own_length():
    src = "import torch\ndef f(x):\n    x = x.clone()\n    for i in range(1, len(x)):\n        x[i] += x[i - 1]\n    return x\n"
    assert _messages(src) == ["becomes `x[:] = torch.cumsum(x, 0)`"]
