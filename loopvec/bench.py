"""The speed gate and `loopvec bench`: time a rewrite against its loop on scaled-up inputs.

A rewrite the verifier proved equal is kept only if it is also measurably faster. The
inputs are the verifier's (`loopvec.verify.plan`: the same hints, annotations and usage
facts), with every free dimension scaled up together -- doubling from 8 until the largest
input holds about `target_elements` elements or one call of the original loop takes
`max_loop_s` (a Python loop over 10^5 rows is already slow enough to show the
difference). A hint or `--shape` fixes a dimension; `sizes` binds one by name
(`n=50000`, `*` for all free ones).

Only inputs on which the replaced loop runs count: with the reach probe (`Impl.loop` on
the reference, `Impl.span` on the rewrite), a size on which the loop made fewer than two
iterations is skipped, and the rewritten code must run on the chosen inputs. A loop that
runs on none of them (`if x.numel() > 10**9:` in front of it) is *unreached*: nothing was
timed, and the gate does not keep the rewrite. The timed calls use the functions as
written; the probed copies only say where the calls went.

Both sides run in one subprocess, `python -m loopvec.bench` (like the verifier's
workers: the module imported in its package context, the rewrite compiled into a copy of
its namespace), one request at a time with a time limit each. Calls alternate between the
two sides, each on fresh copies of the inputs (a loop may write into an argument); each
round gives one paired ratio (loop / rewrite). The speedup is their median, and its spread
a distribution-free 90% interval for that median (from the ranks of the paired ratios, as
a sign test would). On CUDA every call is synchronised.

Memory: on CUDA, the allocator's peak during one call (`torch.cuda.max_memory_allocated`).
On CPU there is no allocator statistic, so a `TorchDispatchMode` follows every tensor
storage a torch op creates during one call until it is freed; the figure is the peak of
those bytes alive at once, inputs not counted (a loop's per-row scalars count; Python
objects and the allocator's own overhead do not).
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from .verify.types import Impl

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
STARTUP_S = 120.0  # importing torch on a busy machine
WORKER_CPU_S = 7200  # CPU seconds over the worker's life (each request has its own wall-clock limit)
# `--min-speedup`'s default: a rewrite must be measurably faster, not merely no slower
DEFAULT_MIN_SPEEDUP = 1.1
MIN_ROUNDS = 6  # paired rounds: with 6, the 90% interval is [min, max] of the ratios
# fewer when clear-cut (every ratio over 3x): their range is then the spread reported
CLEAR_ROUNDS, CLEAR_RATIO = 3, 3.0
CONFIDENCE = 0.9
UNREACHED = "the loop did not run on the scaled-up inputs"


@dataclass(frozen=True)
class BenchRequest:
    key: str
    reference: Impl
    candidate: Impl
    hints: tuple[tuple[str, str], ...] = ()  # name -> spec, as for the verifier
    # name -> spec that wins over the def-line comment too (`loopvec bench --shape`)
    shapes: tuple[tuple[str, str], ...] = ()
    sizes: tuple[tuple[str, int], ...] = ()  # dim name (or "*") -> size
    target_elements: int = 100_000
    max_loop_s: float = 0.25  # stop growing when one call of the original takes this long
    budget_s: float = 3.0  # time spent on the timed calls
    device: str = "cpu"
    memory: bool = True
    # one thread: a decision that does not swing with the machine's load (intra-op threads
    # on a busy machine wait for each other); it understates what threads add to the rewrite
    threads: int = 1


@dataclass(frozen=True)
class Timing:
    key: str
    # measured | not-measured | unreached (the loop did not run on any input it could build)
    # | failed (the rewrite raised where the loop did not)
    status: str
    message: str = ""
    original_s: float | None = None  # median seconds per call
    rewrite_s: float | None = None
    original_bytes: int | None = None  # peak bytes during one call (see the module docstring)
    rewrite_bytes: int | None = None
    sizes: tuple[tuple[str, int], ...] = ()
    shapes: str = ""  # "x=[100000] w=[64,64]"
    device: str = "cpu"
    calls: int = 0  # timed calls per side
    # the median of the paired ratios (loop / rewrite, one per round) and its 90% interval
    speedup_median: float | None = None
    speedup_low: float | None = None
    speedup_high: float | None = None
    iterations: int | None = None  # the loop's iterations in one call at these sizes (the probe's)

    @property
    def speedup(self) -> float | None:
        if self.speedup_median is not None:
            return self.speedup_median
        if self.original_s is None or not self.rewrite_s:
            return None
        return self.original_s / self.rewrite_s

    @property
    def size_text(self) -> str:
        # a dim named by its value ("3" in x=[n,3]) says nothing new
        return ", ".join(f"{k}={v}" for k, v in self.sizes if not k.isdigit()) or self.shapes

    def grows_memory(self, factor: float = 10.0, floor: int = 1 << 20) -> bool:
        """The rewrite's peak is over `factor` times the loop's and over `floor` bytes: the
        report says so (a [N, M, D] intermediate where the loop held [N, D])."""
        return self.rewrite_bytes is not None and self.rewrite_bytes > floor and \
            self.rewrite_bytes > factor * max(self.original_bytes or 0, 1)

    def passes(self, min_speedup: float) -> bool:
        """Whether the gate keeps it. Measured: the median ratio reaches `min_speedup` and
        its interval lies above 1.0 (measurably faster; above `min_speedup` itself for a
        gate under 1). Unreached or failed: no. Not measured for another reason (inputs it
        cannot build, a timeout): yes, and the report says the speed was not measured."""
        if self.status in ("failed", "unreached"):
            return False
        s = self.speedup
        if s is None:
            return True
        low = self.speedup_low if self.speedup_low is not None else s
        return s >= min_speedup and low > min(min_speedup, 1.0)


def memory_note(t: Timing) -> str:
    """`peak memory ~512.0 MiB where the loop's was ~2.0 MiB (n=4096)` for reports."""
    where = f" ({t.size_text})" if t.size_text else ""
    if t.rewrite_bytes is None:
        return f"peak memory not measured{where}"
    loop = f" where the loop's was ~{human_bytes(t.original_bytes)}" if t.original_bytes is not None else ""
    return f"peak memory ~{human_bytes(t.rewrite_bytes)}{loop}{where}"


def speed_note(t: Timing) -> str:
    """`37.2x faster (n=100000)` for reports and diff headers."""
    s = t.speedup
    if s is None:
        return f"speed not measured: {t.message}" if t.message else "speed not measured"
    return _with_sizes(_ratio_words(s), t)


def gate_note(t: Timing, min_speedup: float) -> str:
    """Why the gate did not keep a rewrite: `not measurably faster: 1.04x (0.93-1.12x, n=64)`,
    `2.5x slower (0.38-0.41x, n=64)`, `only 1.5x faster (1.3-1.7x, n=64)`, or why nothing
    was timed."""
    s = t.speedup
    if t.status != "measured" or s is None:
        return t.message or "speed not measured"
    spread = f"{s:.2f}x" if t.speedup_low is None else f"{_short(t.speedup_low)}-{_short(t.speedup_high)}x"
    sizes = f", {t.size_text}" if t.size_text else ""
    floor = min(min_speedup, 1.0)
    low = t.speedup_low if t.speedup_low is not None else s
    high = t.speedup_high if t.speedup_high is not None else s
    if high < floor:
        return f"{_ratio_words(s)} ({spread}{sizes})"
    if low <= floor:
        above = "faster" if min_speedup >= 1 else f"over {min_speedup:g}x"
        return f"not measurably {above}: {s:.2f}x ({spread}{sizes})"
    return f"only {_ratio_words(s)} ({spread}{sizes})"


def _ratio_words(s: float) -> str:
    # "1.0x slower" would read as a tie: show two decimals near 1
    digits = 2 if 0.95 <= s < 1.05 else 1
    return f"{s:.{digits}f}x faster" if s >= 1 else f"{1 / s:.{digits}f}x slower"


def _short(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}" if x < 10 else f"{x:.0f}"


def _with_sizes(text: str, t: Timing) -> str:
    return f"{text} ({t.size_text})" if t.size_text else text


def median_interval(ratios: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free interval for the median of `ratios`: the k-th smallest and the
    k-th largest, with k the largest rank the binomial(n, 1/2) tail allows (a sign test).
    With fewer than 5 values no rank is that sure: the whole range."""
    from math import comb

    xs = sorted(ratios)
    n = len(xs)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0  # below: P(at most k of n fall under the median)
    while k < n // 2:
        below += comb(n, k) / 2 ** n
        if below > tail:
            break
        k += 1
    k = max(k, 1)
    return xs[k - 1], xs[n - k]


