"""Standalone comparisons, methods and modules inside packages."""

import pytest

from loopvec.verify import Candidate, Impl, VerifySettings, parse_target


def test_parse_target_splits_path_and_qualname():
    assert parse_target("src/a.py::Cls.method") == Impl("src/a.py", "Cls.method")
    with pytest.raises(ValueError):
        parse_target("a.py")


@pytest.fixture(scope="module")
def verdicts(rewrite, cases, batch):
    a = parse_target(f"{cases}/standalone_a.py::smooth")
    cands = [
        Candidate(a, parse_target(f"{cases}/standalone_b.py::smooth_vectorized"), key="same"),
        Candidate(a, parse_target(f"{cases}/standalone_b.py::smooth_wrong"), key="different"),
        rewrite(
            "methods.py",
            "Normalizer.normalize",
            "def normalize(self, x):\n    self.calls += 1\n    return x / (x.abs() + self.eps)\n",
            key="method",
        ),
        rewrite("methods.py", "NeedsConfig.run", "def run(self, x):\n    return x * 2\n", key="no default constructor"),
        rewrite("pkg/mod.py", "shift_scale", "def shift_scale(x):\n    return scale(x) + OFFSET\n", key="package"),
        rewrite("maps.py", "missing", "def missing(x):\n    return x\n", key="missing function"),
        rewrite("maps.py", "double", "def double(x):\n    return x *\n", key="syntax error"),
    ]
    return batch("targets", cands, VerifySettings(max_examples=30))


def test_two_files_that_agree_are_verified(verdicts):
    assert verdicts["same"].status == "verified", verdicts["same"].message


def test_two_files_that_differ_give_a_counterexample(verdicts):
    v = verdicts["different"]
    assert v.status == "failed"
    assert "signal = Tensor" in v.counterexample and "values differ" in v.counterexample


def test_a_method_on_a_default_constructible_class_is_verified(verdicts):
    assert verdicts["method"].status == "verified", verdicts["method"].message


def test_a_method_whose_class_needs_arguments_runs_on_a_test_double(verdicts):
    v = verdicts["no default constructor"]
    assert v.status == "verified", v.message
    assert "NeedsConfig.__init__ not called: on instances holding generated no attributes" in v.message


def test_a_module_with_a_relative_import_inside_a_package_is_verified(verdicts):
    assert verdicts["package"].status == "verified", verdicts["package"].message


def test_a_missing_function_is_unverifiable(verdicts):
    assert verdicts["missing function"].status == "unverifiable"
    assert "no function missing" in verdicts["missing function"].message


def test_a_rewrite_that_does_not_parse_fails(verdicts):
    v = verdicts["syntax error"]
    assert v.status == "failed" and v.message.startswith("the rewrite does not parse")


@pytest.fixture(scope="module")
def grad_verdicts(rewrite, batch):
    cands = [
        rewrite("maps.py", "double", "def double(x):\n    return (x * 2).float()\n", key="same gradient"),
        rewrite("maps.py", "double", "def double(x):\n    return (x * 2).float().detach()\n", key="detached"),
    ]
    return batch("grad", cands, VerifySettings(max_examples=20, grad=True))


def test_with_grad_a_detached_rewrite_is_refused(grad_verdicts):
    v = grad_verdicts["detached"]
    assert v.status == "failed" and "gradient of x" in v.message


def test_with_grad_a_faithful_rewrite_is_verified(grad_verdicts):
    assert grad_verdicts["same gradient"].status == "verified", grad_verdicts["same gradient"].message
