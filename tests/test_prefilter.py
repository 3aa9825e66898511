"""The prefilter never drops a loop a pattern would rewrite, and chunked plans equal whole-file plans."""

from pathlib import Path

import pytest

from loopvec import prefilter
from loopvec.engine import plan_source

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted(p for p in (ROOT / "fixtures").glob("*/*.py"))


def _whole(path: str, source: str):
    # --show-declined parses every loop of the whole file: the reference the chunks must match
    return plan_source(path, source, show_declined=True)


def _same(path: str, source: str) -> None:
    whole, chunked = _whole(path, source), plan_source(path, source)
    assert chunked.planned == whole.planned
    assert chunked.loops == whole.loops


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_plans_the_same_through_the_prefilter(path):
    source = path.read_text(encoding="utf-8")
    _same(str(path), source)
    selection = prefilter.select(source)
    assert selection is not None
    for planned in _whole(str(path), source).planned:
        assert any(c.start <= planned.line <= c.end for c in selection.chunks), \
            f"{planned.qualname}: the prefilter dropped a loop {planned.pattern} rewrites"


METHOD = '''import torch


class A:
    """Doc."""

    scale = 2

    class B:
        @staticmethod
        def f(x):
            out = []
            for v in x:
                out.append(v * 2)
            return torch.stack(out)

        def quiet(self, xs):
            for x in xs:
                print(x)


def g(x):
    return torch.stack([v + 1 for v in x])


def h(items):
    n = 0
    for item in items:
        log(item)
'''


@pytest.mark.parametrize("variant", ["plain", "crlf", "no final newline", "tabs", "form feed"])
def test_chunked_plan_equals_whole_file_plan(variant):
    source = {
        "plain": METHOD,
        "crlf": METHOD.replace("\n", "\r\n"),
        "no final newline": METHOD.rstrip("\n"),
        "tabs": METHOD.replace("    ", "\t"),
        "form feed": METHOD.replace("\n\n\ndef g", "\n\n\x0c\ndef g"),
    }[variant]
    _same("m.py", source)
    assert [p.qualname for p in plan_source("m.py", source).planned] == ["B.f", "g"]


def test_methods_are_chunked_with_their_classes_and_quiet_loops_are_not():
    selection = prefilter.select(METHOD)
    assert [(c.start, c.header) for c in selection.chunks] == [
        (10, ("class A:\n", "    class B:\n")),
        (22, ()),
    ]
    assert selection.loops == 4


def test_a_rewrite_is_spliced_into_the_whole_file():
    plan = plan_source("m.py", METHOD)
    diff = plan.planned[0].diff
    assert "-            for v in x:" in diff and "+            return x * 2" in diff
    assert "@@ -9,10 +9,7 @@" in diff


@pytest.mark.parametrize("body, kept", [
    ("out.append(x)", True),
    ("out[i] = x", True),
    ("total += x", True),
    ("best = max(best, x)", True),
    ("if x > best:\n            best = x", True),
    ("x.add_(1)", False),
    ("y = x * 2\n        print(y)", False),
    ("out.append(x)\n        print(x)", False),
    ("out.append(x)\n        if x > 3:\n            return out", False),
    ("out.append(x)\n        xs.sort = None", False),
    ("out.append(x)\n        seen.add(x)", False),
    ("y = x.cuda()\n        use(y)", True),
    ("out.append(lambda: print(x))", True),
    ("names.append(str(x))", False),
    ("if x > 0:\n            found = True", False),
    ("print([v for v in x])", False),
    ("for j in range(3):\n            out[i, j] = x", True),
    ("for j in range(3):\n            print(j)", False),
    # control flow every pattern declines, and the two shapes that allow some
    ("total += x\n        if x > 9:\n            break", False),
    ("if x > 9:\n            out[0] = True\n            break", True),
    ("if x > 9:\n            continue\n        total += x", False),
    ("if x > 9:\n            continue\n        out.append(x)", True),
    ("for j in range(3):\n            if j:\n                break\n            out[i, j] = x", True),
    ("try:\n            out[i] = x\n        except ValueError:\n            pass", False),
    ("with ctx:\n            out[i] = x", False),
    ("with ctx:\n            y = x.cuda()\n            use(y)", True),
    ("while total < x:\n            total += 1", False),
])
def test_which_loop_bodies_may_produce_a_value(body, kept):
    source = (f"import torch\n\n\ndef f(xs, out, best, total, names):\n    for i, x in enumerate(xs):\n"
              f"        {body}\n    return torch.stack(out)\n")
    assert bool(prefilter.select(source).chunks) is kept


