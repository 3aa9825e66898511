"""Inputs described by hints and annotations rather than inferred."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # read as text by the verifier; jaxtyping need not be installed
    from jaxtyping import Float
    from torch import Tensor


def to_gray(img):  # loopvec: shapes img=[n,3]
    out = torch.zeros(len(img), dtype=img.dtype)
    for i in range(len(img)):
        r, g, b = img[i]
        out[i] = 0.25 * r + 0.5 * g + 0.25 * b
    return out


def to_gray_typed(img: Float[Tensor, "n 3"]) -> Float[Tensor, "n"]:
    out = torch.zeros(len(img), dtype=img.dtype)
    for i in range(len(img)):
        r, g, b = img[i]
        out[i] = 0.25 * r + 0.5 * g + 0.25 * b
    return out


def spread(centers: list[tuple[float, float]], radius: float) -> torch.Tensor:
    out = torch.zeros(len(centers))
    for i, (cy, cx) in enumerate(centers):
        out[i] = cy * radius + cx
    return out


def scaled(x: torch.Tensor, k: int, bias=0.5):
    out = torch.zeros_like(x)
    for i in range(len(x)):
        out[i] = x[i] * k + bias
    return out


def scale_last(x: Float[Tensor, "*batch c"], w: Float[Tensor, "c"]) -> Float[Tensor, "*batch c"]:
    out = torch.zeros_like(x)
    for j in range(x.shape[-1]):
        out[..., j] = x[..., j] * w[j]
    return out


def apply_rows_typed(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    rows = []
    for row in x:
        rows.append(model(row))
    return torch.stack(rows)
