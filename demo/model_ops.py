"""More loops in the catalogue's shapes: conditions, reductions, masks, matrices, FFTs."""

import torch


def leaky(data: torch.Tensor, threshold: float) -> torch.Tensor:  # loopvec: shapes data=[n]:float32
    result = []
    for x in data:
        if x > threshold:
            result.append(x * 2)
        else:
            result.append(x / 2)
    return torch.tensor(result)


def mean_square(data: torch.Tensor) -> torch.Tensor:  # loopvec: shapes data=[n]:float32
    total = 0
    for x in data:
        total += x ** 2
    return total / len(data)


def valid_rows(data: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # loopvec: shapes data=[n,4] mask=[n]:bool
    valid = []
    for x, m in zip(data, mask):
        if m:
            valid.append(x)
    return torch.stack(valid)


def matmul(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:  # loopvec: shapes A=[m,p] B=[p,n]
    m, p = A.shape
    n = B.shape[1]
    result = torch.zeros(m, n)
    for i in range(m):
        for j in range(n):
            for k in range(p):
                result[i, j] += A[i, k] * B[k, j]
    return result


def spectra(images: torch.Tensor) -> torch.Tensor:  # loopvec: shapes images=[n,h,w]
    freq_images = []
    for img in images:
        freq_images.append(torch.fft.fft2(img))
    return torch.stack(freq_images)


def lookup(data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(indices), data.shape[1])
    for i, idx in enumerate(indices):
        out[i] = data[idx]
    return out
