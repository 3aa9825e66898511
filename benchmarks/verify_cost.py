"""What verification costs per candidate: ten realistic loop rewrites, one batch.

    python benchmarks/verify_cost.py [--max-examples N] [--workers N] [--json PATH]

Writes the loops to a temporary module, verifies a hand-written vectorized rewrite of
each with `verify_candidates` (default settings unless given), and prints the median
seconds per candidate with worker start-up shared out over the batch, the wall time,
the number of examples each candidate ran, and the workers' CPU seconds per candidate
(the figure to compare across machines: wall time on a shared machine follows its load).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopvec.engine import changed_lines  # noqa: E402
from loopvec.verify import Candidate, Impl, VerifySettings, verify_candidates  # noqa: E402

MODULE = '''
import math

import torch


def polynomial(data: torch.Tensor):
    result = []
    for x in data:
        result.append(x ** 2 + 3 * x + 1)
    return torch.stack(result)


def threshold(data: torch.Tensor, t):
    out = torch.zeros_like(data)
    for i in range(len(data)):
        out[i] = data[i] * 2 if data[i] > t else data[i] / 2
    return out


def mean_square(data: torch.Tensor):
    total = 0
    for x in data:
        total += x ** 2
    return total / len(data)


def matmul(A: torch.Tensor, B: torch.Tensor):
    n, p = A.shape
    m = B.shape[1]
    result = torch.zeros(n, m, dtype=A.dtype)
    for i in range(n):
        for j in range(m):
            for k in range(p):
                result[i, j] += A[i, k] * B[k, j]
    return result


def masked_scale(image: torch.Tensor, mask: torch.Tensor):
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


def keep_valid(data: torch.Tensor, mask: torch.Tensor):
    kept = []
    for x, m in zip(data, mask):
        if m:
            kept.append(x)
    return torch.stack(kept)


def running_sum(x: torch.Tensor):
    for i in range(1, len(x)):
        x[i] = x[i] + x[i - 1]


def gaussian(data: torch.Tensor):
    values = []
    for x in data:
        values.append(math.exp(-float(x) ** 2 / 2.0))
    return torch.tensor(values, dtype=torch.float64)


def fill_scaled(base: torch.Tensor, active: torch.Tensor, res: torch.Tensor):
    for i in range(len(base)):
        for j in range(len(base[i])):
            if active[i][j]:
                res[i][j] = base[i][j] * 2
            else:
                res[i][j] = 0
'''

REWRITES = {
    "polynomial": "def polynomial(data):\n    return data ** 2 + 3 * data + 1\n",
    "threshold": "def threshold(data, t):\n    return torch.where(data > t, data * 2, data / 2).to(data.dtype)\n",
    "mean_square": "def mean_square(data):\n    return (data ** 2).sum() / len(data)\n",
    # Exact for mixed dtypes too: the loops promote each product and store into the
    # first argument's dtype (`A @ B` refuses float32 @ float64; `image * mask` promotes).
    "matmul": (
        "def matmul(A, B):\n"
        "    common = torch.promote_types(A.dtype, B.dtype)\n"
        "    return (A.to(common) @ B.to(common)).to(A.dtype)\n"
    ),
    "masked_scale": "def masked_scale(image, mask):\n    return (image * mask).to(image.dtype)\n",
    "gather_rows": "def gather_rows(data, indices):\n    return data[indices]\n",
    "keep_valid": "def keep_valid(data, mask):\n    return data[mask]\n",
    "running_sum": "def running_sum(x):\n    x.copy_(torch.cumsum(x, 0))\n",
    "gaussian": "def gaussian(data):\n    return torch.exp(-data.double() ** 2 / 2.0)\n",
    "fill_scaled": (
        "def fill_scaled(base, active, res):\n"
        "    res.copy_(torch.where(active, base * 2, torch.zeros_like(base)))\n"
    ),
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _candidate(path: Path, name: str, rewrite: str) -> Candidate:
    """The candidate as `apply` builds it: probed for reach (the function's first loop in
    the original, the rewrite's changed lines), so a proof counts only where the loop ran."""
    text = path.read_text(encoding="utf-8")
    fn = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == name)
    loop = next(n for n in ast.walk(fn) if isinstance(n, ast.For))
    original = "".join(text.splitlines(keepends=True)[fn.lineno - 1: fn.end_lineno])
    return Candidate(Impl(str(path), name, loop=(loop.lineno, loop.col_offset + 1)),
                     Impl(str(path), name, source=rewrite, prelude="import torch",
                          span=changed_lines(original, rewrite)), key=name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    settings = VerifySettings()
    if args.max_examples is not None:
        settings = replace(settings, max_examples=args.max_examples)
    if args.workers is not None:
        settings = replace(settings, workers=args.workers)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_loops.py"
        path.write_text(textwrap.dedent(MODULE), encoding="utf-8")
        cands = [_candidate(path, name, src) for name, src in REWRITES.items()]
        start, cpu_before = time.perf_counter(), _children_cpu()
        verdicts = verify_candidates(cands, settings)
        wall = time.perf_counter() - start
        # CPU time of the (finished) workers: a figure a busy machine does not inflate.
        cpu = _children_cpu() - cpu_before

    in_worker = [dict(v.timings).get("total", 0.0) for v in verdicts]
    # What the workers spent outside any candidate (start-up, transfer), shared out.
    overhead = max(wall * settings.workers - sum(in_worker), 0.0) / len(cands)
    per_candidate = [t + overhead for t in in_worker]
    result = {
        "candidates": len(cands),
        "workers": settings.workers,
        "max_examples": settings.max_examples,
        "median_s_per_candidate": round(statistics.median(per_candidate), 3),
        "median_s_in_worker": round(statistics.median(in_worker), 3),
        "startup_share_s": round(overhead, 3),
        "wall_s": round(wall, 3),
        "worker_cpu_s_per_candidate": round(cpu / len(cands), 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "verdicts": {
            v.key: {"status": v.status, "examples": v.examples, "seconds": round(t, 3), "message": v.message}
            for v, t in zip(verdicts, per_candidate)
        },
    }
    for v, t in zip(verdicts, per_candidate):
        print(f"{v.key:14} {v.status:12} {v.examples:3d} examples  {t:6.3f} s")
    print(
        f"median {result['median_s_per_candidate']:.3f} s per candidate "
        f"({result['median_s_in_worker']:.3f} s checking + {overhead:.3f} s start-up share), "
        f"max_examples={settings.max_examples}, workers={settings.workers}, wall {wall:.2f} s"
    )
    print(
        f"worker CPU {result['worker_cpu_s_per_candidate']:.3f} s per candidate, start-up included "
        f"(load average {result['load_average_1min']} on {os.cpu_count()} cores)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
