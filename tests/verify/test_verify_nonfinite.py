"""nan, inf and -inf: kept in the examples, compared strictly unless asked otherwise."""

import pytest

from loopvec.verify import VerifySettings

# Agrees with the loop on every finite value; where the loop gives nan it gives inf.
NAN_TO_INF = "def double(x):\n    return torch.where(torch.isnan(x), float('inf'), x * 2).float()\n"


@pytest.fixture(scope="module")
def strict(rewrite, batch):
    return batch("nonfinite-strict", [rewrite("maps.py", "double", NAN_TO_INF, key="nan to inf")], VerifySettings())


@pytest.fixture(scope="module")
def lenient(rewrite, batch):
    cands = [rewrite("maps.py", "double", NAN_TO_INF, key="nan to inf")]
    return batch("nonfinite-lenient", cands, VerifySettings(lenient_nonfinite=True))


def test_lenient_comparison_is_off_by_default():
    assert VerifySettings().lenient_nonfinite is False


def test_by_default_inf_where_the_loop_gives_nan_is_refused(strict):
    v = strict["nan to inf"]
    assert v.status == "failed"
    assert "original nan, rewrite inf" in v.counterexample


def test_with_lenient_nonfinite_inf_for_nan_is_accepted(lenient):
    v = lenient["nan to inf"]
    assert v.status == "verified", v.message
