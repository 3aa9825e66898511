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
the committed files' index entries, and commit hooks do not run. Each file's content goes
through git's clean filters for its path (`hash-object --path`), as `git add` would, so
`core.autocrlf` and `.gitattributes` give the blob a `git add` of the written file gives.

Whatever happens (Ctrl-C, SIGTERM, a git command that fails), the committed files' index
entries end up matching HEAD: the user's next commit never carries their old content back.
Ctrl-C and SIGTERM are held while a commit is made and take effect between two commits;
each commit is reported as soon as it is made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

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

    def commit(self, result, patterns: tuple[str, ...] = (), say: Callable[[str], None] | None = None) -> list[str]:
        """One commit per pattern of the rewritten findings; the lines to show the user, each
        also passed to `say` as soon as its commit is made (so an interrupted run still says
        what it committed)."""
        import codemods

        done = [f for f in result.findings if f.status == REWRITTEN]
        if not done:
            lines = ["loopvec: --commit: nothing was rewritten, nothing to commit"]
            if say:
                say(lines[0])
            return lines
        order = {name: k for k, name in enumerate(codemods.all_patterns())}
        by_pattern: dict[str, list[Finding]] = defaultdict(list)
        for f in done:
            by_pattern[f.pattern].append(f)
        steps = sorted(by_pattern, key=lambda p: (order.get(p, len(order)), p))
        lines: list[str] = []
        committed: dict[str, str] = {}  # display path -> the blob of its last commit
        touched: set[str] = set()  # the files of every commit begun (an interrupt may come before it is noted)
        start = _git(["rev-parse", "HEAD"], self.root).decode().strip()
        say = say or (lambda line: None)

        def stopped() -> None:
            if len(lines) < len(steps):
                say(f"loopvec: --commit stopped after {len(lines)} of {len(steps)} commits: the rewrites of "
                    f"{', '.join(steps[len(lines):])} are written but not committed")

        try:
            with _signals_held() as stop_asked, tempfile.TemporaryDirectory(prefix="loopvec-commit-") as tmp:
                env = {**os.environ, "GIT_INDEX_FILE": os.path.join(tmp, "index")}
                heads: dict[str, object] = {}  # display path -> decoded HEAD text
                keys_so_far: dict[str, set[str]] = defaultdict(set)
                for pattern in steps:
                    # Ctrl-C or SIGTERM came during the last commit: stop between two commits
                    if stop_asked():
                        break
                    findings = sorted(by_pattern[pattern], key=lambda f: (f.path, f.line))
                    blobs = self._blobs(findings, heads, keys_so_far, patterns)
                    touched |= set(blobs)
                    sha = self._commit_tree(env, pattern, findings, blobs)
                    committed.update(blobs)
                    line = f"loopvec: committed {sha[:10]} {_message(pattern, findings).splitlines()[0]}"
                    lines.append(line)
                    say(line)
                if len(lines) == len(steps):
                    self._check_written(committed)
        except BaseException:
            stopped()
            raise
        finally:
            self._sync_index(touched, start, say)
        stopped()  # a signal whose handler did not raise
        return lines

    def _blobs(self, findings: list[Finding], heads: dict, keys_so_far: dict[str, set[str]],
               patterns: tuple[str, ...]) -> dict[str, str]:
        """The blob of each file of `findings` with the rewrites so far, written to git's objects."""
        from .engine import apply_keys, decode, encode

        blobs = {}
        for path in dict.fromkeys(f.path for f in findings):
            rel = self._rel(path)
            if path not in heads:
                heads[path] = decode(path, _git(["show", f"HEAD:{rel}"], self.root))
            keys_so_far[path] |= {f.key for f in findings if f.path == path}
            head = heads[path]
            data = encode(type(head)(apply_keys(path, head.text, keys_so_far[path], patterns), head.bom))
            blobs[path] = _git(["hash-object", "-w", "--stdin", f"--path={rel}"], self.root, data).decode().strip()
        return blobs

    def _commit_tree(self, env: dict, pattern: str, findings: list[Finding], blobs: dict[str, str]) -> str:
        """Commit HEAD's tree with `blobs` in place, and move HEAD to it."""
        _git(["read-tree", "HEAD"], self.root, env=env)
        for path, blob in blobs.items():
            rel = self._rel(path)
            mode = _git(["ls-tree", "HEAD", "--", rel], self.root).split(b" ", 1)[0].decode() or "100644"
            _git(["update-index", "--add", "--cacheinfo", f"{mode},{blob},{rel}"], self.root, env=env)
        tree = _git(["write-tree"], self.root, env=env).decode().strip()
        parent = _git(["rev-parse", "HEAD"], self.root).decode().strip()
        message = _message(pattern, findings)
        sha = _git(["commit-tree", tree, "-p", parent, "-F", "-"], self.root, message.encode()).decode().strip()
        _git(["update-ref", "-m", f"loopvec: {pattern}", "HEAD", sha, parent], self.root)
        return sha

    def _check_written(self, committed: dict[str, str]) -> None:
        """What was committed last must be what was written, as `git add` would store it."""
        for path, blob in committed.items():
            with open(path, "rb") as fh:
                written = fh.read()
            if _git(["hash-object", "--stdin", f"--path={self._rel(path)}"], self.root, written).decode().strip() != blob:
                raise GitError(f"{path} differs from what was committed; check `git status`")

    def _sync_index(self, paths: set[str], start: str, say: Callable[[str], None]) -> None:
        """The committed files' entries in the user's index: HEAD's, so nothing stale is staged.
        Untouched when HEAD has not moved: the index is as the user left it."""
        if not paths:
            return
        rels = sorted(self._rel(p) for p in paths)
        with _signals_held():
            try:
                if _git(["rev-parse", "HEAD"], self.root).decode().strip() != start:
                    _git(["reset", "-q", "--", *rels], self.root)
            except GitError as exc:  # said, not raised: it must not hide why the commits stopped
                say(f"loopvec: error: the index still holds the old content of {', '.join(rels)} ({exc}); "
                    f"`git reset -q -- {' '.join(rels)}` makes it match HEAD")


@contextmanager
def _signals_held() -> Iterator[Callable[[], bool]]:
    """Hold Ctrl-C and SIGTERM while git moves HEAD and the index (a git command killed
    half-way, or a stop between the two, would leave them apart); they are delivered on the
    way out. Yields a test of whether one is waiting. Elsewhere than the main thread of a
    POSIX process, nothing is held."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield lambda: bool(held & signal.sigpending())
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _message(pattern: str, findings: list[Finding]) -> str:
    n = len(findings)
    subject = f"loopvec: {pattern}: vectorize {n} loop{'s' if n != 1 else ''}"
    body = []
    for f in findings:  # the message ends with the measured speedup, when there is one
        body.append(f"- {f.path}::{f.function or '?'} (line {f.line}): {f.message}")
    return subject + "\n\nVerified by loopvec on generated inputs.\n\n" + "\n".join(body) + "\n"
