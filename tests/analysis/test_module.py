"""Names in a parsed module: builtins and what shadows them, bound and used names, fresh names."""

import libcst as cst
import pytest

from loopvec.analysis.module import ModuleInfo, bound_names, fresh_name, names_in, number_value, used_names


def call_of(src: str, name: str) -> tuple[ModuleInfo, cst.Name]:
    info = ModuleInfo.parse("m.py", src)
    found = []

    class _V(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            if isinstance(node.func, cst.Name) and node.func.value == name:
                found.append(node.func)

    info.module.visit(_V())
    return info, found[-1]


@pytest.mark.parametrize("src, builtin", [
    ("def f(x):\n    return max(x, 0)\n", "max"),
    ("from numpy import max\ndef f(x):\n    return max(x, 0)\n", None),
    ("def max(a, b):\n    return a\ndef f(x):\n    return max(x, 0)\n", None),
    ("max = min\ndef f(x):\n    return max(x, 0)\n", None),
    ("def f(x, max):\n    return max(x, 0)\n", None),
    ("def f(x):\n    max = min\n    return max(x, 0)\n", None),
    ("def f(x):\n    def g():\n        return max(x, 0)\n    max = min\n    return g()\n", None),
    ("def f(x):\n    return helper(x, 0)\n", None),
], ids=["builtin", "imported", "module-level def", "module-level assignment", "parameter", "local",
        "enclosing function's local", "not a builtin"])
def test_builtin_name(src, builtin):
    info, node = call_of(src, "helper" if "helper" in src else "max")
    assert info.builtin_name(node) == builtin


def test_names_bound_and_used():
    fn = cst.parse_module(
        "def f(a, *rest):\n"
        "    b, (c, *d) = a\n"
        "    for e in a.items:\n"
        "        g(e, key=b)\n"
        "    def inner():\n"
        "        nonlocal b\n"
        "        b = 1\n").body[0]
    assert bound_names(fn.body) == {"b", "c", "d", "e", "inner"}
    assert bound_names(fn.body, nested=True) == {"b", "c", "d", "e", "inner"}
    assert "items" not in names_in(fn) and "key" not in names_in(fn)
    assert {"f", "rest", "items", "key", "inner"} <= used_names(fn)


def test_fresh_name():
    taken = {"keep", "mask", "t", "t2"}
    assert fresh_name(("keep", "mask"), taken) == "keep_1"
    assert "keep_1" in taken
    assert fresh_name("t", taken, first=2, sep="") == "t3"


@pytest.mark.parametrize("text, value", [("3", 3), ("-1", -1), ("+2.5", 2.5), ("(-1)", -1), ("True", None),
                                         ("x", None), ("1j", None)])
def test_number_value(text, value):
    assert number_value(cst.parse_expression(text)) == value


def test_builtin_names_with_and_without_a_local_binding_in_the_text():
    import libcst as cst

    from loopvec.analysis import traverse
    from loopvec.analysis.module import ModuleInfo

    source = ("def f(xs):\n    return sorted(xs, key=len) + [len(x) for x in xs]\n\n\n"
              "def g(ys, sum=None):\n    def abs(v):\n        return v\n    return sum(ys) + abs(ys) + min(ys)\n\n\n"
              "def h(zs):\n    return list(map(lambda max: max(zs), zs))\n")
    info = ModuleInfo.parse("m.py", source)
    calls = {(n.func.value, info.position(n).start.line): info.builtin_name(n.func)
             for n in traverse.walk(info.module) if isinstance(n, cst.Call) and isinstance(n.func, cst.Name)}
    assert calls[("len", 2)] == "len" and calls[("sorted", 2)] == "sorted"
    assert calls[("sum", 8)] is None and calls[("abs", 8)] is None and calls[("min", 8)] == "min"
    assert calls[("max", 12)] is None and calls[("map", 12)] == "map"
