"""Edits keep everything outside them: comments, blank lines, other statements."""

import libcst as cst

from loopvec.edits import apply_edits, function_source
from loopvec.rewrite import Edit


def test_removed_statement_keeps_its_comment_and_replacement_keeps_indentation():
    module = cst.parse_module("def f(x):\n    # why\n    a = 1\n    b = 2\n    return a\n")
    body = module.body[0].body.body
    new = apply_edits(module, [Edit(body[0], None), Edit(body[1], "c = 3\nd = 4")])
    assert new.code == "def f(x):\n    # why\n    c = 3\n    d = 4\n    return a\n"


def test_expression_edit_is_parenthesised_only_where_needed():
    module = cst.parse_module("y = foo(x) * 2\nz = foo(x)\n")
    call1 = module.body[0].body[0].value.left
    call2 = module.body[1].body[0].value
    new = apply_edits(module, [Edit(call1, "x + 1"), Edit(call2, "x + 1")])
    assert new.code == "y = (x + 1) * 2\nz = x + 1\n"


def test_function_source_of_a_method_is_dedented():
    module = cst.parse_module("class A:\n    @staticmethod\n    def m(x):\n        return x\n")
    assert function_source(module, "A.m") == "@staticmethod\ndef m(x):\n    return x\n"
