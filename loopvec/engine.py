"""Per-file work: read, prefilter, parse, build the loop IR, match patterns, render rewrites.

Everything here is pure: it takes source text and returns frozen, picklable plans, so it
runs in a process pool. CST nodes never leave this module; a plan carries the rewritten
function's source for the verifier and a key to re-apply the same rewrite later.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import libcst as cst

import codemods
from . import prefilter
from .analysis.loops import Loop, find_loops
from .analysis.module import ModuleInfo
from .edits import EditError, apply_edits, function_source, lost_comments
from .results import CANDIDATE, DECLINED, Finding
from .guards import length_tier
from .rewrite import Decline, PatternContext, Rewrite
from .verify.types import Impl


class SourceError(Exception):
    """A file loopvec cannot read or parse; the message is one line."""


@dataclass(frozen=True)
class Planned:
    key: str
    path: str
    qualname: str | None
    line: int
    column: int
    end_line: int
    pattern: str
    message: str
    safety: str
    assumptions: tuple[str, ...]
    function_source: str | None  # the rewritten def, for the verifier
    prelude: str
    diff: str
    unverifiable: str | None = None  # why it cannot be verified at all
    # the next pattern's rewrite of the same loop, verified when this one is not
    alternative: Planned | None = None
    # the reach probe's targets: lines of `function_source` holding the rewritten code
    span: tuple[int, ...] = ()

    def impls(self) -> tuple[Impl, Impl]:
        """The verifier's two sides of this rewrite, with the reach probe's targets: the
        loop in the original, the rewritten lines in the rewrite."""
        path = str(Path(self.path).resolve())
        return (Impl(path, self.qualname, loop=(self.line, self.column)),
                Impl(path, self.qualname, self.function_source, self.prelude, span=self.span))


@dataclass(frozen=True)
class FilePlan:
    path: str
    source: str
    planned: tuple[Planned, ...]
    declined: tuple[Finding, ...]
    loops: int
    lines: int


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Text:
    text: str
    bom: bool


def decode(path: str, data: bytes) -> Text:
    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        text = data[3:].decode("utf-8") if bom else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 (byte {exc.start}): left unchanged") from None
    return Text(text, bom)


def encode(text: Text) -> bytes:
    return (b"\xef\xbb\xbf" if text.bom else b"") + text.text.encode("utf-8")


# the largest source file read: a generated 10 MB module is still planned; a file that
# never ends (a link to /dev/zero) or a data dump named .py is not read into memory
MAX_FILE_BYTES = 16 * 2**20

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _not_regular(mode: int) -> SourceError:
    kind = next((name for test, name in _KINDS if test(mode)), "of an unknown kind")
    return SourceError(f"not a regular file ({kind}): skipped")


def read_bytes(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes; a one-line `SourceError` for what is not a regular file of at most
    `limit` bytes (it is never opened, or read no further than `limit`)."""
    try:
        mode = os.stat(path).st_mode
        # a FIFO would block the run on open, a device never ends: neither is source
        if not stat.S_ISREG(mode):
            raise _not_regular(mode)
        # O_NONBLOCK: a file swapped for a FIFO since the stat does not block the open either
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise _not_regular(mode)
            data = fh.read(limit + 1)
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror}") from None
    # more than `limit`: not read further, so a huge or endless file costs `limit` bytes
    if len(data) > limit:
        raise SourceError(f"larger than {limit / 2**20:g} MB, the most loopvec reads: left unchanged")
    return data


def read(path: str, limit: int = MAX_FILE_BYTES) -> Text:
    return decode(path, read_bytes(path, limit))


def may_hold_candidates(source: str) -> bool:
    """Cheap text test: no `for` or no torch means no loop over tensors to rewrite."""
    return "for " in source and "torch" in source


def parse(path: str, source: str) -> ModuleInfo:
    try:
        return ModuleInfo.parse(path, source)
    except cst.ParserSyntaxError as exc:
        raise SourceError(f"syntax error at line {exc.raw_line}, column {exc.raw_column}: left unchanged") from None
    except RecursionError:
        raise SourceError("too deeply nested to parse: left unchanged") from None


# --------------------------------------------------------------------------- matching


def _key(path: str, loop: Loop, pattern: str) -> str:
    return f"{path}:{loop.line}:{loop.column}:{pattern}"


def _inside(inner: Loop, outer: Loop) -> bool:
    return (outer.line, outer.column) <= (inner.line, inner.column) and inner.end_line <= outer.end_line \
        and inner is not outer


