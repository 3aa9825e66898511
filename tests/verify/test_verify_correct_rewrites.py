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
    # The loop promotes each product and accumulates into A's dtype.
    "triple loop matmul": (
        "maps.py",
        "matmul",
        "def matmul(A, B):\n"
        "    common = torch.promote_types(A.dtype, B.dtype)\n"
        "    return (A.to(common) @ B.to(common)).to(A.dtype)\n",
    ),
    "broadcast mask": (
        "maps.py",
        "apply_mask",
        "def apply_mask(image, mask):\n    return (image * mask).to(image.dtype)\n",
    ),
    "gather by index": ("maps.py", "gather_rows", "def gather_rows(data, indices):\n    return data[indices]\n"),
    "boolean mask selection": ("maps.py", "keep_where", "def keep_where(data, mask):\n    return data[mask]\n"),
    "in-place cumulative sum": ("maps.py", "prefix_sums", "def prefix_sums(x):\n    x.copy_(torch.cumsum(x, 0))\n"),
    "conditional via where": (
        "maps.py",
        "halve_big",
        "def halve_big(x, threshold):\n    return torch.where(x > threshold, x / 2, x).to(x.dtype)\n",
    ),
    "range bounded by an int argument": ("maps.py", "first_n", "def first_n(x, n):\n    return x[:n] + 1\n"),
    "map of two arguments cast into the first's dtype": (
        "maps.py",
        "affine",
        "def affine(x, y):\n    return (x * y + 2).to(x.dtype)\n",
    ),
    "stack replaced by a copy": ("maps.py", "restack", "def restack(x):\n    return x.clone()\n"),
    "histogram of labels below an int argument": (
        "maps.py",
        "histogram",
        "def histogram(labels, C):\n"
        "    return torch.zeros(C).index_put_((labels,), torch.ones(len(labels)), accumulate=True)\n",
    ),
    "scatter-add at negative and repeated indices": (
        "maps.py",
        "scatter_add",
        "def scatter_add(out, idx, v):\n    out.index_put_((idx,), v.to(out.dtype), accumulate=True)\n",
    ),
    "jaxtyping variadic batch": (
        "annotated.py",
        "scale_last",
        "def scale_last(x, w):\n    return (x * w).to(x.dtype)\n",
    ),
    # torch.dot in the loop refuses mixed dtypes: the mixed run finds no input to use.
    "loop that refuses mixed dtypes": ("maps.py", "pair_dots", "def pair_dots(A, B):\n    return (A * B).sum(1)\n"),
    "batched call of a model argument": ("maps.py", "apply_rows", "def apply_rows(model, x):\n    return model(x)\n"),
    "batched call of an annotated module": (
        "annotated.py",
        "apply_rows_typed",
        "def apply_rows_typed(model, x):\n    return model(x)\n",
    ),
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


def test_an_index_tensor_into_a_local_allocation_fits_the_int_that_sizes_it(verdicts):
    # counts = torch.zeros(C); counts[labels[i]] += 1: labels hold positions below C,
    # so the original accepts (almost) every generated input.
    v = verdicts["histogram of labels below an int argument"]
    assert v.discarded <= v.examples // 10, v.message


@pytest.mark.parametrize("key", ["batched call of a model argument", "batched call of an annotated module"])
def test_a_proof_with_a_stand_in_model_names_the_parameter(verdicts, key):
    v = verdicts[key]
    assert v.stand_ins == ("model",)
    assert "model: a row-independent stand-in model" in v.message


def test_a_proof_without_a_model_has_no_stand_ins(verdicts):
    assert verdicts["mean of squares"].stand_ins == ()


def test_inputs_refused_in_the_mixed_dtype_run_do_not_starve_the_others(verdicts):
    v = verdicts["loop that refuses mixed dtypes"]
    # Four runs of 10 (float32, strided, float64, mixed): the mixed one comes last and
    # stops after 10 refusals rather than spending the give-up budget of 140.
    assert v.examples >= 25, v.message
    assert v.discarded <= 20, v.message
