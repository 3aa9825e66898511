"""`loopvec verify A.py::f B.py::g`: the oracle as a standalone check."""

import pytest
from typer.testing import CliRunner

from loopvec.cli import app

LOOP = """import torch


def f(x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    for i in range(len(x)):
        out[i] = x[i] * 2 + 1
    return out
"""
GOOD = "import torch\n\n\ndef g(x: torch.Tensor) -> torch.Tensor:\n    return x * 2 + 1\n"
BAD = "import torch\n\n\ndef g(x: torch.Tensor) -> torch.Tensor:\n    return x * 2 + 1.5\n"


@pytest.mark.slow
def test_agreeing_implementations_exit_zero(tmp_path):
    (tmp_path / "a.py").write_text(LOOP)
    (tmp_path / "b.py").write_text(GOOD)
    result = CliRunner().invoke(app, ["verify", f"{tmp_path}/a.py::f", f"{tmp_path}/b.py::g", "--max-examples", "20"])
    assert result.exit_code == 0, result.output
    assert "verified" in result.output


@pytest.mark.slow
def test_disagreeing_implementations_show_a_counterexample(tmp_path):
    (tmp_path / "a.py").write_text(LOOP)
    (tmp_path / "b.py").write_text(BAD)
    result = CliRunner().invoke(app, ["verify", f"{tmp_path}/a.py::f", f"{tmp_path}/b.py::g", "--max-examples", "20"])
    assert result.exit_code == 1, result.output
    assert "failed" in result.output


def test_malformed_target_is_an_error(tmp_path):
    result = CliRunner().invoke(app, ["verify", "nofile.py", "other.py::g"])
    assert result.exit_code == 2
