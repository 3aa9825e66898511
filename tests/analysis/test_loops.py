"""The loop IR: one record per loop, with the facts patterns rely on."""

import pytest

from loopvec.analysis.loops import find_loops
from loopvec.analysis.module import ModuleInfo


def loops(src: str):
    return find_loops(ModuleInfo.parse("m.py", "import torch\n" + src))


def only(src: str):
    [loop] = loops(src)
    return loop


@pytest.mark.parametrize("header, index, elements, arrays, extent", [
    ("for i in range(len(x)):", "i", (), ("x",), "len(x)"),
    ("for i in range(x.shape[0]):", "i", (), ("x",), "x.shape[0]"),
    ("for i in range(x.size(0)):", "i", (), ("x",), "x.size(0)"),
    ("for v in x:", None, (("v", "x"),), ("x",), "len(x)"),
    ("for i, v in enumerate(x):", "i", (("v", "x"),), ("x",), "len(x)"),
    ("for a, b in zip(x, y):", None, (("a", "x"), ("b", "y")), ("x", "y"), "len(x)"),
], ids=["range len", "range shape", "range size", "direct", "enumerate", "zip"])
def test_domains_are_normalised(header, index, elements, arrays, extent):
    loop = only(f"def f(x, y):\n    {header}\n        pass\n")
    assert (loop.domain.index, loop.domain.elements, loop.domain.arrays, loop.domain.extent) == \
        (index, elements, arrays, extent)
    assert loop.domain.full


def test_length_names_resolve_to_their_array():
    loop = only("def f(x):\n    n = len(x)\n    for i in range(n):\n        pass\n")
    assert loop.domain.arrays == ("x",)


@pytest.mark.parametrize("header", ["range(1, len(x))", "range(0, len(x), 2)"], ids=["offset", "strided"])
def test_partial_ranges_are_not_full(header):
    assert not only(f"def f(x):\n    for i in {header}:\n        pass\n").domain.full


def test_enumerate_with_start_is_not_described():
    loop = only("def f(x):\n    for i, v in enumerate(x, 1):\n        pass\n")
    assert loop.domain is None and "start offset" in loop.domain_problem


def test_reads_writes_and_carried_dependency():
    loop = only("def f(x, out):\n    for i in range(len(x)):\n        out[i] = out[i - 1] + x[i][0]\n")
    assert [(a.array, a.index) for a in loop.reads] == [("out", ("i - 1",)), ("x", ("i", "0"))]
    assert [(a.array, a.index) for a in loop.writes] == [("out", ("i",))]
    assert loop.carried and "out[i - 1]" in loop.carried[0]


def test_setup_and_finish_of_a_collected_list():
    loop = only("def f(x):\n    out = []\n    for v in x:\n        out.append(v)\n    out = torch.stack(out)\n    return out\n")
    assert loop.setup["out"].kind == "list"
    fin = loop.finish["out"]
    assert (fin.kind, fin.target, fin.list_used_later) == ("stack", "out", False)


@pytest.mark.parametrize("init, kind", [
    ("torch.zeros_like(x)", "like"), ("torch.zeros(len(x))", "alloc"), ("x.clone()", "clone"),
    ("0.0", "scalar"), ("x.detach().clone()", "clone"), ("foo(x)", "other"),
], ids=["like", "alloc", "clone", "scalar", "detach clone", "other"])
def test_setup_kinds(init, kind):
    loop = only(f"def f(x):\n    out = {init}\n    for i in range(len(x)):\n        out[i] = x[i]\n")
    assert loop.setup["out"].kind == kind


def test_output_argument_is_a_param_setup():
    loop = only("def f(x, res):\n    for i in range(len(x)):\n        res[i] = x[i]\n")
    assert loop.setup["res"].kind == "param"


def test_accumulators_control_and_effects():
    loop = only("def f(x):\n    t = 0\n    for v in x:\n        t += v\n        if v > 3:\n            break\n        print(v)\n    return t\n")
    assert [a.target for a in loop.accumulators] == ["t"]
    assert "break" in loop.control
    assert loop.side_effects == ("calls `print`",)


def test_names_used_after_the_loop():
    loop = only("def f(x):\n    for v in x:\n        w = v * 2\n    return w\n")
    assert loop.used_after == {"w"}


def test_rebinding_before_use_is_not_a_use_after():
    first, _ = loops("def f(x):\n    for v in x:\n        pass\n    for v in x:\n        pass\n    return v\n")
    assert "v" not in first.used_after


def test_comprehension_fed_to_stack_is_a_loop():
    loop = only("def f(x):\n    return torch.stack([v * 2 for v in x if v > 0])\n")
    assert loop.kind == "comprehension" and loop.collector.kind == "stack"
    assert len(loop.conditions) == 1


def test_python_sequences_are_flagged():
    loop = only("def f():\n    vals = [1.0, 2.0]\n    out = []\n    for v in vals:\n        out.append(v)\n")
    assert "Python sequence" in loop.iterable_problem


def test_skip_comment_and_qualname_in_class():
    loop = only("class A:\n    def m(self, x):\n        for v in x:  # loopvec: skip\n            pass\n")
    assert loop.skip and loop.qualname == "A.m"


@pytest.mark.parametrize("call", ["F.dropout(v, 0.5)", "F.alpha_dropout(v, 0.5)", "F.feature_alpha_dropout(v, 0.5)",
                                  "F.gumbel_softmax(v)", "F.rrelu(v)", "torch.dropout(v, 0.5, True)"])
def test_random_functions_are_side_effects(call):
    loop = only("import torch.nn.functional as F\n"
                f"def f(x):\n    out = []\n    for v in x:\n        out.append({call})\n    return torch.stack(out)\n")
    assert loop.side_effects and "random" in loop.side_effects[0]
