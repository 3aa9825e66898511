"""Loops the verifier's tests rewrite, correctly and wrongly. No shapes are declared on
purpose: the verifier must infer ranks, sizes and dtypes from the bodies. Parameters a
rewrite treats as tensors say they are (`x: torch.Tensor`): without that, the verifier
also runs both sides on the lists, tuples and numpy arrays the loop accepts
(`verify.kinds`), and these tensor rewrites rightly fail there."""

import torch


def double(x: torch.Tensor):
    out = torch.zeros(len(x))
    for i in range(len(x)):
        out[i] = x[i] * 2
    return out


def scale_into(x: torch.Tensor, res: torch.Tensor):
    for i in range(len(x)):
        res[i] = x[i] * 2


def diffs(x: torch.Tensor, out: torch.Tensor):
    for i in range(len(x) - 1):
        out[i] = x[i + 1] - x[i]


def running_max(x: torch.Tensor):
    best = torch.tensor(float("-inf"), dtype=x.dtype)
    for v in x:
        best = torch.maximum(best, v)
    return best


def average(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor):
    for i, (p, q) in enumerate(zip(a, b)):
        out[i] = (p + q) // 2


def double_2d(x: torch.Tensor):
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] * 2
    return out


def masked_double(base: torch.Tensor, active: torch.Tensor, res: torch.Tensor):
    for i in range(len(base)):
        for j in range(len(base[i])):
            if active[i][j]:
                res[i][j] = base[i][j] * 2
            else:
                res[i][j] = 0


def mean_square(x: torch.Tensor):
    total = 0
    for v in x:
        total += v**2
    return total / len(x)


def matmul(A: torch.Tensor, B: torch.Tensor):
    n, p = A.shape
    m = B.shape[1]
    result = torch.zeros(n, m, dtype=A.dtype)
    for i in range(n):
        for j in range(m):
            for k in range(p):
                result[i, j] += A[i, k] * B[k, j]
    return result


def apply_mask(image: torch.Tensor, mask: torch.Tensor):
    B, C, H, W = image.shape
    result = torch.zeros_like(image)
    for b in range(B):
        for c in range(C):
            result[b, c] = image[b, c] * mask
    return result


def gather_rows(data: torch.Tensor, indices: torch.Tensor):
    out = torch.zeros(len(indices), data.shape[1], dtype=data.dtype)
    for i, idx in enumerate(indices):
        out[i] = data[idx]
    return out


def keep_where(data: torch.Tensor, mask: torch.Tensor):
    kept = []
    for x, m in zip(data, mask):
        if m:
            kept.append(x)
    return torch.stack(kept)


def prefix_sums(x: torch.Tensor):
    for i in range(1, len(x)):
        x[i] = x[i] + x[i - 1]


def halve_big(x, threshold):
    out = torch.empty_like(x)
    for i in range(len(x)):
        if x[i] > threshold:
            out[i] = x[i] / 2
        else:
            out[i] = x[i]
    return out


def first_n(x, n):
    out = torch.zeros(n, dtype=x.dtype)
    for i in range(n):
        out[i] = x[i] + 1
    return out


def needs_rank_3(x):
    if x.dim() != 3:
        raise ValueError("expected a 3-D tensor")
    return x.sum()


def affine(x: torch.Tensor, y: torch.Tensor):
    out = torch.zeros_like(x)
    for i in range(len(x)):
        out[i] = x[i] * y[i] + 2
    return out


def restack(x: torch.Tensor):
    return torch.stack([v for v in x])


def histogram(labels: torch.Tensor, C):
    counts = torch.zeros(C)
    for i in range(len(labels)):
        counts[labels[i]] += 1
    return counts


def scatter_add(out: torch.Tensor, idx: torch.Tensor, v: torch.Tensor):
    for i in range(len(idx)):
        out[idx[i]] += v[i]


def apply_rows(model, x: torch.Tensor):
    return torch.cat([model(x[i].unsqueeze(0)) for i in range(len(x))])


def pair_dots(A, B):  # loopvec: shapes A=[n,k] B=[n,k]
    out = []
    for i in range(len(A)):
        out.append(torch.dot(A[i], B[i]))
    return torch.stack(out)
