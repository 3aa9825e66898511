"""The pipeline over many files: discover -> plan (process pool) -> verify -> write.

Returns a frozen `RunResult`; never prints. The CLI passes a `progress` callback.
Writes are atomic (a temporary file in the same folder, then `os.replace`), keep the
file's encoding marker, newlines, mode, owner and group, and happen only for verified
rewrites of a file that has not changed since it was read: its bytes are checked again,
under a lock, right before the rename. Read-only files are refused.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import multiprocessing
import os
import signal
import stat
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import libcst as cst

from . import cache
from .bench import BenchRequest, Timing, bench, gate_note, human_bytes, memory_note, speed_note
from .edits import function_source
from .engine import (FilePlan, Planned, SourceError, Text, apply_keys, decode, encode, plan_source, read,
                     read_bytes, scan_finding, unified_diff)
from .files import discover, display_path, printable
from .results import DECLINED, FAILED, REWRITTEN, UNVERIFIABLE, VERIFIED, FileResult, Finding
from .rewrite import SAFE, UNSAFE
from .verify.types import Candidate, Impl, Verdict, VerifySettings

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class RunOptions:
    paths: tuple[str, ...]
    patterns: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    jobs: int = 1
    dry_run: bool = False
    unsafe: bool = False
    show_declined: bool = False
    verify: VerifySettings = field(default_factory=VerifySettings)
    hints: tuple[tuple[str, str], ...] = ()  # ("module:function", spec)
    root: str | None = None
    cache: bool = False  # plans and verdicts under .loopvec_cache/ (the CLI turns it on)
    min_speedup: float | None = None  # the speed gate (loopvec.bench); None: off
    # the memory gate: a rewrite whose peak tensor memory at the gate's sizes exceeds this
    # many bytes is left as it was; None: not measured
    max_memory: int | None = None
    only: frozenset[str] | None = None  # verify and write only these candidate keys (`loopvec profile`)
    # called with the files about to be written, before the first write; it may raise to stop
    before_write: Callable[[tuple[str, ...]], None] | None = field(default=None, compare=False)
    no_exec: bool = False  # run no user code: every candidate is unverifiable, nothing is written


@dataclass(frozen=True)
class RunResult:
    files: tuple[FileResult, ...]
    missing: tuple[str, ...] = ()
    diffs: tuple[str, ...] = ()  # one unified diff per changed (or would-change) file

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.files for f in r.findings]

    @property
    def errors(self) -> list[FileResult]:
        return [r for r in self.files if r.error]


# --------------------------------------------------------------------------- planning


def _plan(args: tuple[str, tuple[str, ...], bool, str | None]) -> FilePlan | FileResult:
    path, patterns, show_declined, folder = args
    shown = display_path(path)
    try:
        text = read(path)
    except SourceError as exc:
        return FileResult(shown, error=str(exc))
    result = cache.load_plan(folder, shown, text.text, patterns, show_declined) if folder else None
    if result is None:
        result = _plan_text(shown, text.text, patterns, show_declined)
        if folder:
            cache.store_plan(folder, shown, text.text, patterns, show_declined, result)
    return result


def _plan_text(shown: str, text: str, patterns: tuple[str, ...], show_declined: bool) -> FilePlan | FileResult:
    try:
        return plan_source(shown, text, patterns, show_declined)
    except SourceError as exc:
        return FileResult(shown, error=str(exc))
    except RecursionError:
        return FileResult(shown, error="too deeply nested to analyse: left unchanged")
    except Exception as exc:  # an analysis bug must not stop a repository-wide run
        return FileResult(shown, error=f"internal error while analysing: {type(exc).__name__}: {exc}")


# Planning builds and drops large trees (libcst's module of a 10,000-line file is millions
# of objects) that hardly ever form cycles; with the default thresholds the cyclic
# collector re-walks the live ones again and again, ~40% of a scan over the torch source.
_PLAN_GC_THRESHOLD = (10_000, 10, 100)


def _tune_gc() -> None:
    gc.freeze()  # the imported modules: never garbage
    gc.set_threshold(*_PLAN_GC_THRESHOLD)


@contextmanager
def _planning_gc():
    old = gc.get_threshold()
    _tune_gc()
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _plan_worker() -> None:
    # workers ignore Ctrl-C: the parent stops them, so a keypress prints one line, not a traceback per worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # and die quietly on the SIGTERM it stops them with (a fork inherits the CLI's handler, which raises)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _tune_gc()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop a planning pool now (Ctrl-C): workers ignore SIGINT, so terminate them, and do
    not let the exit wait on the queue that fed them (its feeder may be blocked on the pipe
    of a worker that is gone)."""
    # shutdown() forgets the pool's processes: take them first, with any child forked but
    # not yet registered when the interrupt came
    procs = {id(p): p for p in [*(getattr(pool, "_processes", None) or {}).values(),
                                *multiprocessing.active_children()]}.values()
    call_queue = getattr(pool, "_call_queue", None)
    if call_queue is not None:
        call_queue.cancel_join_thread()  # before the pool's own thread gets to join it
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=5)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def plan_all(options: RunOptions, progress: Progress | None = None) -> tuple[list[FilePlan | FileResult], list[str], list[str]]:
    files, missing, skipped = discover(list(options.paths), options.exclude, options.root)
    folder = cache.cache_dir(options.root) if options.cache else None
    jobs = [(f, options.patterns, options.show_declined, folder) for f in files]
    results: list[FilePlan | FileResult] = []
    if options.jobs > 1 and len(files) > 1:
        # largest files first, so no worker is left with a long one at the end
        order = sorted(range(len(jobs)), key=lambda k: -_size(jobs[k][0]))
        done: dict[int, FilePlan | FileResult] = {}
        pool = None
        try:
            pool = ProcessPoolExecutor(max_workers=options.jobs, initializer=_plan_worker)
            for k, res in zip(order, pool.map(_plan, [jobs[k] for k in order], chunksize=4)):
                done[k] = res
                if progress:
                    progress("scan", len(done), len(jobs))
            results = [done[k] for k in range(len(jobs))]
            pool.shutdown()
        except BaseException:
            if pool is not None:
                _stop(pool)
            raise
    else:
        with _planning_gc():
            for k, job in enumerate(jobs):
                results.append(_plan(job))
                if progress:
                    progress("scan", k + 1, len(jobs))
    results += [FileResult(display_path(path), error=why) for path, why in skipped]
    return results, missing, files


