"""loopvec.memory: the largest tensor a rewrite materialises, against the loop's."""


import pytest
import torch

from loopvec.analysis.loops import find_loops
from loopvec.analysis.module import ModuleInfo
from loopvec.memory import (MeasureError, chunk_rows, chunked, estimate, estimate_sources, human, measure,
                            parse_size, walked_axes)


def pairwise_loop(points):
    out = []
    for p in points:
        out.append(((p - points) ** 2).sum(-1))
    return torch.stack(out)


def pairwise_vectorized(points):
    return ((points[:, None] - points[None]) ** 2).sum(-1)


def test_pairwise_rewrite_materialises_n_by_n_by_d():
    est = estimate(pairwise_loop, pairwise_vectorized, {"points": torch.randn(8, 3)},
                   walked={"points": (0,)}, scale=25, sizes_label="the verified sizes")
    assert est.shape == (200, 200, 3) and est.dims == "[N, N, 3]" and est.dtype == "float32"
    assert est.bytes == 200 * 200 * 3 * 4
    # one iteration held a [N, 3] difference; the stacked [N, N] result is the output of both
    assert est.loop_shape == (200, 3) and est.loop_dims == "[N, 3]"
    assert est.ratio == 200
    assert est.message == ("materialises a [N, N, 3] float32 tensor (~468.8 KiB at the verified sizes x 25); "
                           "the loop's largest was [N, 3] (~2.3 KiB)")


def test_fake_tensors_measure_sizes_that_would_not_fit():
    # 100k points: the [N, N, 3] difference is 120 GB; fake tensors allocate nothing
    est = estimate(pairwise_vectorized, pairwise_vectorized, {"points": torch.randn(10, 3)},
                   walked={"points": (0,)}, scale=10_000)
    assert est.bytes == 100_000 * 100_000 * 3 * 4
    assert est.exceeds(parse_size("16GiB")) and not est.exceeds(None)


def test_real_tensors_give_the_same_answer_at_small_sizes():
    args = {"points": torch.randn(6, 2)}
    fake = estimate(pairwise_loop, pairwise_vectorized, args, walked={"points": (0,)})
    real = estimate(pairwise_loop, pairwise_vectorized, args, walked={"points": (0,)}, fake=False)
    assert (fake.bytes, fake.shape, fake.loop_shape) == (real.bytes, real.shape, real.loop_shape)


def test_python_list_parameters_scale_by_length():
    def loop(image, centers):
        H, W = image.shape
        yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        out = []
        for c in centers:
            out.append(image * ((yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= 4.0).float())
        return torch.stack(out)

    def vectorized(image, centers):
        H, W = image.shape
        yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        c = torch.tensor(centers, dtype=torch.float64)
        d = (yy - c[:, 0, None, None].to(torch.float32)) ** 2 + (xx - c[:, 1, None, None].to(torch.float32)) ** 2
        return image * (d <= 4.0).float()

    est = estimate(loop, vectorized, {"image": torch.randn(5, 7), "centers": [(1.0, 2.0), (3.0, 1.5)]},
                   walked={"centers": (0,)}, scale=50)
    assert est.dims == "[N, 5, 7]" and est.shape == (100, 5, 7)
    assert est.loop_dims == "[5, 7]"


def test_measure_skips_outputs_and_reports_raising_functions():
    assert measure(lambda x: x * 2, (torch.ones(3),)) is None  # the only tensor is the output
    assert measure(lambda x: x * 2, (torch.ones(3),), intermediates_only=False).shape == (3,)
    with pytest.raises(MeasureError):
        measure(lambda x: x[10], (torch.ones(3),))


def test_estimate_from_function_sources():
    loop = "def f(points):\n    return torch.stack([((p - points) ** 2).sum(-1) for p in points])\n"
    new = "def f(points):\n    return ((points[:, None] - points[None]) ** 2).sum(-1)\n"
    est = estimate_sources(loop, new, "f", {"points": torch.randn(4, 3)}, walked={"points": (0,)}, scale=2)
    assert est.shape == (8, 8, 3)


def test_walked_axes_come_from_the_loop_ir():
    src = ("import torch\ndef f(points, others):\n    out = []\n    for i in range(len(points)):\n"
           "        for j in range(len(others)):\n            out.append(points[i] - others[j])\n    return out\n")
    outer = find_loops(ModuleInfo.parse("m.py", src))[0]
    assert walked_axes(outer) == {"points": (0,), "others": (0,)}
    src = "import torch\ndef f(x, centers: list[float]):\n    return torch.stack([x * c for c in centers])\n"
    assert walked_axes(find_loops(ModuleInfo.parse("m.py", src))[0]) == {"centers": (0,)}


@pytest.mark.parametrize("n, chunk", [(10, 3), (9, 3), (1, 4), (0, 2)], ids=["ragged", "even", "one", "empty"])
def test_chunked_expression_equals_the_whole(n, chunk):
    points = torch.randn(n, 3, dtype=torch.float64)
    others = torch.randn(5, 3, dtype=torch.float64)
    whole = "((points[:, None] - others[None]) ** 2).sum(-1)"
    text = chunked(whole, ["points"], chunk)
    assert text == ("torch.cat([((points_chunk[:, None] - others[None]) ** 2).sum(-1) "
                    f"for points_chunk in points.split({chunk})])")
    env = {"torch": torch, "points": points, "others": others}
    assert torch.equal(eval(text, env), eval(whole, env))


def test_chunked_over_zipped_rows_with_a_sum():
    import torch.nn.functional as F

    masks, targets, pred = torch.rand(7, 4, 5), torch.randn(7, 2, 4, 5), torch.randn(2, 4, 5)
    whole = 'F.mse_loss(pred * masks[:, None], targets, reduction="none").mean(dim=(1, 2, 3)).sum()'
    text = chunked(whole, ["masks", "targets"], 3, reduce="sum")
    assert "for masks_chunk, targets_chunk in zip(masks.split(3), targets.split(3))" in text
    env = {"torch": torch, "F": F, "masks": masks, "targets": targets, "pred": pred}
    assert torch.allclose(eval(text, env), eval(whole, env))


def test_chunked_leaves_attributes_and_keywords_alone():
    text = chunked("x.points + f(points=points)", ["points"], 2)
    assert text == "torch.cat([x.points + f(points=points_chunk) for points_chunk in points.split(2)])"


def test_chunk_rows_fits_the_limit():
    est = estimate(pairwise_vectorized, pairwise_vectorized, {"points": torch.randn(8, 3)},
                   walked={"points": (0,)}, scale=100)
    rows = chunk_rows(est.bytes // 10, est, 800)
    assert rows == 80


@pytest.mark.parametrize("text, value", [("4GiB", 4 * 2 ** 30), ("512 MB", 512 * 10 ** 6), ("1e9", 10 ** 9),
                                         ("2g", 2 * 10 ** 9), ("100", 100)])
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_parse_size_rejects_nonsense():
    with pytest.raises(ValueError):
        parse_size("lots")


def test_human():
    assert human(512) == "512 B" and human(3 * 2 ** 30 + 2 ** 29) == "3.5 GiB"
