"""batched_op: per-item fft/linalg/softmax/conv/matmul/reductions become one call on the stack."""

import pytest

import fixture_cases
from loopvec.engine import plan_source

PAIRS, NOOPS = fixture_cases.discover("batched_op")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 6 and len(NOOPS) >= 4


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("batched_op", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("batched_op", case)


def _messages(source: str) -> list[str]:
    return [p.message for p in plan_source("m.py", source, ("batched_op",)).planned]


def _declines(source: str) -> str:
    plan = plan_source("m.py", source, ("batched_op",), show_declined=True)
    assert not plan.planned, [p.message for p in plan.planned]
    return " ".join(f.message for f in plan.declined)


def _one(expr: str, hint: str = "", collector: str = "stack") -> str:
    comment = f"  # loopvec: shapes {hint}" if hint else ""
    return f"import torch\nimport torch.nn.functional as F\ndef f(x, w):{comment}\n" \
           f"    return torch.{collector}([{expr} for v in x])\n"


@pytest.mark.parametrize("expr, hint, becomes", [
    # a non-negative dim moves past the new leading dim; a negative one counts from the end
    ("torch.softmax(v, dim=0)", "x=[n,k]", "torch.softmax(x, dim=1)"),
    ("torch.softmax(v, dim=-1)", "x=[n,k]", "torch.softmax(x, dim=-1)"),
    ("torch.fft.fft2(v, dim=(0, -1))", "x=[n,k,m]", "torch.fft.fft2(x, dim=(1, -1))"),
    ("v.flip([0, 1])", "x=[n,k,m]", "x.flip([1, 2])"),
    ("v.transpose(0, 1)", "x=[n,k,m]", "x.transpose(1, 2).clone()"),
    ("v.permute(2, 0, 1)", "x=[n,k,m,p]", "x.permute(0, 3, 1, 2).clone()"),
    # a default that names a non-negative dim is stated, shifted
    ("F.normalize(v)", "x=[n,k,m]", "F.normalize(x, dim=2)"),
    ("v.diagonal()", "x=[n,k,m]", "x.diagonal(dim1=1, dim2=2).clone()"),
    # ffts keep s= and norm=; fftn over every dim names the item's dims
    ("torch.fft.ifft2(v, s=(4, 4), norm='ortho')", "", "torch.fft.ifft2(x, s=(4, 4), norm='ortho')"),
    ("torch.fft.fftn(v)", "x=[n,k,m]", "torch.fft.fftn(x, dim=(1, 2))"),
    ("torch.fft.fftn(v, s=(2, 2))", "", "torch.fft.fftn(x, s=(2, 2))"),
    ("torch.fft.fftshift(v)", "x=[n,k,m]", "torch.fft.fftshift(x, dim=(1, 2))"),
    # whole-item reductions: a tuple of the item's dims, or one flattened dim
    ("v.sum()", "x=[n,k,m]", "x.sum(dim=(1, 2))"),
    ("v.max()", "x=[n,k]", "x.amax(dim=1)"),
    ("v.prod()", "x=[n,k,m]", "x.flatten(1).prod(dim=1)"),
    ("v.argmax()", "x=[n,k,m]", "x.flatten(1).argmax(dim=1)"),
    ("torch.linalg.vector_norm(v)", "x=[n,k,m]", "torch.linalg.vector_norm(x, dim=(1, 2))"),
    # linear algebra works on the trailing matrix dims already
    ("torch.linalg.inv(v)", "", "torch.linalg.inv(x)"),
    ("torch.linalg.matrix_norm(v, ord=2)", "", "torch.linalg.matrix_norm(x, ord=2)"),
    # products: the spelling depends on the declared ranks
    ("v @ w", "x=[n,d] w=[d,k]", "x @ w"),
    ("w @ v", "x=[n,d] w=[k,d]", "x @ w.mT"),
    ("w @ v", "x=[n,d,m] w=[k,d]", "w @ x"),
    ("torch.mv(v, w)", "", "x @ w"),
])
def test_dims_and_forms(expr, hint, becomes):
    assert _messages(_one(expr, hint)) == [f"becomes `{becomes}`"]


@pytest.mark.parametrize("expr, hint, reason", [
    ("torch.softmax(v, dim=-1)", "", "the rank of `v` is not declared"),
    ("v.sum(0)", "", "the rank of `v` is not declared"),
    ("v.sum()", "", "the rank of `v` is not declared"),
    ("torch.softmax(v, dim=k)", "x=[n,k]", "dim `k` is not an integer literal"),
    ("F.softmax(v)", "x=[n,k]", "without `dim=`"),
    ("torch.linalg.norm(v)", "x=[n,k,k]", "without `dim=`"),
    ("v.squeeze()", "x=[n,k,k]", "without `dim=`"),
    ("torch.roll(v, 1)", "x=[n,k]", "without `dims=`"),
    ("v.max(0)", "x=[n,k]", "more positional arguments"),
    ("v.sum(keepdim=True)", "x=[n,k]", "keepdim"),
    ("torch.linalg.det(v)", "x=[n,k,k]", "unknown call"),
    ("F.interpolate(v, scale_factor=2.0)", "x=[n,c,k]", "treats dim 0 of its input as the batch"),
    # a 3-d item is a batch to conv1d: stacked, the call would see a 4-d input
    ("F.conv1d(v, w)", "x=[n,b,c,k]", "exactly 2 dims per item"),
    ("v @ w", "x=[n,d]", "the rank of `w` is not declared"),
    ("torch.fft.rfftn(v * 2)", "", "a known number of dims per item"),
])
def test_declines(expr, hint, reason):
    assert reason in _declines(_one(expr, hint).replace("def f(x, w)", "def f(x, w, k=0)"))


def test_zero_d_items_are_why_ranks_matter():
    # 1-d x: each v is 0-d, softmax(v, -1) is 1.0 per item; the batched call is a real softmax
    import torch

    x = torch.tensor([1.0, 2.0, 3.0])
    per_item = torch.stack([torch.softmax(v, dim=-1) for v in x])
    assert torch.equal(per_item, torch.ones(3))
    assert not torch.equal(torch.softmax(x, dim=-1), per_item)


def test_batch_of_one_into_conv_needs_the_rank():
    src = ("import torch\nimport torch.nn.functional as F\ndef f(x, w):\n"
           "    return torch.cat([F.conv2d(x[i].unsqueeze(0), w) for i in range(len(x))])\n")
    assert "exactly 3 dims per item" in _declines(src)
    assert _messages(src.replace("(x, w):", "(x, w):  # loopvec: shapes x=[n,c,h,w]")) == \
        ["becomes `F.conv2d(x, w)`"]


def test_batch_of_one_stacked_keeps_its_dim():
    src = ("import torch\ndef f(x):  # loopvec: shapes x=[n,c,h]\n"
           "    return torch.stack([torch.nn.functional.max_pool1d(x[i:i + 1], 2) for i in range(len(x))])\n")
    assert _messages(src) == ["becomes `torch.nn.functional.max_pool1d(x, 2).unsqueeze(1)`"]


def test_no_batched_op_is_left_to_elementwise():
    assert "no batched torch op" in _declines(_one("v * 2 + 1"))


def test_reads_torch_through_its_import():
    src = "import torch as th\ndef f(x):  # loopvec: shapes x=[n,k]\n    return th.stack([th.softmax(v, 0) for v in x])\n"
    assert _messages(src) == ["becomes `th.softmax(x, 1)`"]