# --------------------------------------------------------------------------- `loopvec bench`


class BenchError(Exception):
    """Why `loopvec bench FILE::FUNCTION` has nothing to time; one line."""


def function_request(path: str, qualname: str, patterns: tuple[str, ...], shapes: list[str], sizes: list[str],
                     target_elements: int = 100_000, device: str = "cpu", threads: int = 1,
                     ) -> tuple[BenchRequest, list[str]]:
    """The request timing `qualname`'s loops against loopvec's rewrite of all of them, and
    the patterns that rewrite them. `shapes` are `x=[1000,64]` specs, `sizes` `n=5000`."""
    import libcst as cst

    from .edits import function_source
    from .engine import SourceError, apply_keys, changed_lines, plan_source, read

    forced = [_pair(item, "--shape") for item in shapes]
    bound = []
    for item in sizes:
        name, value = _pair(item, "--size")
        try:
            bound.append((name, int(value)))
        except ValueError:
            raise BenchError(f"--size {item!r}: the size is not an integer") from None
    try:
        text = read(path).text
        mine = [p for p in plan_source(path, text, patterns).planned if p.qualname == qualname]
        if not mine:
            raise BenchError(f"no loop in {qualname} that loopvec rewrites (see `loopvec scan --show-declined {path}`)")
        module = cst.parse_module(text)
        source = function_source(cst.parse_module(apply_keys(path, text, {p.key for p in mine}, patterns)), qualname)
        before = function_source(module, qualname)
    except SourceError as exc:
        raise BenchError(f"{path}: {exc}") from None
    if source is None or before is None:
        raise BenchError(f"{qualname} cannot be run on its own (a nested function?)")
    full = os.path.abspath(path)
    prelude = "\n".join(dict.fromkeys(line for p in mine for line in p.prelude.splitlines() if line))
    # the probe counts one loop: the first one rewritten (the others run where it does, or
    # their own reach was the verifier's to check)
    first = min(mine, key=lambda p: (p.line, p.column))
    request = BenchRequest("cli", Impl(full, qualname, loop=(first.line, first.column)),
                           Impl(full, qualname, source, prelude, span=changed_lines(before, source)),
                           shapes=tuple(forced), sizes=tuple(bound), target_elements=target_elements,
                           max_loop_s=2.0, budget_s=5.0, device=device, threads=threads)
    return request, list(dict.fromkeys(p.pattern for p in mine))


