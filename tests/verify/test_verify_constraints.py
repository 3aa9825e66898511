"""Constraints from usage and the search past them: the verifier finds inputs for
unannotated code from what torch APIs and Python forms require of their operands, and
when that falls short, from the original's exceptions."""

import pytest

from loopvec.analysis.usage import CONSTRAINTS, usage_facts
from loopvec.verify import VerifySettings
from loopvec.verify.plan import Param, build_plan

SETTINGS = VerifySettings(max_examples=30, timeout_s=60.0, workers=2)
PRELUDE = "import torch\nimport torch.nn.functional as F"

# ---------------------------------------------------------------------------- the table

# (CONSTRAINTS entry, a body using it, what the input plan must then say)
TABLE = [
    ("fft2", "def f(images):\n    for img in images:\n        torch.fft.fft2(img)\n", [("rank", "images", 3)]),
    ("ifft2", "def f(x):\n    return torch.fft.ifft2(x)\n", [("rank", "x", 2)]),
    ("rfft2", "def f(x):\n    return [torch.fft.rfft2(x[i]) for i in range(len(x))]\n", [("rank", "x", 3)]),
    ("irfft2", "def f(x):\n    return torch.fft.irfft2(x)\n", [("rank", "x", 2)]),
    ("fftn(dim=...)", "def f(x):\n    return torch.fft.fftn(x, dim=(-3, -1))\n", [("rank", "x", 3)]),
    ("matmul", "def f(a, b):\n    for i in range(len(a)):\n        torch.matmul(a[i], b)\n",
     [("rank", "a", 2), ("rank", "b", 1), ("tied", ("a", 1), ("b", 0))]),
    ("@", "def f(a, b):\n    return a @ b\n", [("rank", "a", 1), ("tied", ("a", 0), ("b", 0))]),
    ("mm", "def f(a, b):\n    return torch.mm(a, b)\n", [("rank", "a", 2), ("rank", "b", 2), ("tied", ("a", 1), ("b", 0))]),
    ("bmm", "def f(a, b):\n    return a.bmm(b)\n", [("rank", "a", 3), ("rank", "b", 3), ("tied", ("a", 2), ("b", 1))]),
    ("mv", "def f(m, v):\n    return torch.mv(m, v)\n", [("rank", "m", 2), ("rank", "v", 1), ("tied", ("m", 1), ("v", 0))]),
    ("conv1d", "def f(x, w):\n    return F.conv1d(x, w)\n", [("rank", "x", 3), ("rank", "w", 3), ("tied", ("x", 1), ("w", 1))]),
    ("conv2d", "def f(x, w):\n    return torch.nn.functional.conv2d(x, w)\n",
     [("rank", "x", 4), ("tied", ("x", 1), ("w", 1)), ("tied", ("x", 3), ("w", 3))]),
    ("conv3d", "def f(x, w):\n    for i in range(len(x)):\n        F.conv3d(x[i : i + 1], w)\n", [("rank", "x", 5), ("rank", "w", 5)]),
    ("softmax(dim=k)", "def f(x):\n    return torch.softmax(x, dim=2)\n", [("rank", "x", 3)]),
    ("softmax(dim=k)", "def f(x):\n    for row in x:\n        row.log_softmax(-2)\n", [("rank", "x", 3)]),
    ("softmax(dim=k)", "def f(x):\n    return x.sum(0) + x.cumsum(-1)\n", [("rank", "x", 1)]),
    ("linalg square", "def f(m):\n    return torch.linalg.det(m)\n", [("rank", "m", 2), ("tied", ("m", 0), ("m", 1))]),
    ("linalg matrix", "def f(m):\n    return torch.linalg.svd(m)\n", [("rank", "m", 2), ("untied", ("m", 0), ("m", 1))]),
    (".T", "def f(x):\n    return x.T\n", [("rank", "x", 2)]),
    (".t()", "def f(x, w):\n    return x @ w.t()\n", [("rank", "w", 2), ("tied", ("x", 0), ("w", 1))]),
    (".mT", "def f(x):\n    return x.mT\n", [("rank", "x", 2)]),
    ("H, W = x.shape", "def f(x):\n    H, W, C = x.shape\n    return H\n", [("rank", "x", 3)]),
    ("x.shape[-k:]", "def f(x):\n    h, w = x.shape[-2:]\n    return h\n", [("rank", "x", 2)]),
    ("x.shape[-k]", "def f(x):\n    return x.shape[-3]\n", [("rank", "x", 3)]),
    ("len(x[0])", "def f(x):\n    return len(x[0])\n", [("rank", "x", 2)]),
    ("x[i][j]", "def f(x):\n    for i in range(len(x)):\n        x[i][0] + 1\n", [("rank", "x", 2)]),
    ("x[idx[i]]", "def f(data, idx):\n    for i in range(len(idx)):\n        data[idx[i]]\n",
     [("dtype", "idx", "int64"), ("positions", "idx", ("data", 0))]),
    ("counts[l] += 1", "def f(labels):\n    counts = torch.zeros(10)\n    for l in labels:\n        counts[l] += 1\n",
     [("dtype", "labels", "int64"), ("below", "labels", 10)]),
    ("counts[l] += 1", "def f(labels, C):\n    counts = torch.zeros(C)\n    for l in labels.flatten():\n        counts[l] += 1\n",
     [("dtype", "labels", "int64"), ("positions", "labels", ("C", -1))]),
    ("torch.where", "def f(x, m):\n    for i in range(len(x)):\n        torch.where(m[i], x[i], 0)\n",
     [("dtype", "m", "bool"), ("tied", ("x", 0), ("m", 0))]),
    ("masked_fill", "def f(x, m):\n    for i in range(len(x)):\n        x[i, 0].masked_fill(m[i], 0)\n",
     [("dtype", "m", "bool"), ("rank", "x", 2)]),
    (".item()", "def f(x):\n    return x.item() + x.sum(1)\n", [("rank", "x", 2), ("sizes", "x", (1, 1))]),
]


