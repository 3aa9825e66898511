"""`loopvec profile -- COMMAND`: which loops the time goes to, and which of them loopvec rewrites.

The command runs unchanged, with a `sitecustomize` put first on `PYTHONPATH`: every Python
process it starts (the script, pytest and its xdist workers, forked DataLoader workers)
runs a sampling thread that every `interval` seconds (default 5 ms) reads every other
thread's stack with `sys._current_frames()` and counts it. No `sys.setprofile` or
tracing hook: the program runs at full speed between samples; each sample costs tens of
microseconds, about 1% at the default interval (measured with `benchmarks --only profile`).
Samples are wall-clock time per thread: a thread blocked inside a loop (waiting for a
batch) counts as time in that loop. At exit each process writes its counts to a file.

Then the loops of the files seen in the samples (under the working directory, or the
`--path` folders) are found by the scanner, and each sample is charged to every loop whose
lines hold one of its frames (inclusive time: a call made from the loop body counts for
the loop). Loops are ranked by that time, each with the pattern that could rewrite it and
its verification status; `--apply-top N` rewrites the N costliest candidates through the
normal apply path (verification and speed gate included).
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

DIR_ENV = "LOOPVEC_PROFILE_DIR"
INTERVAL_ENV = "LOOPVEC_PROFILE_INTERVAL"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])

_SITECUSTOMIZE = '''\
# written by `loopvec profile`: start its sampler, then run any sitecustomize it shadows
import os as _os
import sys as _sys

if _os.environ.get("{dir_env}"):
    _sys.path.insert(0, {root!r})
    try:
        from loopvec.profile import start_sampler as _start
        _start()
    except Exception as _e:  # profiling must never break the program
        _sys.stderr.write(f"loopvec profile: sampler not started: {{_e}}\\n")
    finally:
        _sys.path.remove({root!r})

def _chain():
    import importlib.machinery, importlib.util
    here = _os.path.dirname(_os.path.abspath(__file__))
    rest = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

_chain()
'''


# --------------------------------------------------------------------------- the sampler (in the profiled process)


class _Sampler(threading.Thread):
    def __init__(self, folder: str, interval: float) -> None:
        super().__init__(name="loopvec-profile", daemon=True)
        self.folder = folder
        self.interval = interval
        self.counts: Counter = Counter()  # stack (tuple of (file, line), innermost first) -> samples
        self.ticks = 0
        self.started = time.time()
        self.stopped = threading.Event()
        self.cwd = os.getcwd()
        self.lock = threading.Lock()

    def run(self) -> None:
        own = threading.get_ident()
        while not self.stopped.wait(self.interval):
            frames = sys._current_frames()
            with self.lock:
                self.ticks += 1
                for ident, frame in frames.items():
                    if ident == own:
                        continue
                    stack = []
                    while frame is not None:
                        stack.append((frame.f_code.co_filename, frame.f_lineno))
                        frame = frame.f_back
                    self.counts[tuple(stack)] += 1
            del frames

    def dump(self) -> None:
        with self.lock:
            data = {"pid": os.getpid(), "interval": self.interval, "ticks": self.ticks, "cwd": self.cwd,
                    "seconds": time.time() - self.started, "argv": list(sys.argv), "counts": dict(self.counts)}
        path = os.path.join(self.folder, f"{os.getpid()}.pickle")
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as fh:
                pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            pass


_active: _Sampler | None = None


def start_sampler() -> None:
    """Called by the generated sitecustomize in every profiled Python process."""
    global _active
    folder = os.environ[DIR_ENV]
    interval = float(os.environ.get(INTERVAL_ENV, "0.005"))
    _active = _Sampler(folder, interval)
    _active.start()
    atexit.register(_stop)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_restart_in_child)


def _stop() -> None:
    if _active is not None:
        _active.stopped.set()
        _active.dump()


def _restart_in_child() -> None:
    # the sampling thread does not survive fork(): a forked worker gets its own
    global _active
    if _active is not None:
        _active = _Sampler(_active.folder, _active.interval)
        _active.start()


# --------------------------------------------------------------------------- running the command


@dataclass
class Samples:
    interval: float
    seconds: float  # wall time of the command
    processes: int
    counts: Counter  # stack of (absolute file, line) -> samples


def run_profiled(command: list[str], interval: float = 0.005, env: dict | None = None) -> tuple[int, Samples]:
    """Run `command` with the sampler in every Python process; (exit code, samples)."""
    with tempfile.TemporaryDirectory(prefix="loopvec-profile-") as tmp:
        site = os.path.join(tmp, "site")
        out = os.path.join(tmp, "samples")
        os.makedirs(site)
        os.makedirs(out)
        with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as fh:
            fh.write(_SITECUSTOMIZE.format(dir_env=DIR_ENV, root=_PACKAGE_ROOT))
        child = dict(env if env is not None else os.environ)
        child["PYTHONPATH"] = os.pathsep.join(p for p in (site, child.get("PYTHONPATH")) if p)
        child[DIR_ENV] = out
        child[INTERVAL_ENV] = str(interval)
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=child)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(2)
            code = proc.wait()
        seconds = time.perf_counter() - started
        return code, _read_samples(out, interval, seconds)


def _read_samples(folder: str, interval: float, seconds: float) -> Samples:
    counts: Counter = Counter()
    processes = 0
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".pickle"):
            continue
        try:
            with open(os.path.join(folder, name), "rb") as fh:
                data = pickle.load(fh)
        except Exception:
            continue
        processes += 1
        cwd = data.get("cwd", os.getcwd())
        for stack, n in data["counts"].items():
            counts[tuple((os.path.normpath(os.path.join(cwd, f)), line) for f, line in stack)] += n
    return Samples(interval, seconds, processes, counts)


# --------------------------------------------------------------------------- charging samples to loops


@dataclass
class LoopCost:
    path: str  # as the scanner shows it
    line: int
    end_line: int
    function: str | None
    samples: int = 0
    pattern: str | None = None  # the pattern that would rewrite it (None: declined)
    status: str = ""  # candidate / verified / rewritten / failed-verification / unverifiable / declined
    message: str = ""
    key: str = ""
    speedup: float | None = None
    findings: list = field(default_factory=list, repr=False)


def python_files(samples: Samples, roots: list[str]) -> list[str]:
    """The sampled files under `roots` that exist (not loopvec's own)."""
    bases = [os.path.realpath(r) for r in roots]
    own = os.path.realpath(os.path.join(_PACKAGE_ROOT, "loopvec"))
    files = set()
    for stack in samples.counts:
        for f, _ in stack:
            files.add(f)
    out = []
    for f in sorted(files):
        real = os.path.realpath(f)
        if not real.endswith(".py") or not os.path.isfile(real) or real.startswith(own + os.sep):
            continue
        if any(real == b or real.startswith(b + os.sep) for b in bases):
            out.append(real)
    return out


def charge(samples: Samples, loops: list[LoopCost]) -> list[LoopCost]:
    """Each stack's samples to every loop holding one of its frames (once per loop)."""
    by_file: dict[str, list[tuple[int, LoopCost]]] = defaultdict(list)
    for k, loop in enumerate(loops):
        by_file[os.path.realpath(loop.path)].append((k, loop))
    real: dict[str, str] = {}
    for stack, n in samples.counts.items():
        hit: set[int] = set()
        for f, line in stack:
            rf = real.get(f)
            if rf is None:
                rf = real[f] = os.path.realpath(f)
            hit.update(k for k, loop in by_file.get(rf, ()) if loop.line <= line <= loop.end_line)
        for k in hit:
            loops[k].samples += n
    return sorted((lp for lp in loops if lp.samples), key=lambda lp: (-lp.samples, lp.path, lp.line))


def loops_of(files: list[str], options) -> list[LoopCost]:
    """Every loop the scanner sees in `files`, with what loopvec says about it."""
    from .results import DECLINED
    from .runner import scan

    result = scan(replace(options, paths=tuple(files), show_declined=True))
    out = []
    for f in result.findings:
        out.append(LoopCost(f.path, f.line, f.end_line, f.function, 0, f.pattern if f.status != DECLINED else None,
                            f.status, f.message, f.key))
    return out


def verify_top(costs: list[LoopCost], options, apply_top: int) -> None:
    """Verify the ranked candidates (and rewrite the first `apply_top`) through `runner.apply`."""
    from .runner import apply

    candidates = [c for c in costs if c.pattern and c.key]
    if not candidates:
        return
    write = {c.key for c in candidates[:apply_top]}
    rest = {c.key for c in candidates[apply_top:]}
    results = {}
    for keys, dry in ((write, False), (rest, True)):
        if not keys:
            continue
        paths = tuple(dict.fromkeys(c.path for c in candidates if c.key in keys))
        run = apply(replace(options, paths=paths, only=frozenset(keys), dry_run=dry,
                            min_speedup=options.min_speedup if not dry else None))
        results.update({f.key: f for f in run.findings if f.key in keys})
    for c in candidates:
        f = results.get(c.key)
        if f is not None:
            c.status, c.message, c.speedup = f.status, f.message, f.speedup


def report(costs: list[LoopCost], samples: Samples, command: list[str], top: int) -> list[str]:
    total = sum(samples.counts.values()) or 1
    lines = [f"loopvec profile: {samples.seconds:.1f} s wall, {total} thread samples every "
             f"{samples.interval * 1e3:g} ms from {samples.processes} process"
             f"{'es' if samples.processes != 1 else ''} of `{' '.join(command)}`"]
    if not costs:
        lines.append("  no time was spent in a loop of the profiled files")
        return lines
    lines.append(f"  {'time':>8}  {'share':>6}  loop")
    for c in costs[:top]:
        where = f"{c.path}:{c.line}" + (f" in {c.function}()" if c.function else "")
        what = f"[{c.pattern}] {c.status}" if c.pattern else "[-] declined"
        message = c.message if c.pattern else c.message.split("; ")[0]  # the first pattern's reason
        if len(message) > 120:
            message = message[:117] + "..."
        lines.append(f"  {c.samples * samples.interval:7.2f}s  {100 * c.samples / total:5.1f}%  {where}  {what}: "
                     f"{message}")
    return lines