def _pair(item: str, flag: str) -> tuple[str, str]:
    name, eq, value = item.partition("=")
    if not eq or not name.strip() or not value.strip():
        raise BenchError(f"{flag} {item!r} is not NAME=VALUE")
    return name.strip(), value.strip()


def run_one(request: BenchRequest, timeout_s: float) -> Timing:
    return bench([request], timeout_s=timeout_s)[0]


def describe(t: Timing) -> list[str]:
    """The lines `loopvec bench` prints for one timing."""
    if t.status != "measured":
        return [f"  not measured: {t.message}"]
    loop = f", the loop ran {t.iterations:,} iterations per call" if t.iterations is not None else ""
    spread = (f"; 90% interval {_short(t.speedup_low)}-{_short(t.speedup_high)}x over {t.calls} paired calls"
              if t.speedup_low is not None else "")
    return [
        f"  inputs:   {t.shapes} on {t.device}{loop}",
        f"  original: {seconds(t.original_s):>10}   peak {human_bytes(t.original_bytes)}",
        f"  rewrite:  {seconds(t.rewrite_s):>10}   peak {human_bytes(t.rewrite_bytes)}",
        f"  speedup:  {speed_note(t)}{spread}",
    ]


def seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


# --------------------------------------------------------------------------- parent side


