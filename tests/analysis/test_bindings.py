"""Names bound once, and the sizes they measure."""

import libcst as cst
import pytest

from loopvec.analysis.bindings import function_bindings, measures


def fn(src: str) -> cst.FunctionDef:
    return cst.parse_module(src).body[0]


SRC = ("def f(x, y):\n"
       "    n, d = x.shape\n"
       "    k = y.size(1)\n"
       "    m = len(x)\n"
       "    j = 0\n"
       "    j += 1\n")


@pytest.mark.parametrize("size, array, dim, expected", [
    ("d", "x", 1, True), ("n", "x", 0, True), ("k", "y", 1, True), ("m", "x", 0, True),
    ("x.shape[1]", "x", 1, True), ("x.size(0)", "x", 0, True), ("len(x)", "x", 0, True),
    ("d", "x", 0, False), ("d", "y", 1, False), ("j", "x", 0, False),
], ids=lambda v: str(v))
def test_measures(size, array, dim, expected):
    assert measures(cst.parse_expression(size), array, dim, function_bindings(fn(SRC))) is expected


def test_a_rebound_array_measures_nothing_it_was_measured_by():
    bindings = function_bindings(fn(SRC + "    x = x[1:]\n"))
    assert "x" in bindings.rebound
    assert not measures(cst.parse_expression("d"), "x", 1, bindings)
