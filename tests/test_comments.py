"""No comment is lost in a rewrite: the comments inside a rewritten loop, on its header line,
on a removed `out = []` and on the replaced finish statement come over, in source order,
on their own lines above the new code; trailing pragmas (`# noqa`, `# type: ignore`,
`# pragma: ...`) stay trailing on the line that replaces theirs."""

import io
import tokenize

import libcst as cst
import pytest

import codemods
import fixture_cases
from loopvec.edits import apply_edits, lost_comments
from loopvec.engine import SourceError, apply_keys, changed_lines, plan_source
from loopvec.rewrite import Edit


def _rewrite(source: str, pattern: str | None) -> str:
    patterns = (pattern,) if pattern else ()
    plan = plan_source("m.py", source, patterns)
    assert plan.planned, "the loop is rewritten"
    return apply_keys("m.py", source, {p.key for p in plan.planned}, patterns)


def _comments(source: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t.string for t in tokens if t.type == tokenize.COMMENT]


def _missing(before: str, after: str) -> list[str]:
    """The comments of `before` not in `after`, each counted once; pragmas that share a line
    in `after` (`# type: ignore  # noqa`) count one by one."""
    left = _comments(after)
    missing = []
    for text in _comments(before):
        k = next((k for k, c in enumerate(left) if text in c), None)
        if k is None:
            missing.append(text)
        else:
            left[k] = left[k].replace(text, "", 1)
    return missing


REWRITES = [
    pytest.param(
        'elementwise',
        '''import torch


def cubes(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([  # stack them
        v ** 3  # noqa: E501
        # each element
        for v in x
    ])  # type: ignore
''',
        '''import torch


def cubes(x: torch.Tensor) -> torch.Tensor:
    # stack them
    # each element
    return x ** 3  # type: ignore  # noqa: E501
''',
        id="elementwise: a comprehension's comments go above its statement, its pragma trails it",
    ),
    pytest.param(
        'elementwise',
        '''import torch


def cubes(x: torch.Tensor) -> torch.Tensor:
    n = len(x)
    out = torch.zeros(n, dtype=torch.float64)  # the result
    for i in range(n):  # every row
        out[i] = x[i] ** 3  # type: ignore[index]
        # the cube, cast to float64
    return out
''',
        '''import torch


def cubes(x: torch.Tensor) -> torch.Tensor:
    n = len(x)
    # the result
    # every row
    # the cube, cast to float64
    out = (x ** 3).to(torch.float64)  # type: ignore[index]
    return out
''',
        id='elementwise: the comments of a stored loop and of the allocation it drops',
    ),
    pytest.param(
        'where',
        '''import torch


def relu(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for i in range(len(x)):
        if x[i] > 0:  # positive: kept
            out[i] = x[i]
        else:
            # negative: zeroed
            out[i] = 0 * x[i]  # pylint: disable=invalid-name
    return out
''',
        '''import torch


def relu(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    # positive: kept
    # negative: zeroed
    keep = x > 0
    out[keep] = x[keep]
    out[~keep] = (0 * x[~keep]).to(out.dtype)  # pylint: disable=invalid-name
    return out
''',
        id='where: comments on both branches of a store loop',
    ),
    pytest.param(
        'reduction',
        '''import torch


def positive_sum(data: torch.Tensor):
    total = 0  # the running sum
    for x in data:  # each element
        # only the positive ones
        if x > 0:
            total += x  # noqa: SIM102
    return total  # a 0-d tensor
''',
        '''import torch


def positive_sum(data: torch.Tensor):
    # the running sum
    # each element
    # only the positive ones
    picked = data[(data > 0).flatten()]
    total = picked.sum(0, dtype=torch.result_type(picked, 0)) if len(picked) else 0  # noqa: SIM102
    return total  # a 0-d tensor
''',
        id='reduction: a pragma on the accumulation and a comment on the dropped start value',
    ),
    pytest.param(
        'vmap',
        '''import torch


def energy(points, other):  # loopvec: shapes points=[n,3] other=[n,3]
    energies = []  # one per point
    for i in range(len(points)):  # noqa: B007
        # the cross product
        c = torch.linalg.cross(points[i], other[i])  # type: ignore[call-arg]
        energies.append(torch.dot(c, c).sqrt())  # its length
    return torch.stack(energies)
''',
        '''import torch


def energy(points, other):  # loopvec: shapes points=[n,3] other=[n,3]
    # one per point
    # noqa: B007
    # its length
    def _per_item(points_row, other_row):
        # the cross product
        c = torch.linalg.cross(points_row, other_row)  # type: ignore[call-arg]
        return torch.dot(c, c).sqrt()
    return torch.vmap(_per_item)(points, other)
''',
        id="vmap: the body's comments stay in the per-item function, the others go above it",
    ),
]


@pytest.mark.parametrize("pattern, before, after", REWRITES)
def test_rewrite_carries_every_comment_over(pattern, before, after):
    assert _rewrite(before, pattern) == after


def _body(source: str):
    module = cst.parse_module(source)
    return module, module.body[0].body.body


