"""A rewrite keeps every line ending outside the lines it rewrites, byte for byte: `\\n`,
`\\r\\n` and old-Mac `\\r` files, with and without a final newline; the rewritten lines take
the file's newline. The diff a plan shows (spliced from a chunk) is the one `apply` writes."""

import pytest

from loopvec.engine import apply_keys, plan_source, unified_diff
from loopvec.prefilter import split_lines

LOOP = [
    "def cubes(x: torch.Tensor) -> torch.Tensor:",
    "    n = len(x)",
    "    out = torch.zeros(n, dtype=torch.float64)",  # the rewrite starts here
    "    for i in range(n):",
    "        out[i] = x[i] ** 3",  # ... and ends here
    "    return out",
]
BEFORE = ["import torch", "", "", "def before(x):", "    return x + 1", "", ""]
AFTER = ["", "", "def after(x):", "    return x - 1"]

LAYOUTS = {
    "loop in the middle of the file": (BEFORE + LOOP + AFTER, len(BEFORE) + 2, len(BEFORE) + 5),
    "loop function last in the file": (BEFORE + LOOP, len(BEFORE) + 2, len(BEFORE) + 5),
}
NEWLINES = {"LF": "\n", "CRLF": "\r\n", "old-Mac CR": "\r"}


def _source(lines: list[str], newline: str, final: bool) -> str:
    return newline.join(lines) + (newline if final else "")


def _rewrite(source: str) -> tuple[str, str]:
    plan = plan_source("m.py", source, ("elementwise",))
    assert len(plan.planned) == 1, "the fixture loop is rewritten"
    new = apply_keys("m.py", source, {plan.planned[0].key}, ("elementwise",))
    return new, plan.planned[0].diff


CASES = [pytest.param(layout, nl, final, id=f"{nl_name} file, {layout}, {'with' if final else 'without'} final newline")
         for layout in LAYOUTS for nl_name, nl in NEWLINES.items() for final in (True, False)]


@pytest.mark.parametrize("layout, newline, final", CASES)
def test_untouched_lines_keep_their_endings_byte_for_byte(layout, newline, final):
    lines, first, end = LAYOUTS[layout]
    source = _source(lines, newline, final)
    new, _ = _rewrite(source)
    old_lines, new_lines = split_lines(source), split_lines(new)
    tail = len(old_lines) - end
    assert new_lines[:first] == old_lines[:first]
    assert new_lines[len(new_lines) - tail:] == old_lines[end:]
    assert new.endswith(newline) == final
    # the lines the rewrite put in end like the file's others
    for line in new_lines[first:len(new_lines) - tail]:
        assert line.endswith(newline) and not line[:-len(newline)].endswith(("\r", "\n"))


@pytest.mark.parametrize("layout, newline, final", CASES)
def test_planned_diff_is_what_apply_writes(layout, newline, final):
    lines, _, _ = LAYOUTS[layout]
    source = _source(lines, newline, final)
    new, diff = _rewrite(source)
    assert diff == unified_diff("m.py", source, new)


def test_old_mac_file_keeps_its_final_newline():
    source = _source(BEFORE + LOOP, "\r", True)
    new, _ = _rewrite(source)
    assert new.endswith("    return out\r")


@pytest.mark.slow
def test_apply_writes_an_old_mac_file_byte_for_byte(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from loopvec.cli import app

    before = ["import torch", "", "", "def double(x: torch.Tensor) -> torch.Tensor:", "    out = []",
              "    for v in x:", "        out.append(v * 2)  # doubled", "    return torch.stack(out)"]
    after = ["import torch", "", "", "def double(x: torch.Tensor) -> torch.Tensor:", "    # doubled",
             "    return x * 2"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_bytes(_source(before, "\r", True).encode("utf-8"))
    assert CliRunner().invoke(app, ["apply", "m.py"], catch_exceptions=False).exit_code == 1
    assert (tmp_path / "m.py").read_bytes() == _source(after, "\r", True).encode("utf-8")
    assert CliRunner().invoke(app, ["apply", "m.py"], catch_exceptions=False).exit_code == 0
