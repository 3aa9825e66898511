"""A module inside a package: its loop needs a relative import and a module constant."""

import torch

from .helpers import scale

OFFSET = 1.5


def shift_scale(x):
    out = torch.zeros_like(x)
    for i in range(len(x)):
        out[i] = scale(x[i]) + OFFSET
    return out