def test_trailing_comments_of_a_removed_statement_move_above_the_next_one():
    module, body = _body("def f(x):\n    a = []  # noqa: F841\n    b = 1  # why\n    return b\n")
    new = apply_edits(module, [Edit(body[0], None)])
    assert new.code == "def f(x):\n    # noqa: F841\n    b = 1  # why\n    return b\n"


def test_pragma_of_a_statement_replaced_by_a_loop_goes_above_it():
    # a trailing pragma on a `for` line's body would speak for another line: above it, kept
    module, body = _body("def f(x):\n    b = g(x)  # noqa: E501\n    return b\n")
    new = apply_edits(module, [Edit(body[0], "b = 0\nfor v in x:\n    b += v")])
    assert new.code == "def f(x):\n    # noqa: E501\n    b = 0\n    for v in x:\n        b += v\n    return b\n"


def test_comments_inside_a_replaced_loop_header_expression():
    module, body = _body("def f(x):\n    for v in g(  # noqa: E501\n        x,  # the input\n    ):\n        h(v)\n")
    new = apply_edits(module, [Edit(body[0].iter, "x + 1")])
    assert new.code == "def f(x):\n    # the input\n    for v in (x + 1):  # noqa: E501\n        h(v)\n"


def test_comments_the_new_code_keeps_are_not_repeated():
    module, body = _body("def f(x):\n    for v in x:  # walk\n        # keep\n        h(v)  # noqa: T201\n")
    new = apply_edits(module, [Edit(body[0], "y = x\nfor v in y:  # walk\n    # keep\n    h(v)  # noqa: T201")])
    assert new.code == "def f(x):\n    y = x\n    for v in y:  # walk\n        # keep\n        h(v)  # noqa: T201\n"


def test_a_comment_a_lifted_expression_keeps_is_not_repeated():
    before = ("import torch\n\n\ndef f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:\n    out = []\n"
              "    for i in range(len(x)):\n        out.append((x[i] * w[i]  # weighted\n"
              "                    + 1))\n    return torch.stack(out)\n")
    after = ("import torch\n\n\ndef f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:\n"
             "    return (x * w  # weighted\n                + 1)\n")
    assert _rewrite(before, "elementwise") == after


def test_type_ignore_leads_the_trailing_comment():
    # mypy reads `# type: ignore` only at the start of a comment; `# noqa` is found anywhere
    module, body = _body("def f(x):\n    a = g(x)  # noqa: E501\n    return torch.stack(a)  # type: ignore\n")
    new = apply_edits(module, [Edit(body[0], None), Edit(body[1], "return x")])
    assert new.code == "def f(x):\n    return x  # type: ignore  # noqa: E501\n"


def test_carried_comments_are_not_reach_probe_targets():
    old = "def f(x):\n    out = []\n    for v in x:\n        # cube\n        out.append(v ** 3)\n    return torch.stack(out)\n"
    new = "def f(x):\n    # cube\n    return x ** 3\n"
    assert changed_lines(old, new) == (3,)


def test_a_rewrite_that_would_delete_a_comment_is_declined(monkeypatch):
    # should the edits ever miss a comment, the plan says so and nothing is written
    import loopvec.edits

    monkeypatch.setattr(loopvec.edits, "_inner_comments", lambda node: [])
    source = "import torch\n\n\ndef f(x: torch.Tensor):\n    out = []\n    for v in x:\n" \
             "        out.append(v * 2)  # doubled\n    return torch.stack(out)\n"
    (planned,) = plan_source("m.py", source, ("elementwise",)).planned
    assert planned.unverifiable == "the rewrite would delete the comment `# doubled`: left unchanged"
    with pytest.raises(SourceError, match="would delete the comment `# doubled`"):
        apply_keys("m.py", source, {planned.key}, ("elementwise",))


def test_lost_comments_counts_each_comment_once():
    assert lost_comments("a = 1  # x\nb = 2  # x\n", "a = b = 1  # x\n") == ["# x"]
    assert lost_comments("a = 1  # noqa\nb = 2  # type: ignore\n", "c = 3  # type: ignore  # noqa\n") == []
    assert lost_comments("a = 1  # x\rb = 2  # y\r", "a = 1  # x\r") == ["# y"]


def _fixture_pairs():
    names = {p.NAME for p in codemods.select(())}
    for folder in sorted(p for p in fixture_cases.FIXTURES.iterdir() if p.is_dir()):
        pairs, _ = fixture_cases.discover(folder.name)
        for case in pairs:
            yield pytest.param(case, folder.name if folder.name in names else None, id=f"{folder.name}/{case}")


@pytest.mark.parametrize("case, pattern", list(_fixture_pairs()))
def test_no_fixture_rewrite_loses_a_comment(case, pattern):
    source = case.path.read_text(encoding="utf-8")
    assert _missing(source, _rewrite(source, pattern)) == []
    assert _missing(source, case.expected.read_text(encoding="utf-8")) == []


def test_fixture_corpus_has_comments_inside_loops():
    # the property above would hold vacuously on fixtures with comments only above functions
    with_pragmas = [c for c, _ in (p.values for p in _fixture_pairs())
                    if "# noqa" in c.path.read_text(encoding="utf-8")]
    assert len(with_pragmas) >= 3
