"""Planning a large file costs time in proportion to its size: each candidate's work is
proportional to its function, not to the file (the diff, the hint comments, the splice).

No timings here: the tests count what each candidate looks at. The figures come from
`python -m benchmarks --only scale-file`."""

import difflib
from pathlib import Path

import pytest

from benchmarks.__main__ import SCALE_UNIT, scale_file_source
from loopvec import engine, prefilter
from loopvec.engine import apply_keys, plan_source
from loopvec.verify import source as verify_source

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted(p for p in (ROOT / "fixtures").glob("*/*.py") if not p.name.endswith(".expected.py"))
UNIT_LINES = SCALE_UNIT.count("\n")


def _whole_file_diff(path: str, old: str, new: str) -> str:
    """The diff as planning made it before: difflib over the two whole files."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _planned_with_alternatives(plan):
    for p in plan.planned:
        yield p
        if p.alternative is not None:
            yield p.alternative


def _pattern_names(path: Path) -> tuple[str, ...]:
    import codemods

    return (path.parent.name,) if path.parent.name in codemods.all_patterns() else ()


def _assert_diffs_are_whole_file_diffs(path: str, source: str, names: tuple[str, ...] = ()) -> int:
    plan = plan_source(path, source, names)
    checked = 0
    for p in _planned_with_alternatives(plan):
        if p.function_source is None and p.unverifiable:
            continue  # it does not render: no diff, nothing to apply
        new = apply_keys(path, source, {p.key}, names)
        assert p.diff == _whole_file_diff(path, source, new), p.key
        checked += 1
    return checked


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_candidate_shows_the_whole_file_diff(path):
    _assert_diffs_are_whole_file_diffs(str(path), path.read_text(encoding="utf-8"), _pattern_names(path))


# twelve units: over 200 lines, where difflib starts treating frequent lines as junk
@pytest.mark.parametrize("units", [1, 3, 12], ids=["one function", "three functions", "twelve functions"])
def test_a_generated_file_shows_the_whole_file_diff_for_each_candidate(units):
    source, n = scale_file_source(len(SCALE_UNIT) * units)
    assert _assert_diffs_are_whole_file_diffs("gen.py", source) >= n


def test_a_candidate_in_the_first_and_last_lines_has_its_context_cut_at_the_file_edges():
    source = ("import torch\ndef f(x: torch.Tensor) -> torch.Tensor:\n    out = torch.empty_like(x)\n"
              "    for i in range(x.shape[0]):\n        out[i] = x[i] + 1\n    return out")
    assert _assert_diffs_are_whole_file_diffs("edge.py", source) >= 1


_UNIFIED_DIFF = difflib.unified_diff


def _diffed_lengths(monkeypatch, source: str) -> list[int]:
    seen: list[int] = []

    def counting(a, b, *args, **kwargs):
        seen.append(max(len(a), len(b)))
        return _UNIFIED_DIFF(a, b, *args, **kwargs)

    monkeypatch.setattr(engine.difflib, "unified_diff", counting)
    plan = plan_source("gen.py", source)
    assert plan.planned
    return seen


def test_each_candidate_diffs_its_function_not_the_file(monkeypatch):
    small = _diffed_lengths(monkeypatch, scale_file_source(20_000)[0])
    large = _diffed_lengths(monkeypatch, scale_file_source(80_000)[0])
    assert len(large) > 3 * len(small)  # one diff per candidate (and alternative)
    # the lines a diff compares do not grow with the file: the function and its context
    assert max(large) == max(small)
    assert max(large) < UNIT_LINES


def test_a_chunk_is_spliced_into_its_own_lines_and_their_context_only():
    source, _ = scale_file_source(50_000)
    selection = prefilter.select(source)
    infos = list(prefilter.iter_chunk_infos("gen.py", source, selection))
    assert len(infos) > 40
    for info in infos:
        size = info.chunk.end - info.chunk.start + 1
        k, old, new = info.window(info.local_text(), 3)
        assert k == max(0, info.chunk.start - 1 - 3)
        assert len(old) == len(new) <= size + 6  # not the file's lines
        assert old == new == info.lines[k:k + len(old)]  # unchanged code splices back as it was


def test_the_file_is_split_into_lines_once_however_many_functions_read_it(monkeypatch):
    source, units = scale_file_source(40_000)
    source += "\n\n"  # a text no earlier test has indexed
    splits: list[int] = []
    real = verify_source.source_lines

    def counting(text):
        if len(text) == len(source):
            splits.append(1)
        return real(text)

    monkeypatch.setattr(verify_source, "source_lines", counting)
    plan = plan_source("gen.py", source)
    assert len(plan.planned) == units > 20
    assert splits == [1]  # once for the hint comments and the skip comments of every loop


class _CountingText(str):
    """A file's text that counts the searches and splits of all of it."""

    calls = 0

    def __contains__(self, part):
        type(self).calls += 1
        return super().__contains__(part)

    def splitlines(self, keepends=False):
        type(self).calls += 1
        return super().splitlines(keepends)


def _whole_text_reads(units: int, whole: bool) -> int:
    source, n = scale_file_source(len(SCALE_UNIT) * units)
    text = _CountingText(source + "\n" * units)  # a text no earlier test has indexed
    _CountingText.calls = 0
    assert len(plan_source("gen.py", text, show_declined=whole).planned) == n
    return _CountingText.calls


@pytest.mark.parametrize("whole", [False, True], ids=["chunks of the file", "the whole file parsed"])
def test_the_whole_text_is_searched_a_fixed_number_of_times_not_once_per_function(whole):
    assert _whole_text_reads(24, whole) == _whole_text_reads(6, whole)


def test_hint_comments_are_read_from_the_signature_lines_only():
    text = "def f(x,  # loopvec: shapes x=[n]\n      k):  # loopvec: shapes k=int\n    pass\n# loopvec: shapes y=[m]\n"
    assert verify_source.hint_comments(text, 1, 2) == {"x": "[n]", "k": "int"}
    assert verify_source.hint_comments(text, 1, 1) == {"x": "[n]"}
    assert verify_source.hint_comments(text, 3, 3) == {}
    assert verify_source.has_hint_comments(text)
    assert not verify_source.has_hint_comments("def f(x):  # loopvec: skip\n    pass\n")


def test_hint_comments_count_lines_as_the_parser_does():
    # a form feed is no line break for the parser (str.splitlines would count one)
    text = "\x0c# page\ndef f(x):  # loopvec: shapes x=[n]\n    pass\n"
    assert verify_source.hint_comments(text, 2, 2) == {"x": "[n]"}


def test_a_skip_comment_deep_in_a_large_file_still_suppresses_its_loop():
    source, units = scale_file_source(30_000)
    target = "    for i in range(x.shape[0]):\n        out[i] = x[i] * s + 7\n"
    assert target in source
    source = source.replace(target, target.replace("]):\n", "]):  # loopvec: skip\n", 1))
    planned = plan_source("gen.py", source).planned
    assert len(planned) == units - 1
    assert "scale_7" not in {p.qualname for p in planned}
