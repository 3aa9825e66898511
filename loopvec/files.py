"""Discovery: files and folders -> the `.py` files to look at.

Skips version-control folders, virtual environments, build output, what `.gitignore`
ignores (asked of git itself, so its rules are exact) and `[tool.loopvec] exclude` globs.
A file named explicitly on the command line is always taken.
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
        proc = subprocess.run(["git", "check-ignore", "--stdin", "-z"], cwd=cwd, capture_output=True,
                              input=b"\0".join(str(p).encode() for p in paths), timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    if proc.returncode not in (0, 1):
        return set()
    return {Path(p.decode()) for p in proc.stdout.split(b"\0") if p}


def discover(paths: list[str], exclude: tuple[str, ...] = (), root: str | None = None) -> tuple[list[str], list[str]]:
    """(python files in a stable order, paths that do not exist)."""
    base = Path(root or os.getcwd()).resolve()
    found: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            found.append(p.resolve())
            continue
        if not p.is_dir():
            missing.append(raw)
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
                if name.endswith(".py"):
                    f = (d / name).resolve()
                    if not _excluded(f, base, exclude):
                        walked.append(f)
        ignored = _git_ignored(walked, p.resolve())
        found += [f for f in walked if f not in ignored]
    seen: dict[Path, None] = dict.fromkeys(found)
    return [str(f) for f in seen], missing


def display_path(path: str) -> str:
    """Relative to the working directory when below it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:
        return path
