"""Every planted wrong rewrite is refused, with a counterexample that shows the bug."""

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
