"""Repository-scale runs: files loopvec cannot handle are reported, Ctrl-C stops cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopvec.cli import app

ROOT = Path(__file__).resolve().parent.parent

LOOP = """import torch


def double_{k}(x: torch.Tensor) -> torch.Tensor:
    out = []
    for v in x:
        out.append(v * 2)
    return torch.stack(out)
"""


def test_every_file_it_cannot_handle_is_reported_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.py").write_text(LOOP.format(k=0))
    (tmp_path / "broken.py").write_text("import torch\ndef f(:\n    for x in y: pass\n")
    (tmp_path / "latin.py").write_bytes(b"import torch\n# caf\xe9\nfor x in y: pass\n")
    deep = "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    (tmp_path / "deep.py").write_text("import torch\nfor v in range(3):\n    pass\n" + deep)
    result = CliRunner().invoke(app, ["scan", "--no-cache", "."])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert any(ln.startswith("broken.py: error: syntax error at line ") for ln in lines)
    assert any(ln.startswith("latin.py: error: not UTF-8") for ln in lines)
    assert any(ln.startswith("deep.py: error: ") for ln in lines)
    assert "ok.py:6:5 [elementwise]" in result.output
    assert "4 files" in lines[-1] and "3 errors" in lines[-1]


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_scan_with_one_line(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    filler = "".join(f"\ndef g{k}(x):\n    out = []\n    for v in x:\n        out.append(v + {k})\n"
                     f"    return torch.stack(out)\n" for k in range(40))
    for k in range(400):
        (tree / f"m{k}.py").write_text(LOOP.format(k=k) + filler)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # a terminal's Ctrl-C: SIGINT at its default even when this run inherited it ignored
    # (a shell starts background jobs that way, and Python then installs no handler)
    proc = subprocess.Popen([sys.executable, "-m", "loopvec.cli", "scan", "--no-cache", "--jobs", "2", str(tree)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3)
    if proc.poll() is not None:
        pytest.skip("the scan finished before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert text.strip().splitlines() == ["loopvec: interrupted; every file is either fully rewritten or unchanged"]
