"""Loops the verifier's tests rewrite, correctly and wrongly. Unannotated on purpose:
the verifier must infer their inputs from the bodies."""

import torch


def double(x):
    out = torch.zeros(len(x))
    for i in range(len(x)):
        out[i] = x[i] * 2
    return out


def scale_into(x, res):
    for i in range(len(x)):
        res[i] = x[i] * 2


def diffs(x, out):
    for i in range(len(x) - 1):
        out[i] = x[i + 1] - x[i]


def running_max(x):
    best = torch.tensor(float("-inf"), dtype=x.dtype)
    for v in x:
        best = torch.maximum(best, v)
    return best


def average(a, b, out):
    for i, (p, q) in enumerate(zip(a, b)):
        out[i] = (p + q) // 2


def double_2d(x):
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] * 2
    return out


def masked_double(base, active, res):
    for i in range(len(base)):
        for j in range(len(base[i])):
            if active[i][j]:
                res[i][j] = base[i][j] * 2
            else:
                res[i][j] = 0


def mean_square(x):
    total = 0
    for v in x:
        total += v**2
    return total / len(x)


def matmul(A, B):
    n, p = A.shape
    m = B.shape[1]
    result = torch.zeros(n, m, dtype=A.dtype)
    for i in range(n):
        for j in range(m):
            for k in range(p):
                result[i, j] += A[i, k] * B[k, j]
    return result


def apply_mask(image, mask):
    B, C, H, W = image.shape
    result = torch.zeros_like(image)
    for b in range(B):
        for c in range(C):
            result[b, c] = image[b, c] * mask
    return result


def gather_rows(data, indices):
    out = torch.zeros(len(indices), data.shape[1], dtype=data.dtype)
    for i, idx in enumerate(indices):
        out[i] = data[idx]
    return out


def keep_where(data, mask):
    kept = []
    for x, m in zip(data, mask):
        if m:
            kept.append(x)
    return torch.stack(kept)


def prefix_sums(x):
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


def affine(x, y):
    out = torch.zeros_like(x)
    for i in range(len(x)):
        out[i] = x[i] * y[i] + 2
    return out


def restack(x):
    return torch.stack([v for v in x])


def histogram(labels, C):
    counts = torch.zeros(C)
    for i in range(len(labels)):
        counts[labels[i]] += 1
    return counts


def scatter_add(out, idx, v):
    for i in range(len(idx)):
        out[idx[i]] += v[i]


def apply_rows(model, x):
    return torch.cat([model(x[i].unsqueeze(0)) for i in range(len(x))])


def pair_dots(A, B):  # loopvec: shapes A=[n,k] B=[n,k]
    out = []
    for i in range(len(A)):
        out.append(torch.dot(A[i], B[i]))
    return torch.stack(out)