def bench(requests: Sequence[BenchRequest], timeout_s: float = 60.0, memory_mb: int = 4096) -> list[Timing]:
    """One Timing per request, in order. Never raises for problems in user code.

    The worker runs in the verifier's sandbox (`verify.confine`), with `memory_mb` as its
    memory limit."""
    out: list[Timing] = []
    worker: _Worker | None = None
    try:
        for req in requests:
            if worker is None:
                worker = _Worker(memory_mb)
            try:
                out.append(worker.ask(req, timeout_s))
            except _Gone as exc:
                worker.kill()
                worker = None
                out.append(Timing(req.key, "not-measured", str(exc), device=req.device))
    finally:
        if worker is not None:
            worker.close()
    return out


class _Gone(Exception):
    pass


class _Worker:
    def __init__(self, memory_mb: int) -> None:
        from .verify import confine
        from .verify.worker import HEADER

        self.header = HEADER
        self.memory_mb = memory_mb
        # its cwd, HOME and TMPDIR, the only folder it may write to
        self.folder = tempfile.mkdtemp(prefix="loopvec-gate-")
        env = confine.worker_env(dict(os.environ), self.folder, confine.Limits(memory_mb, WORKER_CPU_S))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.log = tempfile.TemporaryFile()
        # its own process group, killed whole at the end (`kill_group`)
        self.proc = subprocess.Popen([sys.executable, "-m", "loopvec.bench"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=self.folder,
                                     start_new_session=True)
        self.buffer = b""
        self.ready = False

    def ask(self, req: BenchRequest, timeout_s: float) -> Timing:
        from .verify.worker import send

        if not self.ready:
            self._read(time.monotonic() + STARTUP_S, "the benchmark worker did not start")
            self.ready = True
        try:
            send(self.proc.stdin, req)
        except OSError:
            raise _Gone(self._why("the benchmark worker stopped")) from None
        return self._read(time.monotonic() + timeout_s, f"timed out after {timeout_s:g} s")

    def _read(self, deadline: float, late: str) -> Any:
        fd = self.proc.stdout.fileno()
        while True:
            if len(self.buffer) >= self.header.size:
                (size,) = self.header.unpack(self.buffer[: self.header.size])
                end = self.header.size + size
                if len(self.buffer) >= end:
                    data, self.buffer = self.buffer[self.header.size:end], self.buffer[end:]
                    return pickle.loads(data)
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Gone(late)
            ready, _, _ = select.select([fd], [], [], min(left, 0.1))
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self.proc.wait()
                    raise _Gone(self._why("the benchmark worker crashed"))
                self.buffer += chunk
            elif _resident_bytes(self.proc.pid) > self.memory_mb << 20:
                raise _Gone(f"memory limit exceeded ({self.memory_mb} MiB)")

    def _why(self, what: str) -> str:
        try:
            self.log.seek(0)
            lines = [ln for ln in self.log.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return f"{what}: {lines[-1][:200]}" if lines else what

    def kill(self, grace_s: float = 0.0) -> None:
        """Kill the worker and every process left in its group (a child user code forked)."""
        from .verify.sandbox import kill_group

        kill_group(self.proc, grace_s)
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.kill(grace_s=5.0)


def _resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux, or the process is gone
        return 0


# --------------------------------------------------------------------------- worker side


def _private_pipes():
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # what user code prints goes to the log, not into the protocol
    return requests, replies


def main() -> int:
    from .verify.worker import receive, send

    requests, replies = _private_pipes()
    from .verify.confine import confine

    sandboxed = confine()  # before torch starts threads, and before any user code
    import torch  # noqa: F401  (paid once, before the first request is timed)

    from .verify.loading import ModuleGraph
    from .verify.oracle import Attributes, torch_namespaces

    # each request is timed with its own file's modules and torch as torch defines it:
    # what one request's module loaded or patched is undone after it (as in verify.worker)
    graph, patched = ModuleGraph.take(), Attributes(torch_namespaces())

    send(replies, ("ready", os.getpid(), sandboxed))
    home = os.getcwd()
    while True:
        req = receive(requests)
        if req is None:
            return 0
        try:
            timing = measure(req)
        except Exception as exc:  # a bug of the benchmark's own: say so
            timing = Timing(req.key, "not-measured", f"benchmark error: {type(exc).__name__}: {exc}",
                            device=req.device)
        os.chdir(home)
        graph.restore()
        patched.restore()
        send(replies, timing)


class _NotMeasured(Exception):
    pass


def measure(req: BenchRequest) -> Timing:
    import torch

    from .verify.loading import LoadError, load

    device = req.device
    torch.set_num_threads(req.threads)
    if device == "cuda" and not torch.cuda.is_available():
        return Timing(req.key, "not-measured", "CUDA is not available", device=device)
    try:
        # the probed copies say where a call went; the plain ones are timed
        ref, new = load(req.reference), load(req.candidate)
        plain_ref = load(replace(req.reference, loop=None)) if ref.probe is not None else ref
        plain_new = load(replace(req.candidate, span=())) if new.probe is not None else new
    except LoadError as exc:
        return Timing(req.key, "not-measured", exc.message, device=device)
    except BaseException as exc:  # an import that fails or exits
        return Timing(req.key, "not-measured", f"cannot import: {type(exc).__name__}: {exc}", device=device)
    try:
        plan, bound = _plan(ref, new, req)
        probed_ref, run_ref = _callables(ref, plain_ref, device)
        probed_new, run_new = _callables(new, plain_new, device)
        chosen = _choose_sizes(plan, req, _Probed(probed_ref, ref.probe), device, ref.signature(), bound)
    except _NotMeasured as exc:
        return Timing(req.key, "not-measured", str(exc), device=device)
    if isinstance(chosen, _Unreached):
        return Timing(req.key, "unreached", f"{UNREACHED} ({chosen.shapes})", shapes=chosen.shapes, device=device)
    sizes, inputs, shapes, first, iterations = chosen
    sizes_items = tuple(sorted((k, v) for k, v in sizes.items() if isinstance(v, int)))
    try:
        _Probed(probed_new, new.probe).run(inputs, device)
    except Exception as exc:
        return Timing(req.key, "failed", f"the rewrite raised where the loop did not: {type(exc).__name__}: {exc}",
                      sizes=sizes_items, shapes=shapes, device=device)
    if new.probe is not None and not new.probe.span_ran:
        # the loop ran but the rewritten code did not: timing it would time something else
        return Timing(req.key, "unreached", f"the rewritten code did not run on the scaled-up inputs ({shapes})",
                      sizes=sizes_items, shapes=shapes, device=device)
    orig, rew = _time_both(run_ref, run_new, inputs, device, first, req.budget_s)
    ratios = [o / max(r, 1e-12) for o, r in zip(orig, rew)]
    low, high = median_interval(ratios)
    mem_ref = mem_new = None
    if req.memory:
        mem_ref, mem_new = _peak_bytes(run_ref, inputs, device), _peak_bytes(run_new, inputs, device)
    return Timing(req.key, "measured", "", statistics.median(orig), statistics.median(rew), mem_ref, mem_new,
                  sizes_items, shapes, device, len(orig), statistics.median(ratios), low, high, iterations)


class _Probed:
    """A callable and its probe (None: not probed, so every call counts as reaching)."""

    def __init__(self, fn, probe) -> None:
        self.fn, self.probe = fn, probe

    def run(self, inputs, device: str) -> tuple[float, int | None, bool]:
        """Seconds for one call, the loop's iterations in it (None: not probed), and whether
        the call reached the loop as the verifier counts it: two iterations or more, or a
        run left by `break`/`return` (a search that found its item at once)."""
        if self.probe is None:
            return _call(self.fn, inputs, device), None, True
        self.probe.reset()
        took = _call(self.fn, inputs, device)
        n = self.probe.iterations
        return took, n, n >= 2 or bool(getattr(self.probe, "stopped_early", False))


@dataclass(frozen=True)
class _Unreached:
    shapes: str  # the largest inputs tried


def _plan(ref, new, req: BenchRequest):
    """The plan, and the dims `req.shapes` binds: `--shape x=[1000,3]` over the comment's
    `x=[n,3]` sets n=1000, so `y=[n]` follows it."""
    from .analysis.usage import usage_facts
    from .verify.plan import build_plan
    from .verify.specs import SpecError, TensorSpec, parse_spec

    # as the verifier plans them (`check._plan`): the def-line comment wins over configured hints
    texts = {**dict(req.hints), **(ref.definition.hint_comment() or new.definition.hint_comment())}
    try:
        hints = {name: parse_spec(text) for name, text in texts.items()}
        forced = {name: parse_spec(text) for name, text in req.shapes}
    except SpecError as exc:
        raise _NotMeasured(f"bad hint: {exc}") from None
    bound: dict[str, int] = {}
    for name, spec in forced.items():
        old = hints.get(name)
        if isinstance(old, TensorSpec) and isinstance(spec, TensorSpec) and old.dims and spec.dims \
                and len(old.dims) == len(spec.dims):
            bound.update({d: v for d, v in zip(old.dims, spec.dims)
                          if isinstance(d, str) and d.isidentifier() and d != "_" and isinstance(v, int)})
        hints[name] = spec
    facts = usage_facts(ref.definition.node, skip_first=ref.definition.skips_first)
    return build_plan(ref.definition.params(), facts, hints), bound


def _callables(probed, plain, device: str):
    """Functions of (args, kwargs) for the probed and the plain copy of one side; a method's
    are bound to one instance made up front."""
    if probed.owner is None or probed.definition.static:
        return (getattr(probed.target, "__func__", probed.target), getattr(plain.target, "__func__", plain.target))
    try:
        instance = probed.make_instance(device)
    except Exception as exc:
        raise _NotMeasured(f"cannot build {probed.owner.__name__}(): {type(exc).__name__}: {exc}") from None
    return probed.target.__get__(instance, probed.owner), plain.target.__get__(instance, plain.owner)


def _dims_for(plan, key: str) -> list[str]:
    """The plan's dims a size key binds: a dim name (`n`), an argument's axis (`K.0`: the
    first dim of K; for a list, axis 0 is its length), or `lists` (every list's length)."""
    from .verify.plan import EitherArg, ListArg, TensorArg, TupleArg

    def walk(arg):
        yield arg
        for sub in (getattr(arg, "options", ()) if isinstance(arg, EitherArg) else
                    getattr(arg, "items", ()) if isinstance(arg, TupleArg) else
                    (arg.item,) if isinstance(arg, ListArg) else ()):
            yield from walk(sub)

    if key == "lists":
        return [a.length for _, arg in plan.args for a in walk(arg) if isinstance(a, ListArg)]
    name, dot, axis = key.partition(".")
    if not dot:
        return [key]
    for arg_name, arg in plan.args:
        if arg_name != name or not axis.isdigit():
            continue
        k = int(axis)
        for a in walk(arg):
            if isinstance(a, ListArg):
                if k == 0:
                    return [a.length]
                k -= 1
            elif isinstance(a, TensorArg) and k < len(a.dims):
                return [a.dims[k]]
    raise _NotMeasured(f"the size {key!r} names no dimension of the plan")


def _choose_sizes(plan, req: BenchRequest, ref: _Probed, device: str, signature, bound: dict[str, int] | None = None):
    """(sizes, inputs, shapes, seconds of one call of the original, its loop's iterations)
    at the largest scale tried on which the loop ran, or `_Unreached` when it ran on none."""
    overrides = {d: v for d, v in (bound or {}).items() if any(p.name == d for p in plan.dims)}
    for key, value in req.sizes:
        if key != "*":
            overrides.update(dict.fromkeys(_dims_for(plan, key), value))
    everything = dict(req.sizes).get("*")
    fixed = {d.name: d.low for d in plan.dims if d.low == d.high}
    free = [d for d in plan.dims if d.low != d.high and d.name not in overrides]
    if everything is not None:
        fixed.update({d.name: everything for d in free})
        free = []
    fixed.update(overrides)
    low = max([d.low for d in free], default=1)
    s = max(8, low)
    best = None
    tried = ""
    nonnegative = False  # integer tensors in [-100, 100]; [0, 100] once the original raised on those
    while True:
        sizes = {**fixed, **{d.name: s for d in free}}
        for v in getattr(plan, "variadics", ()):
            sizes[v.name] = ()
        inputs, shapes = _inputs(plan, sizes, device, signature, nonnegative)
        try:
            took, iterations, reached = ref.run(inputs, device)
        except Exception as exc:
            if best is None and not nonnegative:
                nonnegative = True  # `out[segment[i]] += ...`: integers used as indices
                continue
            if best is None:
                raise _NotMeasured(f"the original raised on scaled-up inputs ({shapes}): "
                                   f"{type(exc).__name__}: {exc}") from None
            break
        tried = shapes
        # the loop ran at most once here (a guard took another path): these sizes time nothing
        if reached:
            best = (sizes, inputs, shapes, took, iterations)
        largest = max((t.numel() for t in _tensors(inputs)), default=0)
        if not free or took >= req.max_loop_s or largest >= req.target_elements or s >= 1 << 20:
            break
        s *= 2
    return best if best is not None else _Unreached(tried)


def _inputs(plan, sizes: dict, device: str, signature, nonnegative: bool = False) -> tuple[tuple[tuple, dict], str]:
    """(args, kwargs) for the plan at these sizes, and their shapes as text; integer
    tensors hold values in [-100, 100], or [0, 100] when `nonnegative`."""
    import torch

    from .verify.plan import DefaultArg, EitherArg, ListArg, ScalarArg, TensorArg, TupleArg

    gen = torch.Generator().manual_seed(0)
    dtype = getattr(torch, plan.value_dtypes[0])

    def size(name: str) -> int:
        return sizes[name]

    def shape_of(dims) -> tuple[int, ...]:
        out: list[int] = []
        for d in dims:
            v = sizes[d]
            out.extend(v if isinstance(v, tuple) else (v,))
        return tuple(out)

    def build(arg):
        if isinstance(arg, EitherArg):
            options = [a for a in arg.options if not isinstance(a, DefaultArg)]
            return build(options[0]) if options else _OMIT
        if isinstance(arg, DefaultArg):
            return _OMIT
        if isinstance(arg, TensorArg):
            shape = shape_of(arg.dims)
            kind = getattr(torch, arg.dtypes[0]) if arg.dtypes else dtype
            if arg.index_of is not None:
                t = torch.randint(0, max(size(arg.index_of), 1), shape, generator=gen, dtype=kind)
            elif kind == torch.bool:
                t = torch.rand(shape, generator=gen) < 0.5
            elif kind.is_floating_point or kind.is_complex:
                t = torch.randn(shape, generator=gen, dtype=torch.float64).to(kind)
            else:
                lo, hi = (0, 256) if kind == torch.uint8 else (0 if nonnegative else -100, 101)
                t = torch.randint(lo, hi, shape, generator=gen, dtype=kind)
            return t.to(device)
        if isinstance(arg, ScalarArg):
            if arg.kind == "float":
                return 0.5
            if arg.kind == "bool":
                return True
            if arg.upto is not None:
                return size(arg.upto)
            if getattr(arg, "size", None) is not None:
                return size(arg.size)
            if arg.below is not None:
                return max(size(arg.below) - 1, 0) // 2
            return 3
        if isinstance(arg, ListArg):
            items = [build(arg.item) for _ in range(size(arg.length))]
            return tuple(items) if arg.tuple_ else items
        if isinstance(arg, TupleArg):
            return tuple(build(a) for a in arg.items)
        raise _NotMeasured(f"cannot build a scaled-up {type(arg).__name__} argument")

    values = {name: build(arg) for name, arg in plan.args}
    values = {k: v for k, v in values.items() if v is not _OMIT}
    try:
        bound = signature.bind_partial(**values)
    except TypeError as exc:
        raise _NotMeasured(f"cannot call it with the planned arguments: {exc}") from None
    return (bound.args, bound.kwargs), _shapes(values)


_OMIT = object()


def _tensors(inputs) -> list:
    import torch

    out = []

    def walk(x):
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)

    walk(inputs)
    return out


def _shapes(values: dict) -> str:
    import torch

    parts = []
    for name, v in values.items():
        if isinstance(v, torch.Tensor):
            parts.append(f"{name}=[{','.join(map(str, v.shape))}]")
        elif isinstance(v, (list, tuple)):
            parts.append(f"{name}=<{len(v)} items>")
        else:
            parts.append(f"{name}={v!r}")
    return " ".join(parts)


def _copy(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, list):
        return [_copy(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_copy(v) for v in x)
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    return x


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _call(fn, inputs, device: str) -> float:
    """Seconds for one call on fresh copies of the inputs."""
    args, kwargs = _copy(inputs)
    _sync(device)
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    _sync(device)
    return time.perf_counter() - t0


def _time_both(run_ref, run_new, inputs, device: str, first: float, budget_s: float):
    """Alternating calls, so drift in the machine's load hits both sides alike: as many
    rounds as the budget allows, at least `MIN_ROUNDS` -- or `CLEAR_ROUNDS` once the
    budget is spent, when every round so far was `CLEAR_RATIO` times faster or more."""
    fast = _call(run_new, inputs, device)  # warm-up
    rounds = int(min(max(budget_s / 2 / max(first, 1e-6), MIN_ROUNDS), 25))
    inner = int(min(max(first / max(fast, 1e-7), 1), 20))  # more samples of the quick side
    orig: list[float] = []
    new: list[float] = []
    started = time.perf_counter()
    for k in range(rounds):
        orig.append(_call(run_ref, inputs, device))
        new.append(statistics.median(_call(run_new, inputs, device) for _ in range(inner)))
        if k + 1 >= CLEAR_ROUNDS and time.perf_counter() - started >= budget_s \
                and min(o / max(r, 1e-12) for o, r in zip(orig, new)) >= CLEAR_RATIO:
            break  # a slow loop far behind its rewrite: more rounds would not change the verdict
    return orig, new


def _peak_bytes(fn, inputs, device: str) -> int | None:
    import torch

    args, kwargs = _copy(inputs)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(*args, **kwargs)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    tracker = _StorageTracker({t.untyped_storage().data_ptr() for t in _tensors((args, kwargs))})
    try:
        with tracker:
            fn(*args, **kwargs)
    except Exception:
        return None
    return tracker.peak


def _storage_tracker_class():
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class StorageTracker(TorchDispatchMode):
        """Bytes of tensor storage created by torch ops and still alive: current and peak."""

        def __init__(self, known: set[int]) -> None:
            super().__init__()
            self.known = set(known)
            self.live = 0
            self.peak = 0

        def _free(self, ptr: int, nbytes: int) -> None:
            self.live -= nbytes
            self.known.discard(ptr)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    storage = t.untyped_storage()
                    ptr, nbytes = storage.data_ptr(), storage.nbytes()
                    if nbytes and ptr not in self.known:
                        self.known.add(ptr)
                        self.live += nbytes
                        self.peak = max(self.peak, self.live)
                        weakref.finalize(storage, self._free, ptr, nbytes)
            return out

    return StorageTracker


def _StorageTracker(known: set[int]):  # noqa: N802  (built lazily: torch is imported in the worker only)
    global _TRACKER
    if _TRACKER is None:
        _TRACKER = _storage_tracker_class()
    return _TRACKER(known)


_TRACKER = None


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


if __name__ == "__main__":
    # run the module's importable twin, so what it pickles is `loopvec.bench.Timing`, not `__main__.Timing`
    from loopvec.bench import main as _main

    sys.exit(_main())
