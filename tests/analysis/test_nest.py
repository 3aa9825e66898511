"""The loop-nest analysis: levels and what their extents measure, accesses as index
tuples, the statement kind, free and contracted indices -- and the nests it refuses."""

import textwrap

import pytest

from loopvec.analysis.loops import find_loops
from loopvec.analysis.module import ModuleInfo
from loopvec.analysis.nest import NestError, build_nest


def nest_of(source: str):
    info = ModuleInfo.parse("m.py", "import torch\n\n" + textwrap.dedent(source))
    outer = next(loop for loop in find_loops(info) if loop.kind == "for" and loop.depth == 0)
    return build_nest(outer, info)


def subs(acc):
    return [(s.kind, s.code) for s in acc.subs]


# --------------------------------------------------------------------------- examples


def test_seed_matmul_is_an_accumulation_over_k():
    nest = nest_of("""
        def f(A, B):
            m, p = A.shape
            n = B.shape[1]
            result = torch.zeros(m, n)
            for i in range(m):
                for j in range(n):
                    for k in range(p):
                        result[i, j] += A[i, k] * B[k, j]
            return result
    """)
    assert nest.kind == "accumulate"
    assert [(lv.var, lv.extent, lv.measures) for lv in nest.levels] == [
        ("i", "m", (("A", 0),)), ("j", "n", (("B", 1),)), ("k", "p", (("A", 1),))]
    assert nest.free == ("i", "j") and nest.contracted == ("k",)
    assert [(r.array, subs(r)) for r in nest.reads] == [("A", [("var", "i"), ("var", "k")]),
                                                        ("B", [("var", "k"), ("var", "j")])]
    assert nest.setup.kind == "alloc" and nest.output == "result"
    assert nest.covers("A", 1, "k") and not nest.covers("B", 0, "k")


def test_scalar_accumulate_then_store_with_len_sizes_and_chained_indexing():
    nest = nest_of("""
        def matmul(weight, input, res):
            m = len(weight)
            n = len(input)
            for i in range(m):
                curr = 0
                for j in range(n):
                    curr += weight[i][j] * input[j]
                res[i] = curr
    """)
    assert nest.kind == "scalar" and nest.scalar == "curr" and not nest.scalar_result
    assert nest.free == ("i",) and nest.contracted == ("j",)
    assert subs(nest.reads[0]) == [("var", "i"), ("var", "j")]  # weight[i][j] reads like weight[i, j]
    assert nest.level("i").measures == (("weight", 0),) and nest.level("j").measures == (("input", 0),)
    assert nest.setup.kind == "param"


def test_trace_is_a_scalar_result_of_a_one_level_nest():
    nest = nest_of("""
        def f(A):
            t = 0.0
            for i in range(A.size(0)):
                t += A[i, i]
            return t
    """)
    assert nest.scalar_result and nest.scalar == "t" and nest.free == () and nest.contracted == ("i",)
    assert nest.level("i").measures == (("A", 0),)


def test_store_with_len_of_a_row_and_an_invariant_operand():
    nest = nest_of("""
        def f(image, mask):
            result = torch.zeros_like(image)
            for b in range(len(image)):
                for c in range(len(image[0])):
                    result[b, c] = image[b, c] * mask
            return result
    """)
    assert nest.kind == "store" and nest.free == ("b", "c") and nest.contracted == ()
    assert nest.level("c").measures == (("image", 1),)
    assert [r.array for r in nest.reads] == ["image"]  # mask is loop-invariant


def test_windows_affine_offsets_and_constants():
    nest = nest_of("""
        def f(X, Y, W, hs):
            H = X.shape[0]
            out = torch.zeros(H // 2, 4)
            for i in range(H // 2):
                for h in range(4):
                    out[i, h] = X[2 * i:2 * i + 3, 0].sum() + Y[h * hs + i] + W[i - 1, 3]
            return out
    """)
    x, y, w = nest.reads
    (kind, text), const = subs(x)
    assert kind == "window" and x.subs[0].size == "3" and x.subs[0].start.terms == (("i", "2"),)
    assert const == ("const", "0")
    assert y.subs[0].kind == "affine" and dict(y.subs[0].start.terms) == {"h": "hs", "i": "1"}
    assert w.subs[0].kind == "affine" and w.subs[0].start.offset == "-1"


