"""`loopvec profile`: samples from every Python process of a command, charged to the loops they hit."""

import os
import sys
from collections import Counter

import pytest
from typer.testing import CliRunner

from loopvec import profile as prof
from loopvec.cli import app

BUSY = """
def spin(n):
    total = 0
    for i in range(n):
        total += i % 7
    return total


def idle():
    return 1


if __name__ == "__main__":
    spin({n})
"""


def test_samples_reach_the_loop_that_runs(tmp_path):
    script = tmp_path / "busy.py"
    script.write_text(BUSY.format(n=3_000_000))
    code, samples = prof.run_profiled([sys.executable, str(script)], interval=0.002)
    assert code == 0 and samples.processes == 1
    loops = [prof.LoopCost(str(script), 4, 5, "spin"), prof.LoopCost(str(script), 10, 11, "idle")]
    ranked = prof.charge(samples, loops)
    assert [c.function for c in ranked] == ["spin"]


def test_a_failing_command_passes_its_exit_code_on(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.exit(3)\n")
    code, _ = prof.run_profiled([sys.executable, str(script)])
    assert code == 3


def test_forked_children_write_their_own_samples(tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(BUSY.format(n=0) + "    import os, sys\n    pid = os.fork()\n    spin(2_000_000)\n"
                      "    if pid:\n        os.waitpid(pid, 0)\n    else:\n        sys.exit(0)\n")
    code, samples = prof.run_profiled([sys.executable, str(script)], interval=0.002)
    assert code == 0 and samples.processes == 2


def test_an_existing_sitecustomize_still_runs(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    marker = tmp_path / "ran"
    (theirs / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('yes')\n")
    script = tmp_path / "s.py"
    script.write_text("print('hi')\n")
    env = dict(os.environ, PYTHONPATH=str(theirs))
    code, _ = prof.run_profiled([sys.executable, str(script)], env=env)
    assert code == 0 and marker.read_text() == "yes"


def test_a_sample_counts_once_for_each_loop_holding_one_of_its_frames():
    samples = prof.Samples(0.01, 1.0, 1, Counter({
        (("/p/m.py", 5), ("/p/m.py", 12)): 3,  # inner loop line 5, called from the outer loop at line 12
        (("/p/m.py", 12), ("/p/m.py", 13)): 1,  # two frames in the same loop: one sample
        (("/elsewhere.py", 5),): 7,
    }))
    inner = prof.LoopCost("/p/m.py", 4, 6, "f")
    outer = prof.LoopCost("/p/m.py", 11, 14, "g")
    ranked = prof.charge(samples, [inner, outer])
    assert [(c.function, c.samples) for c in ranked] == [("g", 4), ("f", 3)]


def test_only_files_under_the_roots_are_ranked(tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("x = 1\n")
    samples = prof.Samples(0.01, 1.0, 1, Counter({((str(mine), 1), (os.__file__, 10)): 1}))
    assert prof.python_files(samples, [str(tmp_path)]) == [os.path.realpath(mine)]


TRAIN = """import torch


def features(x: torch.Tensor) -> torch.Tensor:
    out = []
    for v in x:
        out.append(v * 2 + 1)
    return torch.stack(out)


if __name__ == "__main__":
    features(torch.randn(30000))
"""


@pytest.mark.slow
def test_profile_command_ranks_loops_and_applies_the_top_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(TRAIN)
    result = CliRunner().invoke(app, ["profile", "--apply-top", "1", "--", sys.executable, "train.py"])
    assert result.exit_code == 0, result.output
    assert "train.py:6 in features()  [elementwise] rewritten" in result.output
    assert "return x * 2 + 1" in (tmp_path / "train.py").read_text()
