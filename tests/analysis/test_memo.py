"""Per-function answers are memoised by the identity of their arguments, never by equality."""

import libcst as cst

from loopvec.analysis import memo


def test_answers_are_reused_for_the_same_node_only():
    calls = []

    @memo.per_node
    def names(node):
        calls.append(node)
        return frozenset(n.value for n in (node.body.body[0].body[0].targets[0].target,))

    a = cst.parse_module("def f():\n    x = 1\n").body[0]
    b = cst.parse_module("def f():\n    x = 1\n").body[0]  # equal text, another node
    assert names(a) == names(a) == names(b) == {"x"}
    assert calls == [a, b]


def test_a_full_cache_starts_over_and_keeps_answering():
    @memo.per_node
    def ident(node):
        return id(node)

    nodes = [cst.Name(f"n{k}") for k in range(memo.SIZE + 5)]
    assert [ident(n) for n in nodes] == [id(n) for n in nodes]
    assert ident(nodes[0]) == id(nodes[0])
