import torch


def smooth_vectorized(s):
    out = torch.zeros_like(s)
    out[1:-1] = (s[:-2] + s[1:-1] + s[2:]) / 4
    return out


def smooth_wrong(s):
    out = torch.zeros_like(s)
    out[1:-1] = (s[:-2] + s[1:-1] + s[2:]) / 3
    return out
