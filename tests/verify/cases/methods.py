"""Methods: one on a class buildable without arguments, one that is not."""

import torch


class Normalizer:
    def __init__(self, eps=0.5):
        self.eps = eps
        self.calls = 0

    def normalize(self, x):
        self.calls += 1
        out = torch.zeros_like(x)
        for i in range(len(x)):
            out[i] = x[i] / (abs(x[i]) + self.eps)
        return out


class NeedsConfig:
    def __init__(self, config):
        self.config = config

    def run(self, x):
        out = torch.zeros_like(x)
        for i in range(len(x)):
            out[i] = x[i] * 2
        return out
