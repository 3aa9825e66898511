"""What a function's text declares about its names: signature, declared ranks, sequences, flow facts."""

import pytest

from loopvec.analysis.facts import UNKNOWN, Fact, Rank, Signature, declared_ranks, function_facts, python_lists
from loopvec.analysis.loops import find_loops
from loopvec.analysis.module import ModuleInfo


def parse(src: str):
    info = ModuleInfo.parse("m.py", "import torch\nfrom jaxtyping import Float\nfrom torch import Tensor\n" + src)
    loops = find_loops(info)
    return info, loops


def signature(src: str) -> Signature:
    info, _ = parse(src)
    fn = next(s for s in info.module.body if s.__class__.__name__ == "FunctionDef")
    return Signature(info, fn)


@pytest.mark.parametrize("header, name, rank", [
    ("def f(x: torch.Tensor):", "x", UNKNOWN),
    ('def f(x: Float[Tensor, "b c h w"]):', "x", Rank(4, 4)),
    ('def f(x: Float[Tensor, "*batch c"]):', "x", Rank(1, None)),
    ('def f(x: Float[Tensor, "... c d"]):', "x", Rank(2, None)),
    ("def f(x):  # loopvec: shapes x=[n, 3]", "x", Rank(2, 2)),
    ('def f(x: Float[Tensor, "n"]):  # loopvec: shapes x=[n, 3]', "x", Rank(2, 2)),
    ('def f(x: Float[Tensor, "n"]):  # loopvec: shapes x=int', "x", UNKNOWN),
    ("def f(x):  # loopvec: shapes y=[n, 3]", "y", UNKNOWN),
], ids=["plain tensor", "jaxtyping", "jaxtyping *batch", "jaxtyping ...", "hint", "hint wins over annotation",
        "hint says a number", "hint for a name that is no parameter"])
def test_declared_rank(header, name, rank):
    assert signature(f"{header}\n    pass\n").rank(name) == rank


def test_signature_dtype_classes_and_python_values():
    sig = signature('def f(x: Float[Tensor, "n"], k: int, xs: list[float], t):  # loopvec: shapes t=[n]:int64\n'
                    "    pass\n")
    assert sig.floating("x") and not sig.floating("t")
    assert sig.dtypes("t") == ("int64",)
    assert sig.scalar("k") == "int" and sig.scalar("x") is None
    assert sig.not_a_tensor("xs") and sig.not_a_tensor("k") and not sig.not_a_tensor("x")
    assert sig.fact("xs") == Fact("list", items=("float",))


def test_iterable_annotation_is_a_list_of_unknown_items():
    # Iterable[float] may be a generator: no len(), no torch.tensor()
    assert signature("def f(xs: Iterable[float]):\n    pass\n").fact("xs") == Fact("list")


def test_declared_ranks_add_shape_unpacking_and_drop_rebound_names():
    info, [loop] = parse(
        "def f(x, y, z):  # loopvec: shapes z=[n]\n"
        "    n, d = x.shape\n"
        "    b, *rest = y.size()\n"
        "    z = z * 2\n"
        "    for i in range(n):\n"
        "        pass\n")
    ranks = declared_ranks(loop, info)
    assert ranks["x"] == Rank(2, 2)
    assert ranks["y"] == Rank(1, None)
    assert "z" not in ranks  # rebound: no longer the declared tensor


def test_reshaped_in_place_loses_its_rank():
    info, [loop] = parse("def f(x):  # loopvec: shapes x=[n]\n    x.unsqueeze_(0)\n    for v in x:\n        pass\n")
    assert "x" not in declared_ranks(loop, info)


def test_function_facts_follow_statements_before_the_loop():
    info, [loop] = parse(
        "def f(img, centers: list[tuple[float, float]]):\n"
        "    h, w = img.shape\n"
        "    vals = [1.0, 2.5]\n"
        "    grid = torch.zeros(h, w, dtype=torch.int64)\n"
        "    for c in centers:\n"
        "        pass\n")
    facts = function_facts(loop, info, loop.node)
    assert facts["img"] == Fact("tensor", 2)
    assert facts["h"] == Fact("int")
    assert facts["vals"] == Fact("list", items=("float",), local=True)
    assert facts["grid"] == Fact("tensor", 2, False)
    assert facts["centers"] == Fact("list", items=("float", "float"), tuple_=True)


@pytest.mark.parametrize("src, lists", [
    ("def f(xs: list[int]):\n    for i in range(len(xs)):\n        xs[i] = 0\n", ["xs"]),
    ("def f(x, idx):\n    idx = idx.tolist()\n    for i in range(len(x)):\n        x[i] = x[idx[i]]\n", ["idx"]),
    ("def f(x, idx=(0, 1)):\n    for i in range(len(x)):\n        x[i] = x[idx[i]]\n", ["idx"]),
    ("def f(x: torch.Tensor):\n    for i in range(len(x)):\n        x[i] = 0\n", []),
], ids=["annotated list", "tolist", "tuple default", "a tensor"])
def test_python_lists(src, lists):
    info, [loop] = parse(src)
    assert python_lists(loop, info) == lists
