"""Every planted wrong rewrite is refused, with a counterexample that shows the bug."""

import re

import pytest

from loopvec.verify import VerifySettings

PLANTED = {
    "dtype change": ("maps.py", "double", "def double(x):\n    return x * 2\n"),
    "off-by-one range": ("maps.py", "diffs", "def diffs(x, out):\n    out[: len(x) - 2] = x[1:-1] - x[:-2]\n"),
    "changed mutation": ("maps.py", "scale_into", "def scale_into(x, res):\n    x.mul_(2)\n    res.copy_(x)\n"),
    "fails only on empty input": ("maps.py", "running_max", "def running_max(x):\n    return x.max()\n"),
    "uint8 integer division": (
        "maps.py",
        "average",
        # exact for floats (inf and nan included) and wide integers: wrong only where
        # uint8 addition wraps around in the original
        "def average(a, b, out):\n    out.copy_(torch.div(a.double() + b.double(), 2, rounding_mode='floor'))\n",
    ),
    "wrong only on non-contiguous input": (
        "maps.py",
        "double_2d",
        "def double_2d(x):\n    return torch.as_strided(x, x.shape, x.contiguous().stride()) * 2\n",
    ),
    "view that needs contiguity": ("maps.py", "double_2d", "def double_2d(x):\n    return (x.view(-1) * 2).view(x.shape)\n"),
    "dropped state update in a method": (
        "methods.py",
        "Normalizer.normalize",
        "def normalize(self, x):\n    return x / (x.abs() + self.eps)\n",
    ),
    "new warning": (
        "maps.py",
        "double",
        "def double(x):\n    import warnings\n    warnings.warn('careful')\n    return (x * 2).float()\n",
    ),
    # The loop casts into x's dtype (out = zeros_like(x)); the rewrite promotes.
    "promotes where the loop casts": ("maps.py", "affine", "def affine(x, y):\n    return x * y + 2\n"),
    # The loop promotes each product; `@` refuses float32 @ float64.
    "matmul of mixed dtypes": ("maps.py", "matmul", "def matmul(A, B):\n    return A @ B\n"),
    "returns its input": ("maps.py", "restack", "def restack(x):\n    return x\n"),
    "returns a view of its input": ("maps.py", "restack", "def restack(x):\n    return x.contiguous()\n"),
    # bincount refuses the negative labels the loop accepts as Python indices.
    "negative indices refused": (
        "maps.py",
        "histogram",
        "def histogram(labels, C):\n    return torch.bincount(labels, minlength=C).float()\n",
    ),
    # index_add_ checks its indices: -1 is not accepted as the last position.
    "negative indices unnormalised": (
        "maps.py",
        "scatter_add",
        "def scatter_add(out, idx, v):\n    out.index_add_(0, idx, v.to(out.dtype))\n",
    ),
    # Plain assignment keeps one of the repeated indices' values: the loop adds them all.
    "repeated indices overwrite": (
        "maps.py",
        "scatter_add",
        "def scatter_add(out, idx, v):\n    out[idx] += v.to(out.dtype)\n",
    ),
    # Right for exactly one batch dim; *batch also stands for none or two.
    "einsum with one batch dim": (
        "annotated.py",
        "scale_last",
        "def scale_last(x, w):\n    return torch.einsum('bc,c->bc', x, w).to(x.dtype)\n",
    ),
    "model sees rows mixed": ("maps.py", "apply_rows", "def apply_rows(model, x):\n    return model(x - x.mean(0))\n"),
    "model sees columns as rows": ("maps.py", "apply_rows", "def apply_rows(model, x):\n    return model(x.T).T\n"),
}


@pytest.fixture(scope="module")
def verdicts(rewrite, batch):
    cands = [rewrite(module, name, source, key=key) for key, (module, name, source) in PLANTED.items()]
    return batch("planted", cands, VerifySettings(max_examples=60))


def refused(verdicts, key):
    v = verdicts[key]
    assert v.status == "failed", f"{key}: {v.status}: {v.message}"
    assert v.counterexample, f"{key}: no counterexample"
    return v


def test_a_dtype_change_is_refused(verdicts):
    v = refused(verdicts, "dtype change")
    assert "dtype differs: original torch.float32, rewrite torch.float64" in v.message
    assert "x = Tensor float64" in v.counterexample