def match_loops(info: ModuleInfo, patterns: list, loops: list[Loop] | None = None,
                ) -> tuple[list[Loop], list[Rewrite], dict[int, list[Decline]]]:
    """For each loop, the first pattern that rewrites it; outer loops win over inner ones."""
    ctx = PatternContext.for_module(info)
    loops = find_loops(info) if loops is None else loops
    rewrites: list[Rewrite] = []
    declines: dict[int, list[Decline]] = {}
    for loop in loops:
        if any(_inside(loop, r.loop) for r in rewrites):
            continue
        if loop.skip:
            declines[id(loop)] = [Decline("-", "suppressed by `# loopvec: skip`")]
            continue
        if loop.function is None:
            declines[id(loop)] = [Decline("-", "module-level loop: loopvec rewrites loops inside functions")]
            continue
        reasons = []
        for pattern in patterns:
            result = pattern.match(loop, ctx)
            if isinstance(result, Rewrite):
                rewrites.append(length_tier(result, info))
                break
            reasons.append(result)
        else:
            declines[id(loop)] = reasons
    return loops, rewrites, declines


def render(info: ModuleInfo, rewrites: list[Rewrite]) -> str:
    """The module's new source with these rewrites applied (imports added once)."""
    edits = [e for r in rewrites for e in r.edits]
    module = apply_edits(info.module, edits)
    imports = [line for r in rewrites for line in r.imports]
    for line in dict.fromkeys(imports):
        module = _add_import(module, line)
    if info.local_text().endswith("\r") and not module.has_trailing_newline:
        # libcst takes a file ending in a lone \r (old-Mac newlines) for one without a final
        # newline, and drops it when it renders: the file's last line would lose its ending
        module = module.with_changes(has_trailing_newline=True)
    return module.code


def _add_import(module: cst.Module, line: str) -> cst.Module:
    stmt = cst.parse_statement(line + "\n")
    body = list(module.body)
    # after the docstring and `from __future__` imports
    k = 0
    while k < len(body) and _is_header(body[k]):
        k += 1
    body.insert(k, stmt)
    return module.with_changes(body=body)


def _is_header(stmt: cst.BaseStatement) -> bool:
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    small = stmt.body[0]
    if isinstance(small, cst.Expr) and isinstance(small.value, (cst.SimpleString, cst.ConcatenatedString)):
        return True
    return isinstance(small, cst.ImportFrom) and small.module is not None and \
        getattr(small.module, "value", "") == "__future__"


DIFF_CONTEXT = 3  # lines of context around each change (difflib's and git's default)
_HUNK = re.compile(r"@@ -(\d+)(\S*) \+(\d+)(\S*) @@")


def unified_diff(path: str, old: str, new: str, header: str = "") -> str:
    """The diff of two texts, split into lines where the tokenizer splits them (\\n,
    \\r\\n, \\r): a form feed inside a line does not shift the hunks' line numbers."""
    return _diff_lines(path, prefilter.split_lines(old), prefilter.split_lines(new), 0, header)


def _diff_lines(path: str, old: list[str], new: list[str], offset: int, header: str = "") -> str:
    """The diff of two runs of lines that start at line `offset + 1` of their files."""
    out = []
    for line in difflib.unified_diff(old, new, f"a/{path}", f"b/{path}", n=DIFF_CONTEXT):
        if offset and line.startswith("@@"):
            m = _HUNK.match(line)
            line = f"@@ -{int(m[1]) + offset}{m[2]} +{int(m[3]) + offset}{m[4]} @@\n"
        out.append(line if line.endswith("\n") else line + "\n")
    text = "".join(out)
    return (header + text) if text else ""


def _plan_diff(path: str, info: ModuleInfo, new_source: str) -> str:
    """The whole file's diff for one rewrite. A chunk's is computed on the chunk's lines
    and their context only: diffing the whole file for each candidate made planning a
    large generated file quadratic in its size."""
    if not isinstance(info, prefilter.ChunkInfo):
        return unified_diff(path, info.source, new_source)
    offset, old, new = info.window(new_source, DIFF_CONTEXT)
    return _diff_lines(path, old, new, offset)


# --------------------------------------------------------------------------- plans


def plan_source(path: str, source: str, pattern_names: tuple[str, ...] = (), show_declined: bool = False) -> FilePlan:
    lines = source.count("\n") + 1
    if not may_hold_candidates(source):
        return FilePlan(path, source, (), (), 0, lines)
    # listing every declined loop needs the whole file parsed
    chunked = prefilter.plan_chunks(path, source, pattern_names, whole=show_declined)
    if chunked is not None:
        return chunked
    info = parse(path, source)
    patterns = codemods.select(pattern_names)
    loops, rewrites, declines = match_loops(info, patterns)
    planned = []
    for rw in rewrites:
        planned.append(plan_rewrite(path, info, patterns, rw))
    declined = []
    if show_declined:
        for loop in loops:
            reasons = declines.get(id(loop))
            if not reasons:
                continue
            message = "; ".join(f"{d.pattern}: {d.reason}" if d.pattern != "-" else d.reason for d in reasons)
            declined.append(Finding(path, loop.line, loop.column, loop.end_line, loop.qualname, None,
                                    DECLINED, message))
    return FilePlan(path, source, tuple(planned), tuple(declined), len(loops), lines)


