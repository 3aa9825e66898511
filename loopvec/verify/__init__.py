"""Prove a rewrite on data: run the original and the rewrite side by side and compare.

`verify_candidates` is the one entry point: the engine passes its batch of candidates,
`loopvec verify A.py::f B.py::g` passes two plain implementations. Checks run in worker
subprocesses (`sandbox`); this module imports neither torch nor hypothesis.
"""

from __future__ import annotations

from typing import Sequence

from .types import Candidate, Impl, Verdict, VerifySettings

__all__ = ["Candidate", "Impl", "Verdict", "VerifySettings", "parse_target", "verify_candidates"]


def verify_candidates(cands: Sequence[Candidate], settings: VerifySettings = VerifySettings()) -> list[Verdict]:
    """One verdict per candidate, in order, each with `key` set to the candidate's key.

    Problems in user code (import errors, crashes, hangs, sys.exit) become verdicts;
    this never raises for them.
    """
    if not cands:
        return []
    from .sandbox import run_batch

    return run_batch(list(cands), settings)


def parse_target(text: str) -> Impl:
    """`"path/to/a.py::f"` or `"a.py::Cls.method"` -> Impl."""
    path, sep, qualname = text.rpartition("::")
    if not sep or not path or not qualname:
        raise ValueError(f"expected FILE.py::NAME, got {text!r}")
    return Impl(path=path, qualname=qualname)