def scan(options: RunOptions, progress: Progress | None = None) -> RunResult:
    results, missing, _ = plan_all(options, progress)
    out = []
    for res in results:
        if isinstance(res, FileResult):
            out.append(res)
            continue
        findings = tuple(sorted([*map(scan_finding, res.planned), *res.declined], key=lambda f: (f.line, f.column)))
        out.append(FileResult(res.path, findings, loops=res.loops, lines=res.lines))
    return RunResult(tuple(out), tuple(missing))


# --------------------------------------------------------------------------- verification


def _module_name(path: str, root: str | None) -> str:
    p = Path(path).resolve()
    try:
        rel = p.relative_to(Path(root).resolve()) if root else Path(path)
    except ValueError:
        rel = Path(p.name)
    parts = list(rel.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _hints_for(path: str, qualname: str, options: RunOptions) -> tuple[tuple[str, str], ...]:
    module = _module_name(path, options.root)
    out = []
    for target, spec in options.hints:
        if target in (f"{module}:{qualname}", f"{Path(path).stem}:{qualname}"):
            out += [tuple(part.split("=", 1)) for part in spec.split() if "=" in part]
    return tuple(out)


def _candidate(p: Planned, source_fn: str, options: RunOptions) -> Candidate:
    """The verifier's claim for one rewrite, probed for reach (`Planned.impls`)."""
    reference, candidate = replace(p, function_source=source_fn).impls()
    observed_hints, observed = _observed(reference.path, p.qualname, options)
    return Candidate(reference, candidate, _hints_for(reference.path, p.qualname, options) + observed_hints, p.key,
                     observed)


def _observed(path: str, qualname: str, options: RunOptions) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """What `loopvec record` saw of the function: hints (after the configured ones, so
    they win) and the record the verifier replays; ((), None) when it was never recorded."""
    from .observed import observed_inputs

    return observed_inputs(cache.cache_dir(options.root), path, qualname)


NOT_RUN = "not run: --no-exec"


def _verify(cands: list[Candidate], settings: VerifySettings, cached: cache.Verdicts | None = None,
            ) -> dict[str, Verdict]:
    known = {c.key: v for c in cands if cached and (v := cached.get(c)) is not None}
    todo = [c for c in cands if c.key not in known]
    if not todo:
        return known
    from .verify import verify_candidates  # torch is imported only by verifier workers

    for cand, verdict in zip(todo, verify_candidates(todo, settings)):
        known[verdict.key] = verdict
        if cached:
            cached.put(cand, verdict)
    return known


def _fall_back(plans: list[FilePlan], verdicts: dict[str, Verdict], options: RunOptions,
               cached: cache.Verdicts | None) -> list[FilePlan]:
    """A candidate the verifier refuted: the next pattern's rewrite of the same loop
    (`Planned.alternative`) takes its place if that one verifies. (One it could not run at
    all -- a module that does not import, inputs it cannot build -- has an alternative
    that fares no better.)"""
    retry = [p for fp in plans for p in fp.planned
             if p.alternative is not None and p.qualname and (options.only is None or p.key in options.only)
             and _status(p, verdicts.get(p.key))[0] == FAILED]
    if not retry:
        return plans
    alts = {p.key: p.alternative for p in retry}
    verdicts.update(_verify([_candidate(a, a.function_source, options) for a in alts.values()],
                            options.verify, cached))
    out = []
    for fp in plans:
        planned = []
        for p in fp.planned:
            alt = alts.get(p.key)
            if alt is not None and _status(alt, verdicts.get(alt.key))[0] == VERIFIED:
                p = replace(alt, message=f"{alt.message} (the {p.pattern} rewrite was refuted: "
                                         f"{_status(p, verdicts.get(p.key))[1]})")
            planned.append(p)
        out.append(replace(fp, planned=tuple(planned)))
    return out


def _kind_tier(p: Planned, verdict: Verdict | None) -> Planned:
    """A rewrite proved only if a parameter is a tensor, where the code may get another kind
    of value (`verify.kinds`), is unsafe: written only with --unsafe, the assumption named."""
    if verdict is None or not verdict.ok or not verdict.kind_assumption:
        return p
    return replace(p, safety=UNSAFE, assumptions=(*p.assumptions, verdict.kind_assumption))


def _status(p: Planned, verdict: Verdict | None) -> tuple[str, str]:
    if p.unverifiable:
        return UNVERIFIABLE, p.unverifiable
    if verdict is None:
        return UNVERIFIABLE, "not verified"
    if verdict.status == "verified":
        return VERIFIED, verdict.message
    if verdict.status == "failed":
        return FAILED, verdict.message
    return UNVERIFIABLE, verdict.message


# --------------------------------------------------------------------------- speed


def _speed_gate(kept: list[Planned], options: RunOptions, progress: Progress | None) -> dict[str, Timing]:
    """Timings (and, for the memory gate, peak memory) of the verified rewrites about to be
    written, at the same scaled-up sizes; none when both gates are off."""
    if options.min_speedup is None and options.max_memory is None or not kept:
        return {}
    device = "cuda" if options.verify.device == "cuda" else "cpu"
    requests = []
    for p in kept:
        cand = _candidate(p, p.function_source, options)
        requests.append(BenchRequest(p.key, cand.reference, cand.candidate, cand.hints, device=device,
                                     max_loop_s=0.1, budget_s=1.0 if options.min_speedup is not None else 0.05,
                                     memory=options.max_memory is not None))
    if progress:
        progress("speed", 0, len(requests))
    timings = bench(requests, timeout_s=max(options.verify.timeout_s, 30.0), memory_mb=options.verify.memory_mb)
    if progress:
        progress("speed", len(requests), len(requests))
    return {t.key: t for t in timings}


# --------------------------------------------------------------------------- writing


# how long a write waits for another loopvec's lock on the same file before it gives up
_LOCK_WAIT_S = 10.0


def _changed() -> SourceError:
    return SourceError("the file changed while loopvec was working on it: left unchanged")


def write_atomic(path: str, data: bytes, expected: str | None = None) -> None:
    """Replace the file at `path` by one holding `data`, keeping its mode, owner and group.
    `expected`: the sha256 of the bytes the rewrite was made from; checked again under a
    lock on the file right before the rename, so an edit made since is never lost.
    Refusals are one-line `SourceError`s, and the file is left as it was."""
    st = os.lstat(path)
    # a file swapped for a link since discovery: a link is never written through here
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise SourceError("no longer a regular file: left unchanged")
    # chmod 444 says "do not change"; root may write anyway, so the mode bits decide, not only access()
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise SourceError("read-only file: left unchanged")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".loopvec-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            # another user's file must stay theirs (the new file is ours); chown before chmod,
            # since chown clears the set-user-ID bits
            if (os.fstat(fd).st_uid, os.fstat(fd).st_gid) != (st.st_uid, st.st_gid):
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except OSError:
                    raise SourceError(f"cannot keep its owner and group ({st.st_uid}:{st.st_gid}): "
                                      f"left unchanged") from None
            os.fchmod(fd, st.st_mode & 0o7777)
        with open(path, "rb") as current:
            _lock(current.fileno())
            now = os.fstat(current.fileno())
            # replaced since (an editor's save, another loopvec that held the lock): not the file planned from
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or os.stat(path).st_ino != now.st_ino:
                raise _changed()
            if expected is not None and hashlib.sha256(current.read()).hexdigest() != expected:
                raise _changed()
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _lock(fd: int) -> None:
    """An exclusive lock on the open file, released when it is closed: two loopvec runs never
    check and replace the same file at once."""
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            # another program keeps it locked: give up rather than hang the run
            if time.monotonic() > deadline:
                raise SourceError("locked by another program: left unchanged") from None
            time.sleep(0.05)


def apply(options: RunOptions, progress: Progress | None = None) -> RunResult:
    results, missing, _ = plan_all(options, progress)
    plans = [r for r in results if isinstance(r, FilePlan)]

    # 1. every candidate on its own
    cands = [_candidate(p, p.function_source, options) for fp in plans for p in fp.planned
             if not p.unverifiable and p.qualname and (options.only is None or p.key in options.only)]
    if progress:
        progress("verify", 0, len(cands))
    cached = cache.Verdicts(cache.cache_dir(options.root), cache.tree_hash((fp.path, fp.source) for fp in plans),
                            options.verify) if options.cache else None
    if options.no_exec:  # the verifier would run the user's functions: prove nothing, write nothing
        verdicts = {c.key: Verdict("unverifiable", NOT_RUN, key=c.key) for c in cands}
    else:
        verdicts = _verify(cands, options.verify, cached)
    if progress:
        progress("verify", len(cands), len(cands))
    plans = _fall_back(plans, verdicts, options, cached)
    plans = [replace(fp, planned=tuple(_kind_tier(p, verdicts.get(p.key)) for p in fp.planned)) for fp in plans]

    # 2. functions with several verified rewrites: verify them together too
    chosen: dict[str, list[Planned]] = {}
    combined: list[Candidate] = []
    combined_members: dict[str, list[Planned]] = {}
    for fp in plans:
        ok = [p for p in fp.planned if _status(p, verdicts.get(p.key))[0] == VERIFIED
              and (p.safety == SAFE or options.unsafe)]
        chosen[fp.path] = ok
        by_fn: dict[str, list[Planned]] = defaultdict(list)
        for p in ok:
            by_fn[p.qualname].append(p)
        for qual, members in by_fn.items():
            if len(members) < 2:
                continue
            try:
                new = apply_keys(fp.path, fp.source, {m.key for m in members}, options.patterns)
                fn = function_source(cst.parse_module(new), qual)
            except SourceError:
                fn = None
            key = f"{fp.path}::{qual}::combined"
            if fn is not None:
                observed_hints, observed = _observed(fp.path, qual, options)
                combined.append(Candidate(Impl(str(Path(fp.path).resolve()), qual),
                                          Impl(str(Path(fp.path).resolve()), qual, fn, members[0].prelude),
                                          _hints_for(fp.path, qual, options) + observed_hints, key, observed))
            combined_members[key] = members
    together = _verify(combined, options.verify, cached)
    dropped: set[str] = set()
    for key, members in combined_members.items():
        verdict = together.get(key)
        if verdict is None or verdict.status != "verified":
            dropped |= {m.key for m in members[1:]}  # keep the first; the rest only alone

    # 3. the speed gate: a verified rewrite is kept only if it is also faster
    timings = _speed_gate([p for fp in plans for p in chosen[fp.path] if p.key not in dropped], options, progress)
    # the rewrite raised on the scaled-up inputs where the loop did not (out of memory, ...)
    broke = {k for k, t in timings.items() if t.status == "failed"}
    # not measurably faster, or not timed at all because the loop ran on none of the inputs
    slow = {k for k, t in timings.items() if k not in broke and options.min_speedup is not None
            and not t.passes(options.min_speedup)}
    # the memory gate (the catalogue's Pitfall 4): an intermediate too large for the machine
    big = {k for k, t in timings.items() if k not in slow and options.max_memory is not None
           and t.rewrite_bytes is not None and t.rewrite_bytes > options.max_memory}
    dropped |= broke | slow | big
    if options.before_write and not options.dry_run:
        options.before_write(tuple(fp.path for fp in plans if any(p.key not in dropped for p in chosen[fp.path])))

    # 4. write
    out: list[FileResult] = []
    diffs: list[str] = []
    by_path = {fp.path: fp for fp in plans}
    for res in results:
        if isinstance(res, FileResult):
            out.append(res)
            continue
        fp = by_path[res.path]
        keys = {p.key for p in chosen[fp.path] if p.key not in dropped}
        changed = False
        error = None
        file_diff = ""
        if keys:
            try:
                new_source = apply_keys(fp.path, fp.source, keys, options.patterns)
                header = "".join(f"# loopvec: {p.pattern} {speed_note(timings[p.key])}\n" for p in fp.planned
                                 if p.key in keys and p.key in timings and options.min_speedup is not None)
                file_diff = unified_diff(fp.path, fp.source, new_source, header)
                if not options.dry_run:
                    data = read_bytes(fp.path)
                    current = decode(fp.path, data)
                    if current.text != fp.source:
                        raise _changed()
                    write_atomic(fp.path, encode(Text(new_source, current.bom)), hashlib.sha256(data).hexdigest())
                    changed = True
            except SourceError as exc:
                error, keys = str(exc), set()
            except OSError as exc:
                error, keys = f"cannot write: {exc.strerror}: left unchanged", set()
        if file_diff and (changed or options.dry_run):
            diffs.append(printable(file_diff))  # a file name that is not UTF-8 must not stop the output
        findings = []
        for p in fp.planned:
            status, message = _status(p, verdicts.get(p.key))
            verdict = verdicts.get(p.key)
            timing = timings.get(p.key)
            if status == VERIFIED and p.key in keys:
                status = REWRITTEN if changed else VERIFIED
                notes = []
                if timing is not None and options.min_speedup is not None:
                    notes.append(speed_note(timing))
                if timing is not None and timing.grows_memory():
                    notes.append(memory_note(timing))
                message = "; ".join([p.message, *notes])
            elif status == VERIFIED and p.safety != SAFE and not options.unsafe:
                why = ("the other kinds of value a parameter may hold were not all tried"
                       if verdict is not None and verdict.kind_assumption
                       else "the verifier cannot check what it assumes")
                message = f"{p.message}; {p.safety}: written only with --unsafe ({why})"
            elif status == VERIFIED and p.key in broke:
                why = timings[p.key].message.splitlines()[0]
                message = f"verified, but on scaled-up inputs {why}: left as it was"
            elif status == VERIFIED and p.key in slow and timings[p.key].status == "unreached":
                message = f"verified, but speed not measured: {timings[p.key].message}: left as it was"
            elif status == VERIFIED and p.key in slow:
                message = (f"verified, but {gate_note(timings[p.key], options.min_speedup)}: left as it was "
                           f"(--min-speedup {options.min_speedup:g})")
            elif status == VERIFIED and p.key in big:
                message = (f"verified, but {memory_note(timings[p.key])}: over --max-memory "
                           f"{human_bytes(options.max_memory)}: left as it was")
            elif status == VERIFIED and p.key in dropped:
                message = "verified alone, but not together with another rewrite in the same function"
            elif status == VERIFIED:
                message = p.message
            if status in (VERIFIED, REWRITTEN) and verdict is not None and verdict.observed:
                message = f"{message}; on observed inputs"
            # a called parameter was replaced by a row-independent stand-in: the proof covers
            # functions that treat rows independently and have no side effects, no others
            assumptions = p.assumptions + tuple(
                f"`{name}` treats each row on its own, without side effects (verified with a stand-in)"
                for name in (verdict.stand_ins if verdict is not None and verdict.ok else ()))
            findings.append(Finding(
                p.path, p.line, p.column, p.end_line, p.qualname, p.pattern, status, message,
                p.diff, p.safety, assumptions,
                counterexample=verdict.counterexample if verdict else None,
                hint=verdict.hint if verdict else None,
                speedup=round(timing.speedup, 2) if timing is not None and timing.speedup is not None
                and options.min_speedup is not None else None,
                speedup_low=round(timing.speedup_low, 2) if timing is not None and timing.speedup_low is not None
                and options.min_speedup is not None else None,
                speedup_high=round(timing.speedup_high, 2) if timing is not None and timing.speedup_high is not None
                and options.min_speedup is not None else None,
                peak_bytes=timing.rewrite_bytes if timing is not None else None,
                loop_peak_bytes=timing.original_bytes if timing is not None else None,
                reached=verdict.reached if verdict is not None else None,
                iterations=verdict.iterations if verdict is not None else None,
                key=p.key,
                sandboxed=verdict.sandboxed if verdict is not None else "",
            ))
        findings += list(fp.declined)
        findings.sort(key=lambda f: (f.line, f.column))
        out.append(FileResult(fp.path, tuple(findings), error, fp.loops, changed, fp.lines))
    return RunResult(tuple(out), tuple(missing), tuple(diffs))
