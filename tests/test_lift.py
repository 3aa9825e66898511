"""The shared lifter: a pattern's own `calls` rule, and the dim tables patterns share."""

import libcst as cst
import pytest

from loopvec.analysis.loops import find_loops
from loopvec.analysis.module import ModuleInfo, code
from loopvec.lift import ROW_REDUCTIONS, Lifted, LiftError, LiftScope, lift, literal_dims, shift_dims


def scope_for(body: str) -> tuple[LiftScope, cst.BaseExpression]:
    info = ModuleInfo.parse("m.py", f"import torch\ndef f(x, w):\n    return torch.stack([{body} for v in x])\n")
    [loop] = find_loops(info)
    scope = LiftScope.for_loop(info, "torch", loop.domain, set(loop.domain.names))
    return scope, loop.element


def test_the_calls_rule_is_tried_first_and_asked_once():
    scope, element = scope_for("v.blur() * 2")
    asked = []

    def rule(node, _scope):
        asked.append(code(node))
        if isinstance(node, cst.Call) and code(node) == "v.blur()":
            return Lifted(cst.parse_expression("blur(x)"), True, "tensor")
        return None

    with pytest.raises(LiftError):
        lift(element, scope)  # `.blur()` is in no table
    scope.use_calls(rule)
    assert lift(element, scope).code == "blur(x) * 2"
    lift(element, scope)
    assert asked.count("v.blur()") == 1


def test_a_subscript_chain_is_not_flattened_through_what_the_rule_lifted():
    scope, element = scope_for("v[None][:, 1]")
    scope.use_calls(lambda node, _s: Lifted(cst.parse_expression("x.unsqueeze(1)"), True, "tensor")
                    if code(node) == "v[None]" else None)
    assert lift(element, scope).code == "x.unsqueeze(1)[:, :, 1]"


@pytest.mark.parametrize("dims, shifted", [("0", "1"), ("-1", "-1"), ("(0, -2)", "(1, -2)"), ("[1, 2]", "[2, 3]")])
def test_shift_dims(dims, shifted):
    assert code(shift_dims(cst.parse_expression(dims))) == shifted


def test_a_dim_that_is_not_a_literal_is_not_shifted():
    assert literal_dims(cst.parse_expression("k")) is None
    with pytest.raises(LiftError):
        shift_dims(cst.parse_expression("k"))


def test_row_reductions_come_from_the_dim_table():
    assert ROW_REDUCTIONS["max"] == "amax" and ROW_REDUCTIONS["sum"] == "sum"
    assert ROW_REDUCTIONS["logsumexp"] is None  # needs a dim