def _first_line(exc: Exception) -> str:
    """Reports keep one line per finding; libcst's syntax errors span several."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def alternative(info: ModuleInfo, patterns: list, rw: Rewrite) -> Rewrite | None:
    """The rewrite of the same loop by the first pattern after `rw`'s that has one (vmap
    after a lifting pattern whose rewrite the verifier refuted), or None."""
    names = [p.NAME for p in patterns]
    if rw.pattern not in names:
        return None
    ctx = PatternContext.for_module(info)
    for pattern in patterns[names.index(rw.pattern) + 1:]:
        result = pattern.match(rw.loop, ctx)
        if isinstance(result, Rewrite):
            return length_tier(result, info)
    return None


def plan_rewrite(path: str, info: ModuleInfo, patterns: list, rw: Rewrite) -> Planned:
    """`rw` as a `Planned`, with its alternative (see `alternative`) when there is one."""
    planned = _plan_one(path, info, rw)
    alt = alternative(info, patterns, rw)
    if alt is not None and alt.imports and isinstance(info, prefilter.ChunkInfo):
        alt = None  # its import would land inside the chunk (the whole-file parse plans it)
    if alt is not None:
        other = _plan_one(path, info, alt)
        if other.unverifiable is None:
            planned = replace(planned, alternative=other)
    return planned


def _plan_one(path: str, info: ModuleInfo, rw: Rewrite) -> Planned:
    loop = rw.loop
    key = _key(path, loop, rw.pattern)
    try:
        new_source = render(info, [rw])
        new_module = cst.parse_module(new_source)
    except (EditError, cst.ParserSyntaxError) as exc:  # a pattern produced bad code: never write it
        return Planned(key, path, loop.qualname, loop.line, loop.column, loop.end_line, rw.pattern,
                       rw.message, rw.safety, rw.assumptions, None, "", "",
                       unverifiable=f"internal: the rewrite does not render ({_first_line(exc)})")
    lost = lost_comments(info.local_text(), new_source)
    if lost:  # the edits carry every comment over; should one be missed, decline, never delete it
        return Planned(key, path, loop.qualname, loop.line, loop.column, loop.end_line, rw.pattern,
                       rw.message, rw.safety, rw.assumptions, None, "", "",
                       unverifiable=f"the rewrite would delete the comment `{lost[0]}`: left unchanged")
    fn = function_source(new_module, loop.qualname) if loop.qualname else None
    problem = None
    if loop.qualname and "<locals>" in loop.qualname:
        problem = "nested function: it cannot be called on its own to verify it"
    elif fn is None:
        problem = "the function could not be located after the rewrite"
    span = ()
    if fn is not None and problem is None:
        span = changed_lines(function_source(info.module, loop.qualname) or "", fn)
    return Planned(key, path, loop.qualname, loop.line, loop.column, loop.end_line, rw.pattern, rw.message,
                   rw.safety, rw.assumptions, fn, "\n".join(rw.imports),
                   _plan_diff(path, info, new_source), unverifiable=problem,
                   span=span)


def changed_lines(old_fn: str, new_fn: str) -> tuple[int, ...]:
    """The first line (1-based, in `new_fn`) of each block of lines the rewrite put in:
    where the reach probe checks that the rewritten code ran. Removed lines (`out = []`)
    leave nothing to check, nor do the comments a rewrite carries over (a block's first line
    of code is its target)."""
    new_lines = new_fn.splitlines()
    matcher = difflib.SequenceMatcher(None, old_fn.splitlines(), new_lines, autojunk=False)
    firsts = []
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if tag not in ("replace", "insert"):
            continue
        code_lines = [j for j in range(j1, j2) if new_lines[j].strip() and not new_lines[j].lstrip().startswith("#")]
        if code_lines:
            firsts.append(code_lines[0] + 1)
    return tuple(firsts)


def apply_keys(path: str, source: str, keys: set[str], pattern_names: tuple[str, ...] = ()) -> str:
    """Re-plan `source` and apply exactly the rewrites named by `keys`."""
    info = parse(path, source)
    patterns = codemods.select(pattern_names)
    _, rewrites, _ = match_loops(info, patterns)
    chosen = [rw for rw in rewrites if _key(path, rw.loop, rw.pattern) in keys]
    if len(chosen) != len(keys):  # a key may name the alternative of a rewrite
        for rw in rewrites:
            alt = alternative(info, patterns, rw) if _key(path, rw.loop, rw.pattern) not in keys else None
            if alt is not None and _key(path, alt.loop, alt.pattern) in keys:
                chosen.append(alt)
    if len(chosen) != len(keys):
        raise SourceError("the file changed while loopvec was working on it: left unchanged")
    new = render(info, chosen)
    cst.parse_module(new)  # the result must parse
    lost = lost_comments(source, new)
    if lost:
        raise SourceError(f"the rewrite would delete the comment `{lost[0]}`: left unchanged")
    return new


def scan_finding(p: Planned) -> Finding:
    return Finding(p.path, p.line, p.column, p.end_line, p.qualname, p.pattern, CANDIDATE, p.message,
                   p.diff, p.safety, p.assumptions, key=p.key)