def test_collector_comprehensions_are_kept_even_through_aliases():
    source = "from torch import stack as st\n\n\ndef f(x):\n    return st([v * 2 for v in x])\n"
    selection = prefilter.select(source)
    assert selection.chunks and selection.loops == 1
    _same("m.py", source)


def test_module_level_and_class_body_loops_are_counted_but_not_parsed():
    source = ("import torch\nout = []\nfor v in range(3):\n    out.append(v)\n\n\n"
              "class A:\n    xs = torch.stack([torch.ones(1) for _ in range(2)])\n")
    selection = prefilter.select(source)
    assert selection.chunks == () and selection.loops == 2
    _same("m.py", source)


def test_a_def_inside_a_class_level_if_is_kept():
    source = ("import sys\nimport torch\n\n\nclass A:\n    if sys.version_info >= (3, 8):\n"
              "        def f(self, x):\n            return torch.stack([v * 2 for v in x])\n")
    assert prefilter.select(source).chunks
    _same("m.py", source)


def test_imports_inside_functions_resolve_as_in_a_full_parse():
    source = ("def f(x):\n    import torch as th\n    return th.tensor([v * 2 for v in x])\n\n\n"
              "def g(x):\n    out = []\n    for v in x:\n        out.append(v + 1)\n    return th.stack(out)\n")
    _same("m.py", source)


def test_syntax_newer_than_ast_falls_back_to_the_whole_file():
    assert prefilter.select("def f(:\n") is None
    assert prefilter.select("x = 1\x00\n") is None


def test_a_file_without_candidates_is_not_parsed_by_libcst(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("libcst was asked to parse a file with no candidate")

    monkeypatch.setattr("loopvec.engine.parse", fail)
    monkeypatch.setattr("loopvec.analysis.module.ModuleInfo.parse", fail)
    source = "import torch\n\n\ndef f(xs):\n    for x in xs:\n        print(x)\n" * 50
    plan = plan_source("m.py", source)
    assert plan.planned == () and plan.loops == 50


def test_split_lines_counts_lines_like_the_tokenizer():
    assert prefilter.split_lines("a\r\nb\x0cc\rd\ne") == ["a\r\n", "b\x0cc\r", "d\n", "e"]


def test_loop_positions_from_ast_equal_libcst_positions():
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider

    source = ("import torch\n\n\nclass A:\n    async def f(self, xs, out):\n        async for x in xs:\n"
              "            out.append(x)\n        for i in range(len(out)):\n            out[i] = out[i] * 2  # é\n"
              "        return torch.stack(out), 'ü'\n")
    selection = prefilter.select(source)
    (info,) = prefilter.chunk_infos("m.py", source, selection)
    prefilter.find_loops(info)
    fors = {}

    class Fors(cst.CSTVisitor):
        def visit_For(self, node):
            fors[node] = info.position(node)

    info.module.visit(Fors())
    whole = MetadataWrapper(cst.parse_module(source)).resolve(PositionProvider)
    expected = sorted((r.start.line, r.start.column, r.end.line, r.end.column)
                      for n, r in whole.items() if isinstance(n, cst.For))
    got = sorted((r.start.line, r.start.column, r.end.line, r.end.column) for r in fors.values())
    assert got == expected and len(got) == 2


def test_the_chunks_import_map_is_the_whole_files():
    source = ("import torch\nimport torch.nn.functional\nimport numpy as np, math\nfrom torch import stack as st\n"
              "from . import sibling\nfrom .pkg import thing\nfrom os.path import *\n\n\n"
              "def f(x):\n    from torch.fft import fft2\n    import torch as th\n    out = []\n    for v in x:\n"
              "        out.append(fft2(v) + np.pi)\n    return st(out)\n\n\n"
              "def g():\n    from torch import cat as st\n")
    selection = prefilter.select(source)
    assert selection.chunks
    from loopvec.analysis.module import ModuleInfo

    assert dict(selection.import_map) == ModuleInfo.parse("m.py", source).imports


@pytest.mark.parametrize("annotation, kept", [
    ("list[str]", False), ("List[torch.Tensor]", False), ("Sequence[Node]", False), ("list", False),
    ("dict[str, int]", True),  # int: sweep may still ask (it declines dicts itself)
    ("list[float]", True), ("Sequence[tuple[float, float]]", True), ("torch.Tensor", True), ('"list[str]"', True),
])
def test_a_loop_over_a_parameter_annotated_as_a_list_of_other_than_numbers_is_not_parsed(annotation, kept):
    source = ("import torch\nfrom typing import List, Sequence\n\n\n"
              f"def f(xs: {annotation}, out):\n"
              "    for s in xs:\n        out.append(s * 2)\n    return torch.stack(out)\n")
    chunks = prefilter.select(source).chunks
    assert bool(chunks and chunks[0].wanted) is kept
    _same("m.py", source)
