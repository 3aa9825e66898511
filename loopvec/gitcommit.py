"""`loopvec apply --commit`: commit the verified rewrites, one commit per pattern.

Before anything is written, every file the run would change must be committed as it is
(no staged or unstaged edits, tracked by git): otherwise a commit would mix the user's
edits with loopvec's, so the run stops and writes nothing. After the writes, each
pattern's commit holds exactly that pattern's rewrites on top of the previous commit:
its file contents are rebuilt from HEAD by re-applying the rewrites of the patterns so
far (`engine.apply_keys`), and the last one must equal what was written. Only findings
whose status is `rewritten` -- verified, and through the speed gate -- are committed.

Commits are made with git's plumbing on a private index (`read-tree`, `update-index`,
`commit-tree`, `update-ref`), so the user's index and working tree are not touched beyond
the committed files' index entries, and commit hooks do not run.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .results import REWRITTEN, Finding


class GitError(Exception):
    """A one-line reason the commit step cannot go on."""


def _git(args: list[str], cwd: str, data: bytes | None = None, env: dict | None = None) -> bytes:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, env=env, timeout=120)
    except FileNotFoundError:
        raise GitError("--commit needs git, and git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"`git {args[0]}` did not finish") from None
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"`git {' '.join(args[:2])}` failed: {message[-1] if message else proc.returncode}")
    return proc.stdout


@dataclass
class Committer:
    root: str  # the repository's top level
    cwd: str

    @classmethod
    def for_paths(cls, paths: list[str]) -> Committer:
        cwd = os.getcwd()
        start = Path(paths[0]) if paths else Path(cwd)
        folder = start if start.is_dir() else start.parent
        try:
            root = _git(["rev-parse", "--show-toplevel"], str(folder or ".")).decode().strip()
        except GitError:
            raise GitError(f"--commit needs a git repository, and {folder or '.'} is not in one") from None
        try:
            _git(["rev-parse", "--verify", "-q", "HEAD"], root)
        except GitError:
            raise GitError("--commit needs a first commit to build on; this repository has none") from None
        return cls(root, cwd)

    # ------------------------------------------------------------------ before writing

    def _rel(self, path: str) -> str:
        full = Path(self.cwd, path).resolve()
        try:
            return full.relative_to(Path(self.root).resolve()).as_posix()
        except ValueError:
            raise GitError(f"{path} is outside the repository at {self.root}") from None

    def check_clean(self, paths: tuple[str, ...]) -> None:
        """Raise unless every file in `paths` is tracked and unchanged since HEAD."""
        if not paths:
            return
        rels = [self._rel(p) for p in paths]
        out = _git(["status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *rels], self.root)
        dirty = [entry[3:].decode(errors="replace") for entry in out.split(b"\0") if len(entry) > 3]
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            raise GitError(f"--commit: {shown} has uncommitted edits or is not tracked; commit or stash first "
                           f"(nothing was written)")

    # ------------------------------------------------------------------ after writing

    def commit(self, result, patterns: tuple[str, ...] = ()) -> list[str]:
        """One commit per pattern of the rewritten findings; the lines to show the user."""
        import codemods

        from .engine import apply_keys, decode, encode

        done = [f for f in result.findings if f.status == REWRITTEN]
        if not done:
            return ["loopvec: --commit: nothing was rewritten, nothing to commit"]
        order = {name: k for k, name in enumerate(codemods.all_patterns())}
        by_pattern: dict[str, list[Finding]] = defaultdict(list)
        for f in done:
            by_pattern[f.pattern].append(f)
        heads: dict[str, object] = {}  # display path -> decoded HEAD text
        keys_so_far: dict[str, set[str]] = defaultdict(set)
        lines = []
        with tempfile.TemporaryDirectory(prefix="loopvec-commit-") as tmp:
            env = {**os.environ, "GIT_INDEX_FILE": os.path.join(tmp, "index")}
            for pattern in sorted(by_pattern, key=lambda p: (order.get(p, len(order)), p)):
                findings = sorted(by_pattern[pattern], key=lambda f: (f.path, f.line))
                _git(["read-tree", "HEAD"], self.root, env=env)
                for path in dict.fromkeys(f.path for f in findings):
                    rel = self._rel(path)
                    if path not in heads:
                        heads[path] = decode(path, _git(["show", f"HEAD:{rel}"], self.root))
                    keys_so_far[path] |= {f.key for f in findings if f.path == path}
                    head = heads[path]
                    text = apply_keys(path, head.text, keys_so_far[path], patterns)
                    data = encode(type(head)(text, head.bom))
                    blob = _git(["hash-object", "-w", "--stdin"], self.root, data).decode().strip()
                    mode = _git(["ls-tree", "HEAD", "--", rel], self.root).split(b" ", 1)[0].decode() or "100644"
                    _git(["update-index", "--add", "--cacheinfo", f"{mode},{blob},{rel}"], self.root, env=env)
                tree = _git(["write-tree"], self.root, env=env).decode().strip()
                parent = _git(["rev-parse", "HEAD"], self.root).decode().strip()
                message = _message(pattern, findings)
                sha = _git(["commit-tree", tree, "-p", parent, "-F", "-"], self.root, message.encode()).decode().strip()
                _git(["update-ref", "-m", f"loopvec: {pattern}", "HEAD", sha, parent], self.root)
                lines.append(f"loopvec: committed {sha[:10]} {message.splitlines()[0]}")
        # what was committed must be exactly what was written
        for path, keys in keys_so_far.items():
            with open(path, "rb") as fh:
                written = fh.read()
            head = heads[path]
            if written != encode(type(head)(apply_keys(path, head.text, keys, patterns), head.bom)):
                raise GitError(f"{path} differs from what was committed; check `git status`")
        _git(["reset", "-q", "--", *(self._rel(p) for p in keys_so_far)], self.root)
        return lines


def _message(pattern: str, findings: list[Finding]) -> str:
    n = len(findings)
    subject = f"loopvec: {pattern}: vectorize {n} loop{'s' if n != 1 else ''}"
    body = []
    for f in findings:  # the message ends with the measured speedup, when there is one
        body.append(f"- {f.path}::{f.function or '?'} (line {f.line}): {f.message}")
    return subject + "\n\nVerified by loopvec on generated inputs.\n\n" + "\n".join(body) + "\n"
