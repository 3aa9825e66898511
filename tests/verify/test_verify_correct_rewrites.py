"""Correct rewrites of the catalogue's loops are verified, on inferred inputs."""

import pytest

from loopvec.analysis.usage import usage_facts
from loopvec.verify import VerifySettings
from loopvec.verify.plan import build_plan
from loopvec.verify.source import find_definition

CORRECT = {
    "map into a float32 result": ("maps.py", "double", "def double(x):\n    return (x * 2).float()\n"),
    "differences written into an argument": (
        "maps.py",
        "diffs",
        "def diffs(x, out):\n    out[: max(len(x) - 1, 0)] = x[1:] - x[:-1]\n",
    ),
    "integer average": ("maps.py", "average", "def average(a, b, out):\n    out.copy_((a + b) // 2)\n"),
    "unannotated 2-D masked write": (
        "maps.py",
        "masked_double",
        "def masked_double(base, active, res):\n    res.copy_(torch.where(active, base * 2, torch.zeros_like(base)))\n",
    ),
    "mean of squares": ("maps.py", "mean_square", "def mean_square(x):\n    return (x ** 2).mean()\n"),
    "triple loop matmul": ("maps.py", "matmul", "def matmul(A, B):\n    return A @ B\n"),
    "broadcast mask": ("maps.py", "apply_mask", "def apply_mask(image, mask):\n    return image * mask\n"),
    "gather by index": ("maps.py", "gather_rows", "def gather_rows(data, indices):\n    return data[indices]\n"),
    "boolean mask selection": ("maps.py", "keep_where", "def keep_where(data, mask):\n    return data[mask]\n"),
    "in-place cumulative sum": ("maps.py", "prefix_sums", "def prefix_sums(x):\n    x.copy_(torch.cumsum(x, 0))\n"),
    "conditional via where": (
        "maps.py",
        "halve_big",
        "def halve_big(x, threshold):\n    return torch.where(x > threshold, x / 2, x).to(x.dtype)\n",
    ),
    "range bounded by an int argument": ("maps.py", "first_n", "def first_n(x, n):\n    return x[:n] + 1\n"),
}


@pytest.fixture(scope="module")
def verdicts(rewrite, batch):
    cands = [rewrite(module, name, source, key=key) for key, (module, name, source) in CORRECT.items()]
    return batch("correct", cands, VerifySettings(max_examples=40))


@pytest.mark.parametrize("key", list(CORRECT))
def test_correct_rewrite_is_verified(verdicts, key):
    v = verdicts[key]
    assert v.status == "verified", f"{v.message}\n{v.counterexample or ''}"
    assert v.examples >= 8 and v.devices[0] == "cpu"


def test_unannotated_function_gets_two_dimensional_inputs(verdicts):
    # def masked_double(base, active, res) indexes base[i][j] and writes res[i][j]:
    # all examples ran, so the inferred 2-D shapes were ones the loop accepts.
    assert verdicts["unannotated 2-D masked write"].discarded == 0


def test_unannotated_function_plan_reads_the_loops(cases):
    d = find_definition((cases / "maps.py").read_text(), "masked_double")
    plan = build_plan(d.params(), usage_facts(d.node), {})
    assert plan.hint() == "# loopvec: shapes base=[n,m] active=[n,m]:bool res=[n,m]"
