"""Unannotated functions that call torch APIs inside loops: no hints, no annotations.

The verifier must find their inputs from what the APIs require (`fft2` wants two dims,
`mm` equal inner sizes, `conv2d` a 4-D input whose channels match the weight, ...).
Each touches its tensors as only a tensor allows (`.shape`), so the other kinds of value
(`verify.kinds`) are not in play. The rewrites are in test_verify_constraints.py.
"""

import torch
import torch.nn.functional as F


def fft2_each(images):
    out = []
    for i in range(images.shape[0]):
        out.append(torch.fft.fft2(images[i]))
    return torch.stack(out)


def ifft2_each(images):
    out = []
    for i in range(images.shape[0]):
        out.append(torch.fft.ifft2(images[i]).real)
    return torch.stack(out)


def rfft2_each(images):
    out = []
    for i in range(images.shape[0]):
        out.append(torch.fft.rfft2(images[i]).abs())
    return torch.stack(out)


def fftn_each(x):
    out = []
    for i in range(x.shape[0]):
        out.append(torch.fft.fftn(x[i], dim=(-2, -1)))
    return torch.stack(out)


def fft_columns_each(x):
    out = []
    for i in range(x.shape[0]):
        out.append(torch.fft.fft(x[i], dim=-2))
    return torch.stack(out)


def project_each(x, w):
    rows = []
    for i in range(x.shape[0]):
        rows.append(x[i] @ w.t())
    return torch.stack(rows)


def matmul_each(x, w):
    H, W = w.shape
    rows = []
    for i in range(x.shape[0]):
        rows.append(torch.matmul(x[i], w))
    return torch.stack(rows)


def mm_each(a, b):
    assert a.dim() == b.dim()
    out = []
    for i in range(a.shape[0]):
        out.append(torch.mm(a[i], b[i]))
    return torch.stack(out)


def bmm_chunks(a, b):
    out = []
    for i in range(a.shape[0]):
        out.append(torch.bmm(a[i : i + 1], b[i : i + 1]))
    return torch.cat(out)


def conv1d_each(x, weight):
    out = []
    for i in range(x.shape[0]):
        out.append(F.conv1d(x[i : i + 1], weight))
    return torch.cat(out)


def conv2d_each(images, weight):
    out = []
    for i in range(images.shape[0]):
        out.append(F.conv2d(images[i : i + 1], weight))
    return torch.cat(out)


def conv3d_each(volumes, weight):
    out = []
    for i in range(volumes.shape[0]):
        out.append(F.conv3d(volumes[i : i + 1], weight))
    return torch.cat(out)


def softmax_each(x):
    out = []
    for i in range(x.shape[0]):
        out.append(torch.softmax(x[i], dim=1))
    return torch.stack(out)


def log_softmax_method_each(x):
    out = []
    for i in range(x.shape[0]):
        out.append(x[i].log_softmax(1))
    return torch.stack(out)


def cumsum_each(x):
    out = []
    for i in range(x.shape[0]):
        out.append(x[i].cumsum(dim=1))
    return torch.stack(out)


def det_each(m):
    out = []
    for i in range(m.shape[0]):
        out.append(torch.linalg.det(m[i]))
    return torch.stack(out)


def matrix_power_each(m):
    out = []
    for i in range(m.shape[0]):
        out.append(torch.linalg.matrix_power(m[i], 2))
    return torch.stack(out)


def eigvalsh_each(m):
    out = []
    for i in range(m.shape[0]):
        out.append(torch.linalg.eigvalsh(m[i]))
    return torch.stack(out)


def gram_each(m):
    out = []
    for i in range(m.shape[0]):
        out.append(m[i].T @ m[i])
    return torch.stack(out)


def transpose_each(x):
    out = []
    for i in range(x.shape[0]):
        out.append(x[i].t())
    return torch.stack(out)


def mean_of_each(images):
    out = []
    for i in range(images.shape[0]):
        H, W = images[i].shape
        out.append(images[i].double().sum() / (H * W))
    return torch.stack(out)


def centre_each(x):
    out = []
    for i in range(x.shape[0]):
        h, w = x[i].shape[-2:]
        out.append(x[i][..., h // 2, w // 2])
    return torch.stack(out)


def column_sums(x):
    out = []
    for j in range(len(x[0])):
        out.append(x[:, j].sum())
    return torch.stack(out)


def doubled(x):
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i][j] = x[i][j] * 2
    return out


def take_rows(data, idx):
    assert data.dim() >= 1
    out = []
    for i in range(idx.shape[0]):
        out.append(data[idx[i]])
    return torch.stack(out)


def histogram_ten(labels):
    counts = torch.zeros(10)
    for k in range(labels.shape[0]):
        counts[labels[k]] += 1
    return counts


def histogram_of(labels, num_classes):
    counts = torch.zeros(num_classes, dtype=torch.long)
    for l in labels.flatten():
        counts[l] += 1
    return counts


def keep_where(x, m):
    assert m.dim() == x.dim()
    out = []
    for i in range(x.shape[0]):
        out.append(torch.where(m[i], x[i], torch.zeros_like(x[i])))
    return torch.stack(out)


def masked_zero_each(x, m):
    assert m.dim() == x.dim()
    out = []
    for i in range(x.shape[0]):
        out.append(x[i].masked_fill(m[i], 0))
    return torch.stack(out)


def items(x):
    vals = []
    for i in range(x.shape[0]):
        vals.append(x[i].item())
    return vals