def _plan(source):
    facts = usage_facts(source)
    return build_plan([Param(name) for name in facts.params], facts, {})


def _holds(plan, claim) -> bool:
    args, dims = dict(plan.args), {d.name: d for d in plan.dims}
    what, name, value = claim
    if what == "rank":
        return len(args[name].dims) == value
    if what in ("tied", "untied"):
        (p, a), (q, b) = name, value
        return (args[p].dims[a] == args[q].dims[b]) == (what == "tied")
    if what == "dtype":
        return args[name].dtypes == (value,)
    if what == "positions":
        p, axis = value
        return args[name].index_of == (args[p].dims[axis] if axis >= 0 else args[p].size)
    if what == "below":
        d = dims[args[name].index_of]
        return (d.low, d.high) == (value, value)
    if what == "sizes":
        return tuple(dims[d].high for d in args[name].dims) == value
    raise AssertionError(what)


def test_every_entry_of_the_table_has_an_example():
    assert {entry for entry, _, _ in TABLE} == set(CONSTRAINTS)


@pytest.mark.parametrize("entry, source, claims", TABLE, ids=[f"{t[0]}: {t[1].splitlines()[-1].strip()}" for t in TABLE])
def test_what_an_api_requires_shapes_the_inputs(entry, source, claims):
    plan = _plan(source)
    for claim in claims:
        assert _holds(plan, claim), (claim, plan.hint(), plan.args)


# ---------------------------------------------------------------------------- unannotated functions

# (function in cases/unannotated/funcs.py, its rewrite)
REWRITES = {
    "fft2_each": "def fft2_each(images):\n    return torch.fft.fft2(images)\n",
    "ifft2_each": "def ifft2_each(images):\n    return torch.fft.ifft2(images).real\n",
    "rfft2_each": "def rfft2_each(images):\n    return torch.fft.rfft2(images).abs()\n",
    "fftn_each": "def fftn_each(x):\n    return torch.fft.fftn(x, dim=(-2, -1))\n",
    "fft_columns_each": "def fft_columns_each(x):\n    return torch.fft.fft(x, dim=-2)\n",
    "project_each": "def project_each(x, w):\n    return x @ w.t()\n",
    "matmul_each": "def matmul_each(x, w):\n    return torch.matmul(x, w)\n",
    "mm_each": "def mm_each(a, b):\n    return torch.bmm(a, b)\n",
    "bmm_chunks": "def bmm_chunks(a, b):\n    return torch.bmm(a, b[: a.shape[0]])\n",
    "conv1d_each": "def conv1d_each(x, weight):\n    return F.conv1d(x, weight)\n",
    "conv2d_each": "def conv2d_each(images, weight):\n    return F.conv2d(images, weight)\n",
    "conv3d_each": "def conv3d_each(volumes, weight):\n    return F.conv3d(volumes, weight)\n",
    "softmax_each": "def softmax_each(x):\n    return torch.softmax(x, dim=2)\n",
    "log_softmax_method_each": "def log_softmax_method_each(x):\n    return x.log_softmax(2)\n",
    "cumsum_each": "def cumsum_each(x):\n    return x.cumsum(dim=2)\n",
    "det_each": "def det_each(m):\n    return torch.linalg.det(m)\n",
    "matrix_power_each": "def matrix_power_each(m):\n    return torch.linalg.matrix_power(m, 2)\n",
    "eigvalsh_each": "def eigvalsh_each(m):\n    return torch.linalg.eigvalsh(m)\n",
    "gram_each": "def gram_each(m):\n    return m.mT @ m\n",
    "transpose_each": "def transpose_each(x):\n    return x.transpose(1, 2).clone()\n",
    "mean_of_each": "def mean_of_each(images):\n    return images.double().mean(dim=(1, 2))\n",
    "centre_each": "def centre_each(x):\n    h, w = x.shape[-2:]\n    return x[..., h // 2, w // 2].clone()\n",
    "column_sums": "def column_sums(x):\n    return x.sum(0)\n",
    "doubled": "def doubled(x):\n    return (x * 2).to(x.dtype)\n",
    "take_rows": "def take_rows(data, idx):\n    return data[idx]\n",
    "histogram_ten": (
        "def histogram_ten(labels):\n    counts = torch.zeros(10)\n"
        "    return counts.index_put_((labels,), torch.ones(labels.shape[0]), accumulate=True)\n"
    ),
    "histogram_of": (
        "def histogram_of(labels, num_classes):\n    counts = torch.zeros(num_classes, dtype=torch.long)\n"
        "    flat = labels.flatten()\n"
        "    return counts.index_put_((flat,), torch.ones_like(flat, dtype=torch.long), accumulate=True)\n"
    ),
    "keep_where": "def keep_where(x, m):\n    return torch.where(m, x, torch.zeros_like(x))\n",
    "masked_zero_each": "def masked_zero_each(x, m):\n    return x.masked_fill(m, 0)\n",
    "items": "def items(x):\n    return x.tolist()\n",
}


@pytest.fixture(scope="module")
def verdicts(rewrite, batch):
    cands = [rewrite("unannotated/funcs.py", name, src, prelude=PRELUDE) for name, src in REWRITES.items()]
    return batch("constraints", cands, SETTINGS)


@pytest.mark.parametrize("name", list(REWRITES))
def test_an_unannotated_function_is_verified_without_hints(verdicts, name):
    v = verdicts[name]
    assert v.status == "verified", v.message
