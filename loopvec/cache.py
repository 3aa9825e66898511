"""The on-disk cache under `.loopvec_cache/` (in the config root, else the working directory).

Plans: one entry per file, keyed by the file's text and path, the selected patterns,
`--show-declined`, and a fingerprint of loopvec itself (its version and the size and
modification time of every module of `loopvec` and `codemods`, so editing a pattern
invalidates everything). A second `scan` of an unchanged tree reads plans instead of
parsing.

Verdicts: keyed by everything a verdict depends on that loopvec can see: both sides'
source (the rewritten function, its prelude), the hints, the observed inputs
(`loopvec record`), the verifier settings, the
fingerprint, the Python and torch versions, and the text of *every* file of the run
(a rewrite may call a helper in a sibling module). A change anywhere in the tree, or to
loopvec, re-verifies everything. Code outside the tree other than torch (an installed
helper package) is not in the key: `--no-cache` re-verifies after such a change.

Observed inputs: what `loopvec record` saw of each function (`observed_entry`).

Entries are pickles written atomically; an entry that cannot be read, or is not of the
shape this version writes (another version's, or one edited by hand), is a miss, and a
cache that cannot be written is skipped silently (it only saves time).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from dataclasses import astuple, fields, is_dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from . import __version__

FOLDER = ".loopvec_cache"
_FORMAT = 1  # bump when the layout of an entry changes
_TRANSIENT = ("timed out", "time limit", "worker failed to start", "worker crashed", "not checked",
              "verifier error")


def cache_dir(root: str | None) -> str:
    return str(Path(root or os.getcwd()) / FOLDER)


@lru_cache(maxsize=1)
def fingerprint() -> str:
    """loopvec's version and the stat of each of its modules and patterns."""
    h = hashlib.sha256(f"{_FORMAT}:{__version__}:{sys.version}".encode())
    here = Path(__file__).resolve().parent
    import codemods

    for package in (here, Path(codemods.__file__).resolve().parent):
        for path in sorted(package.rglob("*.py")):
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"{path.relative_to(package.parent)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _key(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else repr(part).encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _entry(folder: str, kind: str, key: str) -> Path:
    return Path(folder) / kind / key[:2] / f"{key}.pickle"


def _load(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception:  # missing, truncated, or written by another version: a miss
        return None


def _store(path: Path, value: Any) -> None:
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            top = path.parent.parent.parent / ".gitignore"
            if not top.exists():  # like .pytest_cache: never shows up in `git status`
                top.write_text("# created by loopvec\n*\n")
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError:
        pass  # read-only folder, full disk: run without the cache


# --------------------------------------------------------------------------- plans


def plan_key(path: str, text: str, patterns: tuple[str, ...], show_declined: bool) -> str:
    return _key("plan", fingerprint(), path, tuple(sorted(patterns)), show_declined, text_hash(text))


def _whole(value: Any, cls: type) -> bool:
    """`value` is a `cls` with every field set, and so is each dataclass it holds, down to
    the items of its tuples: a pickle of an older version of a class lacks the fields
    added since, and would fail far from here, when one is read."""
    if not isinstance(value, cls):
        return False
    if not is_dataclass(value):
        return True
    for f in fields(value):
        if f.name not in vars(value):  # the class default would hide it from getattr
            return False
        inner = vars(value)[f.name]
        items = inner if isinstance(inner, tuple) else (inner,)
        if not all(_whole(item, type(item)) for item in items if is_dataclass(item)):
            return False
    return True


def _plan_entry(entry: Any) -> bool:
    """An entry `store_plan` writes: ("plan", planned, declined, loops, lines) or ("result", FileResult)."""
    from .engine import Planned
    from .results import FileResult, Finding

    # a valid pickle of a dict, a tuple of another length, None: written by another version or by hand
    if not isinstance(entry, tuple) or not entry:
        return False
    if entry[0] == "result":
        return len(entry) == 2 and _whole(entry[1], FileResult)
    if entry[0] != "plan" or len(entry) != 5:
        return False
    _, planned, declined, loops, lines = entry
    return (isinstance(planned, tuple) and all(_whole(p, Planned) for p in planned)
            and isinstance(declined, tuple) and all(_whole(f, Finding) for f in declined)
            and type(loops) is int and type(lines) is int)


def load_plan(folder: str, path: str, text: str, patterns: tuple[str, ...], show_declined: bool):
    """The cached `FilePlan` or `FileResult` (an error) for this text, or None (also for an
    entry of any other shape)."""
    from .engine import FilePlan

    entry = _load(_entry(folder, "plans", plan_key(path, text, patterns, show_declined)))
    if not _plan_entry(entry):
        return None
    if entry[0] == "result":
        return entry[1]
    _, planned, declined, loops, lines = entry
    return FilePlan(path, text, planned, declined, loops, lines)


def store_plan(folder: str, path: str, text: str, patterns: tuple[str, ...], show_declined: bool, result) -> None:
    from .engine import FilePlan

    if isinstance(result, FilePlan):
        value = ("plan", result.planned, result.declined, result.loops, result.lines)  # the text is on disk
    else:
        value = ("result", result)
    _store(_entry(folder, "plans", plan_key(path, text, patterns, show_declined)), value)


# --------------------------------------------------------------------------- verdicts


def tree_hash(texts: Iterable[tuple[str, str]]) -> str:
    """One hash of every (path, text) of the run."""
    return _key("tree", *sorted((p, text_hash(t)) for p, t in texts))


@lru_cache(maxsize=1)
def _torch_version() -> str:
    # read from the installed metadata: importing torch here would cost seconds
    try:
        from importlib.metadata import version

        return version("torch")
    except Exception:
        return "?"


class Verdicts:
    """Verdicts of earlier runs over the same tree with the same settings."""

    def __init__(self, folder: str, tree: str, settings: Any) -> None:
        self.folder = folder
        self.base = (fingerprint(), _torch_version(), tree, astuple(replace(settings, workers=1)))

    def _key(self, cand: Any) -> str:
        return _key("verdict", *self.base, cand.reference, cand.candidate, cand.hints,
                    observed_hash(getattr(cand, "observed", None)))

    def get(self, cand: Any):
        from .verify.types import Verdict

        found = _load(_entry(self.folder, "verdicts", self._key(cand)))
        return replace(found, key=cand.key) if _whole(found, Verdict) else None

    def put(self, cand: Any, verdict: Any) -> None:
        # a verdict that depends on the machine's load or health is asked again next time
        if any(word in verdict.message for word in _TRANSIENT):
            return
        _store(_entry(self.folder, "verdicts", self._key(cand)), replace(verdict, key=""))


# --------------------------------------------------------------------------- observed inputs


def observed_entry(folder: str, path: str, qualname: str) -> Path:
    """Where `loopvec record` keeps what it saw of one function (`observed.Record`); its
    samples lie beside it, named `<entry stem>-<hash>.pt`. Keyed by the file's resolved
    path and the function's qualified name only: a rewrite or an edit of the function
    keeps what was observed of its callers' values."""
    return _entry(folder, "observed", _key("observed", str(Path(path).resolve()), qualname))


def store_observed(entry: Path, record: Any) -> None:
    _store(entry, record)


def observed_hash(entry: str | None) -> str | None:
    """A hash of a stored record (it names its samples by their hash): part of a
    verdict's key, so a new recording re-verifies."""
    if not entry:
        return None
    try:
        return hashlib.sha256(Path(entry).read_bytes()).hexdigest()
    except OSError:
        return None