# --------------------------------------------------------------------------- refusals

REFUSED = {
    "triangular range": ("""
        def f(A):
            n = len(A)
            out = torch.zeros(n, n)
            for i in range(n):
                for j in range(i):
                    out[i, j] = A[i, j]
            return out
    """, "triangular"),
    "index not affine": ("""
        def f(A, idx):
            out = torch.zeros(len(idx), 3)
            for i in range(len(idx)):
                for j in range(3):
                    out[i, j] = A[idx[i], j]
            return out
    """, "not affine"),
    "product of indices": ("""
        def f(A, n):
            out = torch.zeros(n, n)
            for i in range(n):
                for j in range(n):
                    out[i, j] = A[i * j]
            return out
    """, "not affine"),
    "last write wins": ("""
        def f(A):
            m, n = A.shape
            out = torch.zeros(m)
            for i in range(m):
                for j in range(n):
                    out[i] = A[i, j]
            return out
    """, "last write wins"),
    "reads another element of the output": ("""
        def f(A):
            m, n = A.shape
            out = torch.zeros(m, n)
            for i in range(m):
                for j in range(n):
                    out[i, j] = A[i, j] + out[j, i]
            return out
    """, "reads the array the nest writes"),
    "break": ("""
        def f(A):
            m, n = A.shape
            out = torch.zeros(m, n)
            for i in range(m):
                for j in range(n):
                    if A[i, j] < 0:
                        break
                    out[i, j] = A[i, j]
            return out
    """, "`break`"),
    "side effect": ("""
        def f(A):
            m, n = A.shape
            out = torch.zeros(m, n)
            for i in range(m):
                for j in range(n):
                    out[i, j] = A[i, j]
                    print(i)
            return out
    """, "side effect"),
    "statements between the loops": ("""
        def f(A):
            m, n = A.shape
            out = torch.zeros(m, n)
            for i in range(m):
                s = A[i].sum()
                for j in range(n):
                    out[i, j] = A[i, j] / s
            return out
    """, "statements between the loops"),
    "index used after the nest": ("""
        def f(A):
            m, n = A.shape
            out = torch.zeros(m, n)
            for i in range(m):
                for j in range(n):
                    out[i, j] = A[i, j]
            return out, j
    """, "used after"),
    "summed index unused": ("""
        def f(x, r):
            out = torch.zeros(len(x))
            for i in range(len(x)):
                for k in range(r):
                    out[i] += x[i]
            return out
    """, "not used"),
    "strided range": ("""
        def f(A):
            m, n = A.shape
            out = torch.zeros(m, n)
            for i in range(0, m, 2):
                for j in range(n):
                    out[i, j] = A[i, j]
            return out
    """, "partial or strided"),
    "subtracting accumulation": ("""
        def f(A, B):
            m, p = A.shape
            n = B.shape[1]
            C = torch.zeros(m, n)
            for i in range(m):
                for j in range(n):
                    for k in range(p):
                        C[i, j] -= A[i, k] * B[k, j]
            return C
    """, "only `\\+=` sums"),
    "accumulator feeds itself": ("""
        def f(A):
            m, n = A.shape
            out = torch.zeros(m)
            for i in range(m):
                acc = 1.0
                for j in range(n):
                    acc += acc * A[i, j]
                out[i] = acc
            return out
    """, "read in its own update"),
    "iterating a tensor": ("""
        def f(A):
            out = torch.zeros(len(A), 3)
            for i, row in enumerate(A):
                for j in range(3):
                    out[i, j] = row[j]
            return out
    """, "range"),
}


@pytest.mark.parametrize("name", REFUSED, ids=str)
def test_refuses(name):
    source, reason = REFUSED[name]
    with pytest.raises(NestError, match=reason):
        nest_of(source)


def test_a_size_of_an_array_rebound_later_measures_nothing():
    nest = nest_of("""
        def f(A, B):
            m, n = A.shape
            k = len(B)
            A = A[:, :k]
            out = torch.zeros(m, k)
            for i in range(m):
                for j in range(k):
                    out[i, j] = A[i, j] * B[j]
            return out
    """)
    assert nest.level("i").measures == () and nest.level("j").measures == (("B", 0),)
