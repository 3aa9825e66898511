"""Discovery: files and folders -> the `.py` files to look at.

Skips version-control folders, virtual environments, build output, what `.gitignore`
ignores (asked of git itself, so its rules are exact) and `[tool.loopvec] exclude` globs.
A file named explicitly on the command line is always taken, unless it is a symlink.
A symlink is followed only to a file inside the given paths (that file is then taken once);
one that leads out of them is skipped and said so, so a write never lands outside the tree.
File names are OS strings: bytes that are not UTF-8 are kept as surrogates (`os.fsdecode`).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path

SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", "node_modules",
             "build", "dist", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".eggs", ".hypothesis",
             ".loopvec_cache"}


def _is_venv(path: Path) -> bool:
    return (path / "pyvenv.cfg").exists() or (path / "conda-meta").is_dir()


def _excluded(path: Path, root: Path, globs: tuple[str, ...]) -> bool:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.as_posix()
    return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(path.name, g) or fnmatch.fnmatch(rel, g.rstrip("/") + "/*")
               for g in globs)


def _git_ignored(paths: list[Path], cwd: Path) -> set[Path]:
    """The subset of `paths` that git ignores (empty when not in a git work tree)."""
    if not paths:
        return set()
    try:
        # os.fsencode: a name that is not UTF-8 goes back to git as the bytes it is
        proc = subprocess.run(["git", "check-ignore", "--stdin", "-z"], cwd=cwd, capture_output=True,
                              input=b"\0".join(os.fsencode(p) for p in paths), timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    if proc.returncode not in (0, 1):
        return set()
    return {Path(os.fsdecode(p)) for p in proc.stdout.split(b"\0") if p}


OUTSIDE = "symlink to a file outside the given paths: left unchanged"


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def discover(paths: list[str], exclude: tuple[str, ...] = (), root: str | None = None,
             ) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(python files in a stable order, paths that do not exist, (path, why) of the files
    skipped). Files are resolved paths; each file is listed once, however many links lead to it."""
    base = Path(root or os.getcwd()).resolve()
    # the given folders, and the given files as named: a link out of these is not followed
    roots = [Path(raw).resolve() if Path(raw).is_dir() else Path(raw).absolute().parent.resolve() / Path(raw).name
             for raw in paths]
    found: list[Path] = []
    missing: list[str] = []
    skipped: dict[Path, str] = {}  # link -> as shown

    def take(named: Path, shown: str) -> Path | None:
        target = named.resolve()
        # x.py -> /elsewhere/y.py: rewriting it would change a file the user did not name
        if named.is_symlink() and not _inside(target, roots):
            skipped.setdefault(named.absolute(), shown)  # once, if also named or found twice
            return None
        return target

    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            if not os.path.lexists(p):
                missing.append(raw)
            elif (f := take(p, raw)) is not None:  # a FIFO or a device too: reading it says what it is
                found.append(f)
            continue
        walked: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(p):
            d = Path(dirpath)
            dirnames[:] = sorted(
                n for n in dirnames
                if n not in SKIP_DIRS and not n.endswith(".egg-info") and not _is_venv(d / n)
                and not _excluded((d / n).resolve(), base, exclude)
            )
            for name in sorted(filenames):
                if name.endswith(".py") and not _excluded((d / name).resolve(), base, exclude):
                    if (f := take(d / name, str(d / name))) is not None:
                        walked.append(f)
        ignored = _git_ignored(walked, p.resolve())
        found += [f for f in walked if f not in ignored]
    seen: dict[Path, None] = dict.fromkeys(found)
    return [str(f) for f in seen], missing, [(shown, OUTSIDE) for shown in skipped.values()]


def display_path(path: str) -> str:
    """Relative to the working directory when below it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:
        return path


def printable(text: str) -> str:
    """`text` with each byte of a file name that is not UTF-8 shown as `\\xNN`: it prints
    on any terminal and goes into JSON that every parser reads (a lone surrogate does neither)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