def test_an_off_by_one_range_is_refused(verdicts):
    v = refused(verdicts, "off-by-one range")
    assert "argument out after the call: values differ" in v.message
    assert "out = Tensor" in v.counterexample and "at [" in v.counterexample


def test_a_changed_mutation_of_an_argument_is_refused(verdicts):
    v = refused(verdicts, "changed mutation")
    assert "argument x after the call" in v.message


def test_a_rewrite_failing_only_on_empty_input_is_refused(verdicts):
    v = refused(verdicts, "fails only on empty input")
    assert "raised RuntimeError" in v.message
    assert "[0] = []" in v.counterexample


def test_an_integer_division_difference_on_uint8_is_refused(verdicts):
    v = refused(verdicts, "uint8 integer division")
    assert "Tensor uint8" in v.counterexample
    assert "values differ" in v.message


def test_a_rewrite_wrong_only_on_non_contiguous_input_is_refused(verdicts):
    v = refused(verdicts, "wrong only on non-contiguous input")
    assert "non-contiguous" in v.counterexample
    assert "values differ" in v.message


def test_a_view_that_needs_contiguous_memory_is_refused(verdicts):
    v = refused(verdicts, "view that needs contiguity")
    assert "raised RuntimeError" in v.message
    assert "non-contiguous" in v.counterexample


def test_a_method_that_no_longer_updates_self_is_refused(verdicts):
    v = refused(verdicts, "dropped state update in a method")
    assert "self.calls after the call: original 1, rewrite 0" in v.message


def test_a_rewrite_that_adds_a_warning_is_refused(verdicts):
    v = refused(verdicts, "new warning")
    assert "warns UserWarning: careful" in v.message


def test_counterexamples_are_shrunk_to_a_few_lines(verdicts):
    for key, v in verdicts.items():
        assert len(v.counterexample.splitlines()) <= 10, f"{key}:\n{v.counterexample}"


def test_a_rewrite_that_promotes_where_the_loop_casts_is_refused_on_mixed_dtypes(verdicts):
    v = refused(verdicts, "promotes where the loop casts")
    assert "dtype differs: original torch.float32, rewrite torch.float64" in v.message
    assert "x = Tensor float32" in v.counterexample and "y = Tensor float64" in v.counterexample


def test_a_matmul_that_refuses_mixed_dtypes_is_refused(verdicts):
    v = refused(verdicts, "matmul of mixed dtypes")
    assert "raised RuntimeError" in v.message and "same dtype" in v.message


def test_returning_the_input_where_the_loop_copies_is_refused(verdicts):
    v = refused(verdicts, "returns its input")
    assert "return value: shares memory with argument x; the original's is a new tensor" in v.message


def test_returning_a_view_of_the_input_is_refused(verdicts):
    v = refused(verdicts, "returns a view of its input")
    assert "shares memory with argument x" in v.message


def test_a_rewrite_that_refuses_negative_indices_is_refused(verdicts):
    v = refused(verdicts, "negative indices refused")
    assert "raised RuntimeError" in v.message
    assert "-1" in v.counterexample.split("labels = ")[1].splitlines()[0]


def test_a_scatter_that_does_not_normalise_negative_indices_is_refused(verdicts):
    v = refused(verdicts, "negative indices unnormalised")
    assert "raised" in v.message


def test_a_scatter_that_drops_repeated_indices_is_refused(verdicts):
    v = refused(verdicts, "repeated indices overwrite")
    assert "argument out after the call: values differ" in v.message


def test_an_einsum_that_assumes_one_batch_dim_is_refused(verdicts):
    v = refused(verdicts, "einsum with one batch dim")
    shape = re.search(r"x = Tensor \w+ \[([^\]]*)\]", v.counterexample).group(1)
    assert len(shape.split(",")) in (1, 3)  # zero or two batch dims before c, not one


def test_a_batched_model_call_that_mixes_rows_is_refused(verdicts):
    v = refused(verdicts, "model sees rows mixed")
    assert v.stand_ins == ("model",)
    assert "model = StandInModel" in v.counterexample


def test_a_batched_model_call_on_the_wrong_axis_is_refused(verdicts):
    v = refused(verdicts, "model sees columns as rows")
    assert "shape differs" in v.message or "values differ" in v.message or "raised" in v.message
