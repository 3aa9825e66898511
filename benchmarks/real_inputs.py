"""Realistic inputs for the real-code check (`benchmarks/real.py`).

`INPUTS` maps `"lib:module.qualname"` (the function a verified rewrite changed) to a
function that returns a list of `Call`s: what the library's own callers pass, read from
its code and docstrings (a batch of images, a metric's predictions and targets, a list
of per-class curves), not what a generator would draw. A `Call` is either direct (the
function itself on `args`/`kwargs`, with `instance` building `self` for a method) or
`through` the library's public API, run once with the original and once with the
rewrite swapped in. The check seeds torch before building the calls and before each
side runs, so random inputs made inside `through` are the same for both sides.

Every verified rewrite the check sees needs an entry here; one without is `unchecked`.
Libraries are imported inside the functions: this module loads without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Call:
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    instance: Callable[[], Any] | None = None  # builds `self` for a method called directly
    through: Callable[[], Any] | None = None  # a public API call that reaches the function
    label: str = ""


INPUTS: dict[str, Callable[[], list[Call]]] = {}


def inputs(key: str):
    def register(make: Callable[[], list[Call]]) -> Callable[[], list[Call]]:
        INPUTS[key] = make
        return make

    return register


# --------------------------------------------------------------------------- kornia


@inputs("kornia:kornia.filters.otsu_thresholding.OtsuThreshold._kde_histogram")
def _otsu_kde_histogram() -> list[Call]:
    # Called by OtsuThreshold.forward with slow_and_differentiable=True on (B*C, H*W)
    # pixel values in bin coordinates [0, nbins], nbins=256, bandwidth 0.1 (0.5 for the
    # surrogate of the gradient path).
    import torch
    from kornia.filters import otsu_threshold

    image = torch.rand(2, 3, 32, 32)
    one_plane = torch.rand(1, 1, 16, 16)
    coords = torch.rand(6, 32 * 32) * 256

    def differentiable():
        x = torch.rand(2, 1, 16, 16, requires_grad=True)
        out, threshold = otsu_threshold(x, nbins=64, slow_and_differentiable=True)
        out.sum().backward()
        return out.detach(), threshold.detach(), x.grad

    return [
        Call((coords, 256, 0.1), label="coords of 2x3 32x32 images, 256 bins"),
        Call((torch.rand(1, 4096, dtype=torch.float64) * 64, 64, 0.5), label="one float64 plane, 64 bins"),
        Call(through=lambda: otsu_threshold(image, slow_and_differentiable=True), label="otsu_threshold 2x3x32x32"),
        Call(through=lambda: otsu_threshold(one_plane, nbins=32, slow_and_differentiable=True, return_mask=True),
             label="otsu_threshold one plane, mask"),
        Call(through=differentiable, label="otsu_threshold with its gradient"),
    ]


# --------------------------------------------------------------------------- torchmetrics


@inputs("torchmetrics:torchmetrics.functional.classification.logauc._reduce_logauc")
def _reduce_logauc() -> list[Call]:
    # Its callers pass the per-class ROC curves of multiclass_roc / multilabel_roc: lists of
    # 1-D tensors of unequal lengths without thresholds, a (C, T) tensor with them.
    import torch
    from torchmetrics.classification import MulticlassLogAUC
    from torchmetrics.functional.classification import multiclass_logauc, multilabel_logauc

    preds = torch.randn(40, 4).softmax(-1)
    target = torch.randint(0, 4, (40,))
    ml_preds, ml_target = torch.rand(30, 3), torch.randint(0, 2, (30, 3))
    ragged_fpr = [torch.tensor([0.0, 0.0, 0.5, 1.0]), torch.tensor([0.0, 0.25, 1.0])]
    ragged_tpr = [torch.tensor([0.0, 0.5, 1.0, 1.0]), torch.tensor([0.0, 1.0, 1.0])]

    def metric():
        m = MulticlassLogAUC(num_classes=4, average="none")
        m.update(preds[:20], target[:20])
        m.update(preds[20:], target[20:])
        return m.compute()

    return [
        Call((ragged_fpr, ragged_tpr), label="two ragged per-class curves"),
        Call((ragged_fpr, ragged_tpr), {"average": "none"}, label="ragged curves, no reduction"),
        Call(through=lambda: multiclass_logauc(preds, target, num_classes=4), label="multiclass_logauc"),
        Call(through=lambda: multiclass_logauc(preds, target, num_classes=4, average="none", thresholds=20),
             label="multiclass_logauc binned"),
        Call(through=lambda: multilabel_logauc(ml_preds, ml_target, num_labels=3), label="multilabel_logauc"),
        Call(through=metric, label="MulticlassLogAUC update/compute"),
    ]


# --------------------------------------------------------------------------- torch_geometric


@inputs("torch_geometric:torch_geometric.graphgym.utils.agg_runs.join_list")
def _join_list() -> list[Call]:
    # agg_runs joins the per-epoch stats of each seed's run: `stats_list = [[stats] for
    # stats in json_to_dict_list(...)]`, lists of one-element lists of dicts.
    def stats(seed: int) -> list[list[dict]]:
        return [[{"epoch": e, "loss": 1.0 / (e + 1 + seed), "accuracy": 0.5 + 0.1 * e}] for e in range(3)]

    return [
        Call((stats(0), stats(1)), label="two seeds' stats, 3 epochs"),
        Call(([[1.0], [2.0]], [[3.0], [4.0]]), label="lists of number lists"),
    ]
