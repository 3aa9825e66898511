"""Shared by the verifier's tests: the case modules and a way to state a rewrite."""

from __future__ import annotations

import fcntl
import pickle
import textwrap
from pathlib import Path

import pytest

from loopvec.verify import Candidate, Impl, verify_candidates

CASES = Path(__file__).resolve().parent / "cases"


def _rewrite(module: str, qualname: str, source: str, key: str | None = None, hints=(), prelude="import torch") -> Candidate:
    """A candidate: `qualname` of cases/`module` as it is, against the rewritten `source`."""
    path = str(CASES / module)
    return Candidate(
        reference=Impl(path, qualname),
        candidate=Impl(path, qualname, source=textwrap.dedent(source), prelude=prelude),
        hints=tuple(hints),
        key=key or qualname,
    )


@pytest.fixture(scope="session")
def rewrite():
    return _rewrite


@pytest.fixture(scope="session")
def cases() -> Path:
    return CASES


@pytest.fixture(scope="session")
def batch(tmp_path_factory, worker_id):
    """`batch(name, candidates, settings)` -> {key: verdict}, computed once per test run.

    Each module verifies its candidates as one batch; under xdist both processes would
    otherwise run every batch that their tests share. The first to ask computes it, the
    other waits on a lock and reads the result.
    """
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # shared by the xdist processes of this run

    def get(name: str, cands: list[Candidate], settings) -> dict:
        result = root / f"verdicts-{name}.pickle"
        with open(root / f"verdicts-{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not result.exists():
                verdicts = {v.key: v for v in verify_candidates(cands, settings)}
                result.write_bytes(pickle.dumps(verdicts))
            return pickle.loads(result.read_bytes())

    return get
