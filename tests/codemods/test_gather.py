"""gather: every fixture pair is rewritten exactly, idempotent and verified; noops stay.

The verifier draws index tensors with valid, non-negative positions only, so the cases
it cannot reach -- negative indices (Python wraps them, index_add_ does not), repeated
indices, indices out of range (the loop and the rewrite must both raise), integer data
cast into a float allocation -- are checked here on hand-picked inputs.
"""


import pytest
import torch

import exactness
import fixture_cases
from loopvec.engine import apply_keys, plan_source

PATTERN = "gather"
PAIRS, NOOPS = fixture_cases.discover(PATTERN)


def test_catalogue_is_complete():
    assert len(PAIRS) >= 8 and len(NOOPS) >= 5


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair(PATTERN, case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop(PATTERN, case)


# --------------------------------------------------------------------------- exactness off the verifier's path


def agree(case_name, function, *args):
    """The fixture and its expected rewrite return and mutate the same, or both raise."""
    return exactness.agree(PAIRS, case_name, function, *args)


T = torch.tensor


@pytest.mark.parametrize("labels", [
    T([0, 2, 2, 1, 2]), T([-1, 0, -3, 2, -1]), T([2, 2], dtype=torch.int32), T([4]),
], ids=["repeated", "negative wraps", "int32 labels", "one label"])
def test_counts_match_the_loop(labels):
    assert agree("gather_count_labels", "class_counts", labels) == "ok"


def test_counts_fail_where_the_loop_fails():
    assert agree("gather_count_labels", "class_counts", T([-3, 0])) == "raised"


def test_counts_refuse_a_mask_rather_than_count_by_value():
    # a uint8 label indexes as a mask in the loop (adding 1 everywhere); index_add_ raises
    assert exactness.run(exactness.pair(PAIRS, "gather_count_labels")[1].class_counts, [T([0, 1], dtype=torch.uint8)])[0] == "raised"


def test_weighted_histogram_sums_repeats_and_wraps_negatives():
    bins = T([-1, 1, 1, 0, -2, 1])
    weights = T([0.5, 1.25, -2.0, 4.0, 0.25, 8.0])  # float32 into a float64 histogram
    assert agree("gather_scatter_add_weights", "weighted_histogram", bins, weights, 3) == "ok"
    assert agree("gather_scatter_add_weights", "weighted_histogram", bins, weights.double(), 4) == "ok"
    assert agree("gather_scatter_add_weights", "weighted_histogram", T([5]), T([1.0]), 3) == "raised"


def test_segment_sums_of_rows_with_repeats_and_negatives():
    x = torch.arange(12, dtype=torch.float64).reshape(6, 2)
    segment = T([0, -1, 0, 2, 2, 1])
    assert agree("gather_scatter_add_rows", "segment_sums", x, segment) == "ok"
    assert agree("gather_scatter_add_rows", "segment_sums", x.int(), segment) == "ok"
    assert agree("gather_scatter_add_rows", "segment_sums", x, T([0, 0, 0, 0, 0, -2])) == "raised"


def test_one_hot_wraps_negative_labels_and_rejects_wide_ones():
    assert agree("gather_one_hot", "one_hot", T([-1, 2, 0, 0])) == "ok"
    assert agree("gather_one_hot", "one_hot", T([-4, 0])) == "raised"
    assert agree("gather_one_hot", "one_hot", T([0, 0, 0])) == "ok"


def test_gathered_rows_keep_the_allocation_dtype_and_copy():
    data = torch.arange(15).reshape(5, 3)  # int64 data into a float32 allocation
    assert agree("gather_enumerate_rows", "lookup_rows", data, T([-1, 0, 4, 4])) == "ok"
    assert agree("gather_index_of_index", "embed", data.double(), T([2, -5, 2])) == "ok"
    assert agree("gather_pick_per_row", "label_logits", data, T([-1, 2, 0])) == "ok"
    out = exactness.pair(PAIRS, "gather_append_stack")[1].select_rows(data, T([1, 1]))
    assert out.data_ptr() != data.data_ptr()


def test_visited_marks_negative_and_repeated_positions():
    assert agree("gather_mark_visited", "visited", torch.arange(4), T([-1, 0, 0, 2])) == "ok"
    assert agree("gather_mark_visited", "visited", torch.arange(4), T([4])) == "raised"


# --------------------------------------------------------------------------- focused matches and declines


def _plan(source):
    return plan_source("m.py", source, (PATTERN,), show_declined=True)


def _messages(source):
    return [p.message for p in _plan(source).planned]


def _declines(source):
    plan = _plan(source)
    assert not plan.planned, [p.message for p in plan.planned]
    return " ".join(f.message for f in plan.declined)


def _rewritten_functions(source):
    planned = _plan(source).planned
    new = apply_keys("m.py", source, {p.key for p in planned}, (PATTERN,))
    before, after = {}, {}
    exec(compile(source, "before.py", "exec"), before)
    exec(compile(new, "after.py", "exec"), after)
    return before, after


def _agree_source(source, function, *args):
    """Where the loop runs, the rewrite returns and mutates the same."""
    before, after = _rewritten_functions(source)
    a, b = exactness.run(before[function], args), exactness.run(after[function], args)
    assert a[0] == "ok" == b[0], (a, b)
    if a[0] == "ok":
        exactness.same(a[1], b[1])
        exactness.same(a[2], b[2])


SCATTER_SUB = """import torch
def f(idx, v, n: int):
    out = torch.zeros(n, dtype=torch.int32)
    for i in range(len(idx)):
        out[idx[i]] -= v[i]
    return out
"""


def test_subtracting_at_indices_negates_the_values():
    assert _messages(SCATTER_SUB) == [
        "becomes `out.index_add_(0, torch.where(idx < 0, idx + len(out), idx), v.to(out.dtype).neg())`"]
    _agree_source(SCATTER_SUB, "f", T([0, -1, 0, 2]), T([5, 7, 1, 200]), 3)
    _agree_source(SCATTER_SUB, "f", T([0, -1, 0]), T([250, 7, 9], dtype=torch.uint8), 3)


ADD_CONSTANT_ROWS = """import torch
def f(idx, rows):
    for k in idx:
        rows[k] += 2.5
    return rows
"""


def test_adding_a_number_to_rows_of_unknown_shape_fills_whole_rows():
    assert _messages(ADD_CONSTANT_ROWS) == [
        "becomes `rows.index_add_(0, torch.where(idx < 0, idx + len(rows), idx), "
        "rows.new_full((len(idx), *rows.shape[1:]), 2.5))`"]
    _agree_source(ADD_CONSTANT_ROWS, "f", T([1, -1, 1]), torch.zeros(3, 2))
    _agree_source(ADD_CONSTANT_ROWS, "f", T([1, -1, 1]), torch.zeros(3))
    _agree_source(ADD_CONSTANT_ROWS, "f", T([0, 0]), torch.zeros(3, dtype=torch.float64))


def test_scaled_values_into_a_vector():
    src = """import torch
def f(idx, v, w):
    out = torch.zeros(5)
    for i in range(len(idx)):
        out[idx[i]] += v[i] * w[i]
    return out
"""
    assert _messages(src) == ["becomes `out.index_add_(0, torch.where(idx < 0, idx + len(out), idx), "
                              "(v * w).to(out.dtype))`"]
    _agree_source(src, "f", T([4, -1, 0]), T([1.0, 2.0, 3.0]), T([0.5, 0.25, 2.0], dtype=torch.float64))


def test_scatter_value_reading_the_output_declines():
    src = "import torch\ndef f(idx, v):\n    out = torch.zeros(4)\n    for i in range(len(idx)):\n        out[idx[i]] += out[0] * v[i]\n    return out\n"
    assert "loop-carried" in _declines(src) or "reads `out`" in _declines(src)


def test_gather_into_an_output_argument_declines():
    src = "import torch\ndef f(data, idx, out):\n    for i in range(len(idx)):\n        out[i] = data[idx[i]]\n"
    assert "not allocated in this function" in _declines(src)


def test_gather_along_a_later_dimension_declines():
    # data[:, idx[i]] is a column; data[:, idx] puts the gathered dimension second
    src = "import torch\ndef f(data, idx):\n    return torch.stack([data[:, k] for k in idx])\n"
    assert "does not index its first dimension with the loop" in _declines(src)


def test_chained_subscript_declines():
    # data[k][0] is the first element of row k; data[idx][0] would be the first row
    src = "import torch\ndef f(data, idx):\n    return torch.stack([data[k][0] for k in idx])\n"
    assert _messages(src) == []


def test_one_hot_with_a_torch_alias_and_enumerate():
    src = "import torch as th\ndef f(labels, c: int):\n    out = th.zeros(len(labels), c, dtype=th.long)\n" \
          "    for i, l in enumerate(labels):\n        out[i, l] = 1\n    return out\n"
    assert _messages(src) == ["becomes `out[th.arange(len(labels), device=labels.device), labels] = 1`"]
    _agree_source(src, "f", T([2, -1, 0]), 3)


def test_store_of_loop_values_at_the_loop_index_is_not_a_gather():
    src = "import torch\ndef f(x, idx):\n    out = torch.zeros(len(idx))\n    for i in range(len(idx)):\n        out[i, 0] = x[i]\n    return out\n"
    assert "gathered index" in _declines(src)


def test_loop_variable_used_after_declines():
    src = "import torch\ndef f(data, idx):\n    out = torch.zeros(len(idx), data.shape[1])\n" \
          "    for i in range(len(idx)):\n        out[i] = data[idx[i]]\n    return out, i\n"
    assert "used after" in _declines(src)


def test_python_list_histogram_declines():
    src = "import torch\ndef f(labels, c: int):\n    counts = [0] * c\n    for l in labels:\n        counts[l] += 1\n    return counts\n"
    assert "not a tensor allocated in this function" in _declines(src)


def test_full_with_an_integer_fill_is_not_the_default_dtype():
    # torch.full(size, 0) is int64: casting the gathered rows to the default float would be wrong
    src = "import torch\ndef f(data, idx):\n    out = torch.full((len(idx), data.shape[1]), 0)\n" \
          "    for i in range(len(idx)):\n        out[i] = data[idx[i]]\n    return out\n"
    assert "takes its dtype from the fill value" in _declines(src)
