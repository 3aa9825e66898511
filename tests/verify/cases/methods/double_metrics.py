"""Metrics whose constructors need arguments; their loops run over classes."""

import torch


class ClassAccuracy:
    def __init__(self, num_classes: int):
        self.correct = torch.zeros(num_classes)
        self.total = torch.zeros(num_classes)

    def compute(self):
        scores = []
        for k in range(len(self.correct)):
            scores.append(self.correct[k] / self.total[k].clamp(min=1))
        return torch.stack(scores)


class Dice:
    def __init__(self, smooth):
        self.smooth = smooth

    def compute(self, inter: torch.Tensor, union: torch.Tensor):
        out = torch.zeros(len(inter))
        for k in range(len(inter)):
            out[k] = (2 * inter[k] + self.smooth) / (union[k] + self.smooth)
        return out


class ConfusionRow:
    def __init__(self, num_classes):
        self.counts = torch.zeros(num_classes, dtype=torch.long)

    def update(self, labels):
        for label in labels:
            self.counts[label] += 1


class WeightedMean:
    def __init__(self, weights: torch.Tensor, eps=1e-6):
        self.weights = weights
        self.eps = eps

    def compute(self, values: torch.Tensor):
        total = 0.0
        norm = 0.0
        for k in range(len(values)):
            total = total + values[k] * self.weights[k]
            norm = norm + self.weights[k]
        return total / (norm + self.eps)


class PerClassIoU:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def compute(self, inter: torch.Tensor, union: torch.Tensor):
        out = torch.zeros(self.num_classes)
        for k in range(self.num_classes):
            out[k] = inter[k] / union[k]
        return out
