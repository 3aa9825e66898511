"""The comparison at the heart of the oracle, one kind of difference at a time."""

import math
import warnings

import pytest
import torch

from loopvec.verify.oracle import compare, grad_difference, judge, run


def same(a, b):
    return compare(a, b, "value") is None


def test_equal_tensors_agree():
    assert same(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))


def test_a_different_dtype_is_a_difference():
    d = compare(torch.zeros(2), torch.zeros(2, dtype=torch.float64), "value")
    assert d.what == "dtype differs: original torch.float32, rewrite torch.float64"


def test_a_different_shape_is_a_difference():
    assert "shape differs" in compare(torch.zeros(2, 1), torch.zeros(2), "value").what


def test_a_python_float_is_not_a_tensor():
    assert "type differs: original float, rewrite Tensor (float32)" in compare(1.0, torch.tensor(1.0), "value").what


def test_nan_equals_nan_but_not_a_number():
    assert same(torch.tensor([math.nan]), torch.tensor([math.nan]))
    assert not same(torch.tensor([math.nan]), torch.tensor([0.0]))
    assert same(math.nan, math.nan)


def test_float32_tolerance_is_relative_and_tight():
    assert same(torch.tensor([1000.0]), torch.tensor([1000.0 + 1e-3]))
    assert not same(torch.tensor([1.0]), torch.tensor([1.001]))


def test_integers_compare_exactly():
    assert not same(torch.tensor([255], dtype=torch.uint8), torch.tensor([254], dtype=torch.uint8))
    assert not same(3, 4)
    assert not same(True, 1)  # bool is not int


def test_differing_positions_are_listed():
    d = compare(torch.tensor([[1, 2], [3, 4]]), torch.tensor([[1, 2], [3, 5]]), "return value")
    assert d.what == "values differ at 1 of 4 positions"
    assert d.details == ("at [1, 1]: original 4, rewrite 5",)


def test_containers_name_the_differing_element():
    d = compare((torch.zeros(1), {"k": [1, 2]}), (torch.zeros(1), {"k": [1, 3]}), "return value")
    assert d.where == "return value[1]['k'][1]"


def test_a_mutated_argument_is_a_difference():
    def fill(x, res):
        res[:] = x

    def forget(x, res):
        pass

    args = (torch.ones(2), torch.zeros(2))
    d = judge(run(lambda a, k: (fill(*a), None), args, {}, 0, "original"),
              run(lambda a, k: (forget(*a), None), args, {}, 0, "rewrite"), ["x", "res"])
    assert d.where == "argument res after the call"


def test_each_side_gets_its_own_copy_and_the_same_seed():
    x = torch.zeros(3)

    def noisy(args, kwargs):
        args[0].add_(torch.rand(3))
        return args[0].clone(), None

    a, b = run(noisy, (x,), {}, 7, "original"), run(noisy, (x,), {}, 7, "rewrite")
    assert torch.equal(a.value, b.value) and torch.equal(x, torch.zeros(3))
    assert judge(a, b, ["x"]) is None


def test_a_new_runtime_warning_is_a_difference():
    def quiet(args, kwargs):
        return 1, None

    def loud(args, kwargs):
        warnings.warn("overflow", RuntimeWarning)
        return 1, None

    d = judge(run(quiet, (), {}, 0, "original"), run(loud, (), {}, 0, "rewrite"), [])
    assert d.what == "warns RuntimeWarning: overflow"


def test_an_error_in_the_rewrite_is_a_difference():
    d = judge(run(lambda a, k: (1, None), (), {}, 0, "original"), run(lambda a, k: (1 / 0, None), (), {}, 0, "rewrite"), [])
    assert d.what == "raised ZeroDivisionError: division by zero"


def test_gradients_are_compared():
    def ref(args, kwargs):
        return args[0] * 2, None

    def detached(args, kwargs):
        return args[0].detach() * 2 + args[0] * 0, None

    x = torch.tensor([1.0, -2.0])
    assert grad_difference(ref, ref, (x,), {}, 0, ["x"]) is None
    d = grad_difference(ref, detached, (x,), {}, 0, ["x"])
    assert d.where == "gradient of x" and "values differ" in d.what


@pytest.mark.parametrize("dtype, ulp", [(torch.float16, 2**-10), (torch.bfloat16, 2**-7)], ids=["float16", "bfloat16"])
def test_half_precision_accepts_one_rounding_step(dtype, ulp):
    one, next_up = torch.tensor([1.0], dtype=dtype), torch.tensor([1.0 + ulp], dtype=dtype)
    assert not torch.equal(one, next_up)
    assert same(one, next_up)
    assert not same(one.float(), next_up.float())


def outcomes(original, rewrite, *args):
    return run(original, args, {}, 0, "original"), run(rewrite, args, {}, 0, "rewrite")


def test_returning_an_argument_where_the_original_copies_is_a_difference():
    ref, new = outcomes(lambda a, k: (torch.stack(list(a[0])), None), lambda a, k: (a[0], None), torch.ones(2, 2))
    d = judge(ref, new, ["x"])
    assert d.where == "return value" and d.what == "shares memory with argument x; the original's is a new tensor"


def test_a_view_inside_a_returned_tuple_is_found():
    ref, new = outcomes(
        lambda a, k: ((a[0] + 0, a[1] * 1), None), lambda a, k: ((a[0] + 0, a[1][:]), None), torch.ones(2), torch.ones(3)
    )
    d = judge(ref, new, ["x", "y"])
    assert d.where == "return value[1]" and "shares memory with argument y" in d.what


def test_returning_the_argument_the_original_returns_is_fine():
    def fill(a, k):
        a[0].mul_(2)
        return a[0], None

    ref, new = outcomes(fill, fill, torch.ones(2))
    assert judge(ref, new, ["x"]) is None


def test_empty_results_share_no_memory():
    ref, new = outcomes(lambda a, k: (a[0].clone(), None), lambda a, k: (a[0], None), torch.ones(0))
    assert judge(ref, new, ["x"]) is None


def test_nan_against_inf_is_a_difference_unless_lenient():
    nan, inf = torch.tensor([math.nan, 1.0]), torch.tensor([math.inf, 1.0])
    assert not same(nan, inf)
    assert not same(torch.tensor([math.inf]), torch.tensor([-math.inf]))
    assert compare(nan, inf, "value", lenient_nonfinite=True) is None
    assert compare(torch.tensor([-math.inf]), torch.tensor([math.nan]), "value", lenient_nonfinite=True) is None
    assert compare([math.inf], [math.nan], "value", lenient_nonfinite=True) is None
    # Lenient only where both are non-finite: a finite value against inf still differs.
    assert compare(torch.tensor([1.0]), torch.tensor([math.inf]), "value", lenient_nonfinite=True) is not None
