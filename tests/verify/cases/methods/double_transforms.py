"""Transforms whose constructors need arguments; their loops run over channels."""

import torch


class ScaleTransform:
    def __init__(self, factors: torch.Tensor):
        self.factors = factors

    def __call__(self, img):
        out = torch.empty_like(img)
        for c in range(img.shape[0]):
            out[c] = img[c] * self.factors[c]
        return out


class Normalize:
    def __init__(self, mean, std):
        self.mean = torch.as_tensor(mean)
        self.std = torch.as_tensor(std)

    def __call__(self, img):
        out = torch.empty_like(img)
        for c in range(len(img)):
            out[c] = (img[c] - self.mean[c]) / self.std[c]
        return out


class ClipChannels:
    def __init__(self, low: float, high: float):
        self.low = low
        self.high = high

    def __call__(self, img):
        out = img.clone()
        for c in range(len(img)):
            out[c] = img[c].clamp(self.low, self.high)
        return out


class Offset:
    """A class attribute and a property are the class's own: only `shift` is generated."""

    base = 3

    def __init__(self, shift):
        self.shift = shift

    @property
    def gain(self):
        return 2.0

    def __call__(self, img):
        out = torch.zeros_like(img)
        for c in range(len(img)):
            out[c] = img[c] * self.gain + self.base + self.shift
        return out


class Gain:
    """The attribute is read in a helper method the loop calls."""

    def __init__(self, gains: torch.Tensor):
        self.gains = gains

    def _gain(self, c):
        return self.gains[c]

    def __call__(self, img):
        out = torch.empty_like(img)
        for c in range(img.shape[0]):
            out[c] = img[c] * self._gain(c)
        return out


class FromFile:
    """Its constructor has defaults but fails (the weights file is not there)."""

    def __init__(self, path="missing-weights.pt"):
        self.weights: torch.Tensor = torch.load(path)

    def __call__(self, img):
        out = torch.empty_like(img)
        for c in range(img.shape[0]):
            out[c] = img[c] * self.weights[c]
        return out
