"""Realistic inputs for the real-code check (`benchmarks/real.py`).

`INPUTS` maps `"lib:module.qualname"` (the function a verified rewrite changed) to a
function that returns a list of `Call`s: what the library's own callers pass, read from
its code and docstrings (a batch of images, a metric's predictions and targets, a list
of per-class curves), not what a generator would draw. A `Call` is either direct (the
function itself on `args`/`kwargs`, with `instance` building `self` for a method) or
`through` the library's public API, run once with the original and once with the
rewrite swapped in (every module attribute bound to the function, or the class
attribute of a method, is swapped: a `through` that calls the function itself must look
it up at call time, `module.f(...)`, not hold the object it imported). The check seeds
torch before building the calls and before each side runs, so random inputs made inside
`through` are the same for both sides.

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


# --------------------------------------------------------------------------- not verified today
# Entries for candidates the verifier leaves unverifiable or refutes today, so that a
# verifier that learns to pass them (reach search, kinds, instances) is checked at once.


@inputs("torchmetrics:torchmetrics.functional.audio.pit.pit_permutate")
def _pit_permutate() -> list[Call]:
    # preds [batch, spk, time] and the int64 permutation [batch, spk] that
    # permutation_invariant_training returns.
    import torch
    import torchmetrics.functional.audio as audio

    preds, target = torch.randn(3, 2, 100), torch.randn(3, 2, 100)

    def pit():
        # looked up when called, not when built: the check swaps the module's binding
        _, perm = audio.permutation_invariant_training(preds, target, audio.scale_invariant_signal_distortion_ratio)
        return audio.pit_permutate(preds, perm)

    return [
        Call((preds, torch.tensor([[1, 0], [0, 1], [1, 0]])), label="3 batches of 2 speakers"),
        Call((torch.randn(4, 3, 16), torch.stack([torch.randperm(3) for _ in range(4)])), label="3 speakers"),
        Call(through=pit, label="after permutation_invariant_training"),
    ]


def _roc_curves():
    """(fpr, tpr) lists of ragged per-class curves and (C, T) tensors, as multiclass_roc gives."""
    import torch
    from torchmetrics.functional.classification import multiclass_roc

    preds, target = torch.randn(40, 3).softmax(-1), torch.randint(0, 3, (40,))
    fpr, tpr, _ = multiclass_roc(preds, target, num_classes=3)
    binned_fpr, binned_tpr, _ = multiclass_roc(preds, target, num_classes=3, thresholds=11)
    return (fpr, tpr), (binned_fpr, binned_tpr)


@inputs("torchmetrics:torchmetrics.functional.classification.auroc._reduce_auroc")
def _reduce_auroc() -> list[Call]:
    import torch
    from torchmetrics.functional.classification import multiclass_auroc, multilabel_auroc

    ragged, binned = _roc_curves()
    preds, target = torch.randn(40, 3).softmax(-1), torch.randint(0, 3, (40,))
    return [
        Call(ragged, label="ragged per-class curves"),
        Call(ragged, {"average": "none"}, label="ragged curves, no reduction"),
        Call(binned, label="binned (C, T) curves"),
        Call(through=lambda: multiclass_auroc(preds, target, num_classes=3, average="none"), label="multiclass_auroc"),
        Call(through=lambda: multilabel_auroc(torch.rand(30, 4), torch.randint(0, 2, (30, 4)), num_labels=4),
             label="multilabel_auroc"),
    ]


@inputs("torchmetrics:torchmetrics.functional.classification.average_precision._reduce_average_precision")
def _reduce_average_precision() -> list[Call]:
    import torch
    from torchmetrics.functional.classification import multiclass_average_precision, multiclass_precision_recall_curve

    preds, target = torch.randn(40, 3).softmax(-1), torch.randint(0, 3, (40,))
    precision, recall, _ = multiclass_precision_recall_curve(preds, target, num_classes=3)
    return [
        Call((precision, recall), label="ragged per-class precision/recall curves"),
        Call((precision, recall), {"average": "none"}, label="no reduction"),
        Call(through=lambda: multiclass_average_precision(preds, target, num_classes=3, average="none"),
             label="multiclass_average_precision"),
    ]


@inputs("torchmetrics:torchmetrics.functional.classification.eer._eer_compute")
def _eer_compute() -> list[Call]:
    import torch
    from torchmetrics.functional.classification import multiclass_eer

    ragged, binned = _roc_curves()
    preds, target = torch.randn(40, 3).softmax(-1), torch.randint(0, 3, (40,))
    return [
        Call(ragged, label="ragged per-class curves"),
        Call(binned, label="binned (C, T) curves"),
        Call(through=lambda: multiclass_eer(preds, target, num_classes=3), label="multiclass_eer"),
    ]


@inputs("torchmetrics:torchmetrics.functional.regression.spearman._spearman_corrcoef_compute")
def _spearman() -> list[Call]:
    # (N, num_outputs) predictions and targets; ranks are computed per output column.
    import torch
    from torchmetrics.functional.regression import spearman_corrcoef

    preds, target = torch.randn(50, 3), torch.randn(50, 3)
    ties = torch.randint(0, 5, (30, 2)).float()
    return [
        Call((preds, target), label="50 samples, 3 outputs"),
        Call((ties, torch.randint(0, 5, (30, 2)).float()), label="values with ties"),
        Call(through=lambda: spearman_corrcoef(preds, target), label="spearman_corrcoef"),
    ]


@inputs("torchmetrics:torchmetrics.image.psnr.PeakSignalNoiseRatio.compute")
def _psnr_compute() -> list[Call]:
    import torch
    from torchmetrics.image import PeakSignalNoiseRatio

    def updated(dim=None, reduction="elementwise_mean"):
        m = PeakSignalNoiseRatio(data_range=1.0, dim=dim, reduction=reduction)
        m.update(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))
        m.update(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))
        return m

    return [
        Call(instance=lambda: updated(), label="two batches of images"),
        Call(instance=lambda: updated(dim=(1, 2, 3), reduction="none"), label="per-image PSNR (list states)"),
    ]


@inputs("torchmetrics:torchmetrics.retrieval.precision_recall_curve.RetrievalPrecisionRecallCurve.compute")
def _retrieval_pr_curve() -> list[Call]:
    import torch
    from torchmetrics.retrieval import RetrievalPrecisionRecallCurve

    def updated(max_k=None):
        m = RetrievalPrecisionRecallCurve(max_k=max_k)
        m.update(torch.rand(12), torch.randint(0, 2, (12,)), indexes=torch.tensor([0] * 4 + [1] * 4 + [2] * 4))
        return m

    return [Call(instance=updated, label="3 queries of 4"), Call(instance=lambda: updated(3), label="max_k=3")]


@inputs("torchmetrics:torchmetrics.wrappers.bootstrapping.BootStrapper.compute")
def _bootstrapper_compute() -> list[Call]:
    import torch
    from torchmetrics.classification import MulticlassAccuracy
    from torchmetrics.wrappers import BootStrapper

    def updated():
        torch.manual_seed(1)
        m = BootStrapper(MulticlassAccuracy(num_classes=3, average="micro"), num_bootstraps=5, quantile=0.9, raw=True)
        m.update(torch.randint(0, 3, (20,)), torch.randint(0, 3, (20,)))
        return m

    return [Call(instance=updated, label="5 bootstraps of an accuracy")]


@inputs("torchmetrics:torchmetrics.wrappers.tracker.MetricTracker.compute_all")
def _tracker_compute_all() -> list[Call]:
    import torch
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy, MulticlassPrecision
    from torchmetrics.wrappers import MetricTracker

    def tracked(metric):
        t = MetricTracker(metric)
        for _ in range(3):
            t.increment()
            t.update(torch.randint(0, 3, (10,)), torch.randint(0, 3, (10,)))
        return t

    return [
        Call(instance=lambda: tracked(MulticlassAccuracy(num_classes=3)), label="3 epochs of an accuracy"),
        Call(instance=lambda: tracked(MetricCollection([MulticlassAccuracy(num_classes=3),
                                                        MulticlassPrecision(num_classes=3)])),
             label="3 epochs of a collection (dict results)"),
    ]


@inputs("kornia:kornia.color.yuv.rgb_to_yuv420")
def _rgb_to_yuv420() -> list[Call]:
    import torch

    return [
        Call((torch.rand(3, 8, 8),), label="one 3x8x8 image"),
        Call((torch.rand(2, 3, 16, 32),), label="a batch of 2"),
        Call((torch.rand(2, 4, 3, 8, 8),), label="a video: 2 clips of 4 frames"),
    ]


@inputs("kornia:kornia.enhance.normalize.normalize")
def _normalize() -> list[Call]:
    import torch
    from kornia.enhance import Normalize

    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return [
        Call((torch.rand(2, 3, 16, 16), mean, std), label="ImageNet statistics on 2x3x16x16"),
        Call((torch.rand(2, 3, 4, 8, 8), mean, std), label="a 5-D video batch"),
        Call((torch.rand(1, 4, 8), torch.zeros(4), torch.ones(4)), label="a 3-D signal"),
        Call(through=lambda: Normalize(mean, std)(torch.rand(2, 3, 16, 16)), label="the Normalize module"),
    ]


@inputs("kornia:kornia.geometry.transform.affwarp.resize")
def _resize() -> list[Call]:
    import torch

    return [
        Call((torch.rand(1, 3, 32, 48), (16, 24)), label="a batch to half size"),
        Call((torch.rand(3, 20, 30), 10), label="one image, the short side to 10"),
        Call((torch.rand(2, 4, 3, 16, 16), (8, 8)), {"antialias": True}, label="a 5-D video batch, antialiased"),
    ]


@inputs("kornia:kornia.geometry.boxes.Boxes.merge")
def _boxes_merge() -> list[Call]:
    # Boxes of a batch with a different number of boxes per image are padded (`_N`).
    import torch
    from kornia.geometry.boxes import Boxes

    def boxes(counts):
        return Boxes.from_tensor([torch.tensor([[1.0, 1.0, 5.0, 6.0]]).repeat(n, 1) + k for k, n in enumerate(counts)],
                                 mode="xyxy")

    return [
        Call((boxes([2, 1]),), instance=lambda: boxes([1, 3]), label="padded batches of boxes"),
        Call((boxes([2, 2]),), {"inplace": True}, instance=lambda: boxes([1, 3]), label="in place"),
    ]


@inputs("monai:monai.apps.detection.utils.box_coder.BoxCoder.decode")
def _box_coder_decode() -> list[Call]:
    import torch
    from monai.apps.detection.utils.box_coder import BoxCoder

    refs = [torch.tensor([[0.0, 0, 0, 10, 10, 10], [5, 5, 5, 20, 20, 20]]), torch.tensor([[1.0, 2, 3, 8, 9, 10]])]
    return [Call((torch.randn(3, 6), refs), instance=lambda: BoxCoder(weights=(1.0,) * 6),
                 label="3 boxes' codes of two images, 3-D")]


def _monai_transform(make, shape=(3, 16, 16)):
    """A direct call and a call through a Compose pipeline, of a transform built with a fixed seed."""
    import torch
    from monai.transforms import Compose

    image = torch.rand(*shape)

    def seeded():
        t = make()
        if hasattr(t, "set_random_state"):
            t.set_random_state(seed=0)
        return t

    return [
        Call((image,), instance=seeded, label=f"a {'x'.join(map(str, shape))} channel-first image"),
        Call(through=lambda: Compose([seeded()])(image.clone()), label="through Compose"),
    ]


@inputs("monai:monai.transforms.intensity.array.RandShiftIntensity.__call__")
def _rand_shift_intensity() -> list[Call]:
    from monai.transforms import RandShiftIntensity

    return _monai_transform(lambda: RandShiftIntensity(offsets=0.5, prob=1.0, channel_wise=True))


@inputs("monai:monai.transforms.intensity.array.StdShiftIntensity.__call__")
def _std_shift_intensity() -> list[Call]:
    from monai.transforms import StdShiftIntensity

    return _monai_transform(lambda: StdShiftIntensity(factor=0.5, channel_wise=True))


@inputs("monai:monai.transforms.intensity.array.RandScaleIntensity.__call__")
def _rand_scale_intensity() -> list[Call]:
    from monai.transforms import RandScaleIntensity

    return _monai_transform(lambda: RandScaleIntensity(factors=0.3, prob=1.0, channel_wise=True))


@inputs("monai:monai.transforms.intensity.array.ClipIntensityPercentiles.__call__")
def _clip_intensity_percentiles() -> list[Call]:
    from monai.transforms import ClipIntensityPercentiles

    return _monai_transform(lambda: ClipIntensityPercentiles(lower=5, upper=95, channel_wise=True))


@inputs("monai:monai.transforms.intensity.array.ScaleIntensityRangePercentiles.__call__")
def _scale_intensity_range_percentiles() -> list[Call]:
    from monai.transforms import ScaleIntensityRangePercentiles

    return _monai_transform(lambda: ScaleIntensityRangePercentiles(lower=5, upper=95, b_min=0.0, b_max=1.0,
                                                                   channel_wise=True))


@inputs("monai:monai.transforms.intensity.array.RandIntensityRemap.__call__")
def _rand_intensity_remap() -> list[Call]:
    from monai.transforms import RandIntensityRemap

    return _monai_transform(lambda: RandIntensityRemap(prob=1.0, kernel_size=5, channel_wise=True), (2, 8, 8, 8))


@inputs("monai:monai.transforms.intensity.array.RandRicianNoise.__call__")
def _rand_rician_noise() -> list[Call]:
    from monai.transforms import RandRicianNoise

    return _monai_transform(lambda: RandRicianNoise(prob=1.0, mean=0.0, std=0.1, channel_wise=True))


@inputs("monai:monai.transforms.utils.rescale_instance_array")
def _rescale_instance_array() -> list[Call]:
    # MONAI passes numpy arrays (and tensors) of channel-first images.
    import numpy as np
    import torch

    return [
        Call((np.random.rand(3, 8, 8).astype(np.float32),), label="a numpy 3x8x8 image"),
        Call((torch.rand(2, 4, 4).numpy(),), {"minv": -1.0, "maxv": 1.0}, label="numpy, rescaled to [-1, 1]"),
    ]


@inputs("monai:monai.networks.nets.navit._group_images_by_max_seq_len")
def _group_images() -> list[Call]:
    # A flat list of channel-first images of different sizes.
    import torch

    images = [torch.rand(3, 32, 32), torch.rand(3, 64, 32), torch.rand(3, 16, 16), torch.rand(3, 64, 64)]
    return [Call((images, 8), {"max_seq_len": 64}, label="4 images of 3 sizes, patches of 8")]


@inputs("kornia:kornia.contrib.diamond_square.diamond_square")
def _diamond_square() -> list[Call]:
    import torch

    return [
        Call(((1, 1, 9, 9),), label="one 9x9 fractal"),
        Call(((2, 3, 16, 16),), {"roughness": 0.7, "normalize_range": (0.0, 1.0)}, label="2x3 16x16, normalized"),
        Call(((2, 1, 8, 8),), {"roughness": torch.tensor([0.3, 0.8])}, label="a roughness per sample"),
    ]


@inputs("torch_geometric:torch_geometric.visualization.influence.influence")
def _influence() -> list[Call]:
    # A model of node features, the node features (N, F), and the model's other arguments.
    import torch
    from torch_geometric.nn import GCNConv

    torch.manual_seed(0)
    conv = GCNConv(4, 3)
    edge_index = torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 3, 2]])
    return [
        Call((torch.nn.Linear(4, 3), torch.randn(5, 4)), label="a linear layer on 5 nodes"),
        Call((conv, torch.randn(4, 4), edge_index), label="a GCN layer on a 4-node graph"),
    ]


@inputs("torch_geometric:torch_geometric.nn.to_hetero_module.ToHeteroLinear.dict_forward")
def _to_hetero_linear() -> list[Call]:
    import torch
    from torch_geometric.nn.to_hetero_module import ToHeteroLinear

    def module():
        torch.manual_seed(0)
        return ToHeteroLinear(torch.nn.Linear(4, 2), ["paper", "author"])

    return [Call(({"paper": torch.randn(5, 4), "author": torch.randn(3, 4)},), instance=module,
                 label="two node types")]


@inputs("torch_geometric:torch_geometric.io.sdf.parse_sdf")
def _parse_sdf() -> list[Call]:
    # A molfile (V2000) of water: header lines, counts line, atom block, bond block.
    water = ("water\n  generated\n\n"
             "  3  2  0  0  0  0  0  0  0  0999 V2000\n"
             "    0.0000    0.0000    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0\n"
             "    0.9572    0.0000    0.0000 H   0  0  0  0  0  0  0  0  0  0  0  0\n"
             "   -0.2400    0.9266    0.0000 H   0  0  0  0  0  0  0  0  0  0  0  0\n"
             "  1  2  1  0\n  1  3  1  0\nM  END\n")
    return [Call((water,), label="a water molecule")]


@inputs("monai:monai.visualize.occlusion_sensitivity.OcclusionSensitivity.crop_meshgrid")
def _crop_meshgrid() -> list[Call]:
    # OcclusionSensitivity.__call__ builds the index meshgrid of the image (1, sd, *spatial)
    # and crops it to the bounding box [min1, max1, min2, max2, ...] (-1: the whole side).
    import numpy as np
    import torch
    from monai.data import MetaTensor
    from monai.visualize import OcclusionSensitivity

    def grid(*spatial):
        return MetaTensor(np.stack(np.meshgrid(*[np.arange(0, i) for i in spatial], indexing="ij"))[None],
                          dtype=torch.float32)

    def occlusion():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 3))
        return OcclusionSensitivity(model, mask_size=4, n_batch=8)(torch.rand(1, 1, 16, 16), b_box=[2, 9, -1, -1])

    return [
        Call((grid(16, 16), [2, 9, 4, 11], (4, 4)), label="2-D, a box"),
        Call((grid(12, 12, 8), [-1, -1, 3, 7, 0, 5], (3, 3, 3)), label="3-D, one side whole"),
        Call(through=occlusion, label="OcclusionSensitivity with a bounding box"),
    ]


@inputs("monai:monai.visualize.class_activation_maps.CAM.compute_map")
def _cam_compute_map() -> list[Call]:
    # The docstring's example: a DenseNet121 and its last fully connected layer.
    import torch
    from monai.networks.nets import DenseNet121
    from monai.visualize import CAM

    def cam():
        torch.manual_seed(0)
        model = DenseNet121(spatial_dims=2, in_channels=1, out_channels=3).eval()
        return CAM(nn_module=model, target_layers="class_layers.relu", fc_layers="class_layers.out")

    return [
        Call((torch.rand(2, 1, 48, 64),), instance=cam, label="2 images 48x64 through a DenseNet121"),
        Call((torch.rand(1, 1, 32, 32),), {"class_idx": torch.tensor([1])}, instance=cam, label="one image, class 1"),
    ]
