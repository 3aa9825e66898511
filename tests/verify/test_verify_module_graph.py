"""Each candidate is proved with the module graph of its own file, and with the torch the
verifier imported: nothing one candidate's module loads or patches reaches the next
candidate, or the comparison itself."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loopvec.verify import Candidate, Impl, VerifySettings, verify_candidates

SETTINGS = VerifySettings(max_examples=15, timeout_s=20.0, workers=1)  # one worker takes every candidate

LOOP = """\
    import torch
    from utils import helper


    def f(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = helper(x[i])
        return out
    """


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _candidate(path: Path, body: str, key: str, qualname: str = "f") -> Candidate:
    source = f"def {qualname}(x: torch.Tensor) -> torch.Tensor:\n    {body}\n"
    return Candidate(
        reference=Impl(str(path), qualname),
        candidate=Impl(str(path), qualname, source=source, prelude="import torch"),
        key=key,
    )


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory) -> tuple[Path, Path]:
    """a/ and b/, each with its own `utils.helper` and the same loop calling it."""
    root = tmp_path_factory.mktemp("graph")
    a = _write(root / "a", "mod.py", LOOP)
    _write(root / "a", "utils.py", "def helper(x):\n    return x * 2\n")
    b = _write(root / "b", "mod.py", LOOP)
    _write(root / "b", "utils.py", "def helper(x):\n    return x + 1\n")
    return a, b


@pytest.fixture(scope="module")
def graph_verdicts(two_folders) -> dict:
    a, b = two_folders
    cands = [
        _candidate(a, "return x * 2", "a, right for a's helper"),
        _candidate(b, "return x * 2", "b, right only for a's helper"),
        _candidate(b, "return x + 1", "b, right for b's helper"),
        _candidate(a, "return x + 1", "a, right only for b's helper"),
    ]
    return {v.key: v for v in verify_candidates(cands, SETTINGS)}


@pytest.mark.parametrize("key", ["a, right for a's helper", "b, right for b's helper"])
def test_a_rewrite_is_proved_against_the_helper_of_its_own_folder(graph_verdicts, key):
    assert graph_verdicts[key].status == "verified", graph_verdicts[key].message


@pytest.mark.parametrize("key", ["b, right only for a's helper", "a, right only for b's helper"])
def test_a_helper_of_the_same_name_in_another_folder_does_not_stand_in(graph_verdicts, key):
    assert graph_verdicts[key].status == "failed", graph_verdicts[key].message


def test_a_folder_put_on_sys_path_by_one_candidate_is_gone_for_the_next(tmp_path):
    # a's module puts a folder with its own `utils` on sys.path; b, with no utils of its
    # own, must not import it
    extra = tmp_path / "extra"
    _write(extra, "utils.py", "def helper(x):\n    return x * 2\n")
    a = _write(tmp_path / "a", "mod.py", f"import sys\nsys.path.append({str(extra)!r})\n" + textwrap.dedent(LOOP))
    b = _write(tmp_path / "b", "mod.py", LOOP)
    cands = [_candidate(a, "return x * 2", "a"), _candidate(b, "return x * 2", "b")]
    a_verdict, b_verdict = verify_candidates(cands, SETTINGS)
    assert a_verdict.status == "verified", a_verdict.message
    assert b_verdict.status == "unverifiable"
    assert "ModuleNotFoundError: No module named 'utils'" in b_verdict.message


# ---------------------------------------------------------------------- torch patched by user code

LOOPS = """\
    import torch


    def doubles(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = x[i] * 2
        return out


    def doubles_ints(x: torch.Tensor) -> torch.Tensor:
        y = x.long()
        out = torch.empty_like(y)
        for i in range(y.shape[0]):
            out[i] = y[i] * 2
        return out


    def total(x: torch.Tensor) -> float:
        s = 0.0
        for i in range(x.shape[0]):
            s += float(x[i]) * 2
        return s


    def fill(x: torch.Tensor, res: torch.Tensor) -> None:
        for i in range(x.shape[0]):
            res[i] = x[i] * 2
    """

# the patch at the end of the module, the function it blinds the comparison of, and
# the body of a rewrite that is wrong for it
PATCHES = {
    "torch.isclose": (
        "torch.isclose = lambda *a, **k: torch.ones(a[0].shape, dtype=torch.bool)",
        "doubles", "return x + 1",
    ),
    "Tensor.__eq__": (
        "torch.Tensor.__eq__ = lambda self, other: torch.ones(self.shape, dtype=torch.bool)",
        "doubles_ints", "return x.long() + 1",
    ),
    "Tensor.__invert__": (
        "torch.Tensor.__invert__ = lambda self: torch.zeros(self.shape, dtype=torch.bool)",
        "doubles", "return x + 1",
    ),
    "Tensor.nonzero": (
        "torch.Tensor.nonzero = lambda self, **k: torch.zeros((0, self.dim()), dtype=torch.long)",
        "doubles", "return x + 1",
    ),
    "Tensor.detach": ("torch.Tensor.detach = lambda self: torch.zeros(())", "doubles", "return x + 1"),
    "math.isclose": ("import math\nmath.isclose = lambda *a, **k: True", "total", "return float((x + 1).sum())"),
    "copy.deepcopy": ("import copy\ncopy.deepcopy = lambda x, memo=None: x", "fill", "res.copy_(x + 1)"),
}
ONE_DIM = (("x", "[n]"), ("res", "[n]"))


def _patched(folder: Path, patch: str) -> Path:
    return _write(folder, "mod.py", textwrap.dedent(LOOPS) + "\n" + patch + "\n")


def _rewrite_of(path: Path, qualname: str, body: str, key: str) -> Candidate:
    params = "x: torch.Tensor, res: torch.Tensor" if qualname == "fill" else "x: torch.Tensor"
    source = f"def {qualname}({params}):\n    {body}\n"
    return Candidate(
        reference=Impl(str(path), qualname),
        candidate=Impl(str(path), qualname, source=source, prelude="import torch"),
        hints=ONE_DIM if qualname == "fill" else ONE_DIM[:1],
        key=key,
    )


@pytest.fixture(scope="module")
def patched_verdicts(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("patched")
    cands = []
    for k, (name, (patch, qualname, body)) in enumerate(PATCHES.items()):
        cands.append(_rewrite_of(_patched(root / f"p{k}", patch), qualname, body, name))
    # a module that breaks torch.add, which its loop does not call...
    adds = _patched(root / "adds", "torch.add = lambda a, b, **k: a")
    cands.append(_rewrite_of(adds, "doubles", "return x + 1", "breaks torch.add"))
    # ...and after every patching module, a module that patches nothing, whose wrong
    # rewrites and right ones must keep their verdicts (one right rewrite calls torch.add)
    plain = _patched(root / "plain", "")
    for qualname, wrong, right in [
        ("doubles", "return x + 1", "return torch.add(x, x)"),
        ("doubles_ints", "return x.long() + 1", "return x.long() * 2"),
        ("total", "return float((x + 1).sum())", "return float((x * 2).sum())"),
        ("fill", "res.copy_(x + 1)", "res.copy_(x * 2)"),
    ]:
        cands.append(_rewrite_of(plain, qualname, wrong, f"{qualname}: wrong, after the patches"))
        cands.append(_rewrite_of(plain, qualname, right, f"{qualname}: right, after the patches"))
    return {v.key: v for v in verify_candidates(cands, SETTINGS)}


@pytest.mark.parametrize("patch", list(PATCHES))
def test_a_module_that_patches_torch_does_not_blind_the_comparison(patched_verdicts, patch):
    v = patched_verdicts[patch]
    assert v.status == "failed", v.message


@pytest.mark.parametrize("qualname", ["doubles", "doubles_ints", "total", "fill"])
def test_a_patch_does_not_outlive_its_candidate(patched_verdicts, qualname):
    wrong = patched_verdicts[f"{qualname}: wrong, after the patches"]
    right = patched_verdicts[f"{qualname}: right, after the patches"]
    assert wrong.status == "failed", wrong.message
    assert right.status == "verified", right.message


def test_an_original_and_a_rewrite_from_two_folders_each_see_their_own_modules(two_folders):
    # `loopvec verify a/mod.py::f b/mod.py::f`: the same loop, over two different helpers
    a, b = two_folders
    across = Candidate(reference=Impl(str(a), "f"), candidate=Impl(str(b), "f"), key="across")
    (verdict,) = verify_candidates([across], SETTINGS)
    assert verdict.status == "failed", verdict.message
