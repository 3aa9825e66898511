"""The command line. Thin: parse flags, merge config, call the runner, print, exit.

Exit codes: 0 nothing to do, 1 findings or changes, 2 errors.
Diffs and findings go to stdout, the summary and progress to stderr.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from enum import Enum
from typing import List, NoReturn, Optional

import typer
from typer.core import TyperCommand
from typer.exceptions import TyperException

from . import __version__
from .config import Config, ConfigError, load
from .bench import DEFAULT_MIN_SPEEDUP
from .runner import NOT_RUN, RunOptions, RunResult, apply as run_apply, scan as run_scan
from .verify.types import VerifySettings

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Find Python loops over PyTorch tensors and rewrite them into vectorized torch code, "
                       "proved on generated data before anything is written.")


class Format(str, Enum):
    text = "text"
    json = "json"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    all = "all"


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _json_error(message: str) -> None:
    """The report's JSON object holding one error and no findings."""
    from .report import SCHEMA_VERSION, summary

    totals = summary(RunResult(()))
    totals["errors"] = 1
    typer.echo(json.dumps({"version": SCHEMA_VERSION, "findings": [], "errors": [{"error": message}],
                           "summary": totals}, indent=2))


def _fail(message: str, fmt: Format | None = None) -> NoReturn:
    """A usage or configuration error: one line, exit 2; with --format json also the JSON
    object holding it (a program reading stdout must not get nothing)."""
    _err(f"loopvec: error: {message}")
    if fmt is Format.json:
        _json_error(message)
    raise typer.Exit(2)


def _wants_json(args: List[str]) -> bool:
    """Whether the last --format given is json."""
    last = max((k for k, a in enumerate(args) if a == "--format" or a.startswith("--format=")), default=None)
    if last is None:
        return False
    return (args[last][9:] if args[last].startswith("--format=") else (args[last + 1:last + 2] or [""])[0]) == "json"


class _ReportCommand(TyperCommand):
    """`scan` and `apply`: with --format json, a usage error (`--jobs 0`, an unknown option,
    no path) also prints the JSON object holding it."""

    def parse_args(self, ctx, args):
        given = list(args)  # the parser consumes `args`
        try:
            return super().parse_args(ctx, args)
        except TyperException as exc:  # click then prints the usage and exits 2
            if _wants_json(given) and getattr(exc, "exit_code", None) == 2:
                _json_error(exc.format_message() if hasattr(exc, "format_message") else str(exc))
            raise


def _config(paths: List[str], fmt: Format | None = None) -> Config:
    try:
        return load(paths[0] if paths else os.getcwd())
    except ConfigError as exc:
        _fail(str(exc), fmt)


@contextmanager
def _progress(enabled: bool):
    """A rich progress bar on a terminal; nothing when piped."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _options(paths, patterns, jobs, cfg: Config, **extra) -> RunOptions:
    from .files import display_path  # noqa: F401  (keeps import cost low for --help)

    verify = VerifySettings(
        max_examples=extra.pop("max_examples", None) or cfg.max_examples or VerifySettings.max_examples,
        timeout_s=extra.pop("timeout", None) or cfg.timeout or VerifySettings.timeout_s,
        device=(extra.pop("device", None) or cfg.device or "all"),
        grad=extra.pop("grad", False),
        workers=max(1, jobs or cfg.jobs or 1),
    )
    return RunOptions(
        paths=tuple(paths), patterns=tuple(patterns or cfg.patterns), exclude=cfg.exclude,
        jobs=jobs or cfg.jobs or 1, verify=verify,
        hints=tuple(cfg.hints.items()), root=cfg.root, **extra,
    )


def _memory_limit(cfg: Config, given: str | None = None, fmt: Format | None = None) -> int | None:
    from .memory import max_memory_option

    try:
        return max_memory_option(given if given is not None else cfg.max_memory)
    except ValueError as exc:
        _fail(f"--max-memory: {exc}", fmt)


def _check_patterns(names, fmt: Format | None = None) -> None:
    import codemods

    try:
        codemods.select(list(names))
    except codemods.RegistryError as exc:
        _fail(str(exc), fmt)


def _emit(result: RunResult, fmt: Format, diffs: bool) -> None:
    from .report import exit_code, json_report, summary_line, text_report

    if fmt is Format.json:
        typer.echo(json_report(result))
    else:
        if diffs:
            for d in result.diffs:
                typer.echo(d, nl=False)
        for line in text_report(result):
            typer.echo(line)
        _err(summary_line(result))
    raise typer.Exit(exit_code(result))


PathsArg = typer.Argument(..., help="Files or folders (searched recursively).")
PatternOpt = typer.Option(None, "--pattern", "-p", help="Only this pattern (repeatable). See `loopvec patterns`.")
JobsOpt = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes (files are analysed in parallel).")
FormatOpt = typer.Option(Format.text, "--format", help="text or json.")
NoExecOpt = typer.Option(False, "--no-exec", help="Run no user code: nothing is verified, so nothing is written "
                                                  "(each candidate is reported unverifiable).")
DeclinedOpt = typer.Option(False, "--show-declined", help="Also list loops no pattern rewrites, with the reason.")
NoCacheOpt = typer.Option(False, "--no-cache", help="Ignore and do not update .loopvec_cache/ (plans and verdicts "
                                                     "of earlier runs over unchanged files).")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised wherever the main thread is, so the run stops as on Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


@contextmanager
def _interruptible():
    """Ctrl-C or SIGTERM: the same stop (workers killed, temporary folders removed), one line,
    and the exit status a shell gives a program the signal killed (130, 143). Writes are
    atomic, so no file is left half-written."""
    # signal handlers can be set from the main thread only (a test may call from another)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
    try:
        yield
    except _Terminated:
        _err("loopvec: terminated (SIGTERM); every file is either fully rewritten or unchanged")
        raise typer.Exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        _err("loopvec: interrupted; every file is either fully rewritten or unchanged")
        raise typer.Exit(130)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _stoppable(command):
    """The whole command under `_interruptible`."""
    @functools.wraps(command)  # typer reads the parameters through it
    def run(*args, **kwargs):
        with _interruptible():
            return command(*args, **kwargs)

    return run


@app.command(cls=_ReportCommand)
def scan(
    paths: List[str] = PathsArg,
    pattern: Optional[List[str]] = PatternOpt,
    jobs: Optional[int] = JobsOpt,
    fmt: Format = FormatOpt,
    show_declined: bool = DeclinedOpt,
    no_cache: bool = NoCacheOpt,
) -> None:
    """List candidate loops: no verification, nothing written."""
    cfg = _config(paths, fmt)
    _check_patterns(pattern or cfg.patterns, fmt)
    options = _options(paths, pattern, jobs, cfg, show_declined=show_declined, cache=not no_cache)
    with _interruptible(), _progress(fmt is Format.text) as progress:
        result = run_scan(options, progress)
    _emit(result, fmt, diffs=False)


@app.command(cls=_ReportCommand)
def apply(
    paths: List[str] = PathsArg,
    pattern: Optional[List[str]] = PatternOpt,
    jobs: Optional[int] = JobsOpt,
    fmt: Format = FormatOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the unified diff; write nothing."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Also apply rewrites that rely on an assumption "
                                                        "the verifier cannot see (the report names it)."),
    show_declined: bool = DeclinedOpt,
    max_examples: Optional[int] = typer.Option(None, "--max-examples", min=1, help="Generated inputs per candidate."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, help="Seconds per candidate."),
    device: Optional[Device] = typer.Option(None, "--device", help="cpu, cuda or all (default: all available)."),
    grad: bool = typer.Option(False, "--grad", help="Also compare gradients of float inputs."),
    no_cache: bool = NoCacheOpt,
    min_speedup: Optional[float] = typer.Option(
        None, "--min-speedup", min=0.0, help="Keep a verified rewrite only if it is measurably faster than the loop "
                                              "on scaled-up inputs on which the loop runs: the median of paired "
                                              "timings at least this many times faster, and its 90% interval above "
                                              "1x (default 1.1, or [tool.loopvec] min_speedup; 0 turns the timing "
                                              "off)."),
    max_memory: Optional[str] = typer.Option(
        None, "--max-memory", help="Leave a verified rewrite as it was when its peak tensor memory on the scaled-up "
                                   "inputs exceeds this (4GiB, 512MB, off; default a quarter of RAM, or "
                                   "[tool.loopvec] max_memory)."),
    commit: bool = typer.Option(False, "--commit", help="In a git repository, commit the rewrites: one commit per "
                                                        "pattern. Refuses when a file it would change has "
                                                        "uncommitted edits."),
    no_exec: bool = NoExecOpt,
) -> None:
    """Rewrite loops whose vectorized form the verifier proves equal on generated inputs."""
    cfg = _config(paths, fmt)
    _check_patterns(pattern or cfg.patterns, fmt)
    from .gitcommit import Committer, GitError

    memory_limit = _memory_limit(cfg, max_memory, fmt)

    gate = min_speedup if min_speedup is not None else (cfg.min_speedup if cfg.min_speedup is not None
                                                        else DEFAULT_MIN_SPEEDUP)
    committer = None
    if commit:
        if dry_run:
            _fail("--commit writes and commits: it cannot be combined with --dry-run", fmt)
        try:
            committer = Committer.for_paths(paths)
        except GitError as exc:
            _fail(str(exc), fmt)
    options = _options(paths, pattern, jobs, cfg, dry_run=dry_run, unsafe=unsafe, show_declined=show_declined,
                       max_examples=max_examples, timeout=timeout,
                       device=device.value if device else None, grad=grad, cache=not no_cache,
                       min_speedup=gate or None, max_memory=memory_limit,
                       before_write=committer.check_clean if committer else None, no_exec=no_exec)
    with _interruptible(), _progress(fmt is Format.text) as progress:
        try:
            result = run_apply(options, progress)
        except GitError as exc:  # a file to change has uncommitted edits: nothing was written
            _fail(str(exc), fmt)
    if committer is not None:
        with _interruptible():  # each commit is said as it is made, also when the rest is interrupted
            try:
                committer.commit(result, options.patterns, say=_err)
            except GitError as exc:
                _err(f"loopvec: error: {exc}")
                raise typer.Exit(2)
    _emit(result, fmt, diffs=dry_run)


@app.command()
@_stoppable
def verify(
    targets: List[str] = typer.Argument(..., help="Two implementations: A.py::f B.py::g (or Cls.method)."),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", min=1),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1),
    device: Optional[Device] = typer.Option(None, "--device"),
    grad: bool = typer.Option(False, "--grad"),
    no_exec: bool = NoExecOpt,
) -> None:
    """Check that two implementations agree on generated inputs (e.g. a loop and your hand-vectorized version)."""
    from .verify import Candidate, Impl, Verdict, verify_candidates

    if len(targets) != 2:
        _err("loopvec: error: give exactly two targets, like loop.py::f fast.py::f")
        raise typer.Exit(2)
    impls = []
    for t in targets:
        path, sep, qual = t.partition("::")
        if not sep or not qual or not os.path.isfile(path):
            _err(f"loopvec: error: {t!r} is not FILE.py::FUNCTION of an existing file")
            raise typer.Exit(2)
        impls.append(Impl(os.path.abspath(path), qual))
    cfg = _config([targets[0].partition("::")[0]])
    settings = VerifySettings(
        max_examples=max_examples or cfg.max_examples or VerifySettings.max_examples,
        timeout_s=timeout or cfg.timeout or VerifySettings.timeout_s,
        device=device.value if device else (cfg.device or "all"), grad=grad)
    from .cache import cache_dir
    from .observed import observed_inputs

    # what `loopvec record` saw of the first function, if it was recorded
    hints, observed = observed_inputs(cache_dir(cfg.root), impls[0].path, impls[0].qualname)
    if no_exec:  # both functions are user code: run neither
        verdict = Verdict("unverifiable", NOT_RUN, key="cli")
    else:
        verdict = verify_candidates([Candidate(impls[0], impls[1], hints, key="cli", observed=observed)], settings)[0]
    typer.echo(f"{targets[0]} vs {targets[1]}: {verdict.status}: {verdict.message}")
    if verdict.counterexample:
        typer.echo(verdict.counterexample)
    if verdict.hint:
        typer.echo(f"hint: add `{verdict.hint}` on the def line")
    raise typer.Exit(0 if verdict.status == "verified" else (1 if verdict.status == "failed" else 2))


@app.command()
def bench(
    target: str = typer.Argument(..., help="FILE.py::FUNCTION (or FILE.py::Cls.method) whose loop loopvec rewrites."),
    shape: Optional[List[str]] = typer.Option(None, "--shape", help="NAME=[d1,d2,...]: an argument's shape, in the "
                                                                     "hint syntax (repeatable): x=[1000,64]."),
    size: Optional[List[str]] = typer.Option(None, "--size", help="DIM=N: bind a dimension by its name in the hints "
                                                                   "(repeatable); *=N binds every free one."),
    pattern: Optional[List[str]] = PatternOpt,
    device: Optional[Device] = typer.Option(None, "--device", help="cpu (default) or cuda."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads while timing."),
    target_elements: int = typer.Option(100_000, "--elements", min=1,
                                        help="Without --shape/--size: grow free dimensions until the largest "
                                             "input holds about this many elements."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0, help="Seconds for the whole measurement."),
) -> None:
    """Time a function's loop against loopvec's rewrite of it, and compare peak memory."""
    from .bench import BenchError, describe, function_request, run_one

    path, sep, qual = target.partition("::")
    if not sep or not qual or not os.path.isfile(path):
        _err(f"loopvec: error: {target!r} is not FILE.py::FUNCTION of an existing file")
        raise typer.Exit(2)
    cfg = _config([path])
    _check_patterns(pattern or cfg.patterns)
    try:
        request, patterns_used = function_request(path, qual, tuple(pattern or cfg.patterns), shape or [], size or [],
                                                  target_elements, device.value if device else "cpu", threads)
    except BenchError as exc:
        _err(f"loopvec: error: {exc}")
        raise typer.Exit(2)
    with _interruptible():
        timing = run_one(request, timeout)
    typer.echo(f"{target} ({', '.join(patterns_used)}; the rewrite is not verified here: "
               f"`loopvec apply --dry-run {path}` verifies it)")
    for line in describe(timing):
        typer.echo(line)
    raise typer.Exit({"measured": 0, "failed": 1}.get(timing.status, 2))


@app.command()
def profile(
    command: List[str] = typer.Argument(..., help="The command to profile, after `--`: "
                                                  "loopvec profile -- python train.py --epochs 1"),
    top: int = typer.Option(10, "--top", min=1, help="How many loops to list."),
    apply_top: int = typer.Option(0, "--apply-top", min=0, help="Rewrite the N costliest candidate loops "
                                                                 "(verified and timed, as `apply` does)."),
    interval_ms: float = typer.Option(5.0, "--interval", min=0.1, help="Milliseconds between samples."),
    path: Optional[List[str]] = typer.Option(None, "--path", help="Folders whose loops to rank (repeatable; "
                                                                   "default: the working directory)."),
    pattern: Optional[List[str]] = PatternOpt,
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Verify the candidates in the list."),
    no_cache: bool = NoCacheOpt,
) -> None:
    """Run a command under a sampling profiler and rank its loops by the time spent in them."""
    from . import profile as prof

    roots = list(path or [os.getcwd()])
    cfg = _config(roots)
    _check_patterns(pattern or cfg.patterns)
    with _interruptible():
        code, samples = prof.run_profiled(list(command), interval_ms / 1000)
        files = prof.python_files(samples, roots)
        gate = cfg.min_speedup if cfg.min_speedup is not None else DEFAULT_MIN_SPEEDUP
        options = _options(files or roots, pattern, None, cfg, cache=not no_cache, min_speedup=gate or None,
                           max_memory=_memory_limit(cfg))
        costs = prof.charge(samples, prof.loops_of(files, options)) if files else []
        if verify or apply_top:
            prof.verify_top(costs[:top], options, apply_top)
    for line in prof.report(costs, samples, list(command), top):
        typer.echo(line)
    if code:
        _err(f"loopvec: the profiled command exited with {code}")
    raise typer.Exit(code if code else 0)


class _CommandAfterDashes(TyperCommand):
    """`loopvec record [PATHS] -- COMMAND`: what follows `--` is the command, kept whole."""

    def parse_args(self, ctx, args):
        if "--" in args:
            k = args.index("--")
            ctx.meta["command"] = args[k + 1:]
            args = args[:k]
        return super().parse_args(ctx, args)


@app.command(cls=_CommandAfterDashes)
def record(
    ctx: typer.Context,
    paths: Optional[List[str]] = typer.Argument(None, help="Files or folders whose functions with candidate loops "
                                                           "to watch (default: the working directory); then `--` "
                                                           "and the command: loopvec record src -- python -m pytest"),
    pattern: Optional[List[str]] = PatternOpt,
    no_cache: bool = NoCacheOpt,
) -> None:
    """Run a command and record the kinds of values (and a few small samples) the functions holding candidate
    loops receive; `apply` and `verify` then draw their inputs from them."""
    from .cache import cache_dir
    from .record import plan_targets, run_recorded

    command = list(ctx.meta.get("command") or [])
    if not command:
        _err("loopvec: error: give the command after `--`: loopvec record src -- python -m pytest tests")
        raise typer.Exit(2)
    roots = list(paths or [os.getcwd()])
    cfg = _config(roots)
    _check_patterns(pattern or cfg.patterns)
    options = _options(roots, pattern, None, cfg, cache=not no_cache)
    with _interruptible():
        targets = plan_targets(options)
        if not targets:
            _err("loopvec record: no function with a candidate loop under the given paths; running nothing")
            raise typer.Exit(0)
        code, records = run_recorded(command, targets, cache_dir(options.root))
    from .files import display_path
    from .observed import describe_kinds

    seen = {(r.path, r.qualname) for r in records}
    for r in sorted(records, key=lambda r: (r.path, r.qualname)):
        typer.echo(f"{display_path(r.path)}::{r.qualname}: {r.summary()}")
        for line in describe_kinds(r):
            typer.echo(f"  {line}")
    for t in targets:
        if (t.path, t.qualname) not in seen:
            typer.echo(f"{display_path(t.path)}::{t.qualname}: not called")
    _err(f"loopvec record: {len(records)} of {len(targets)} functions with candidate loops were called; "
         f"kept in {cache_dir(options.root)}")
    if code:
        _err(f"loopvec: the recorded command exited with {code}")
    raise typer.Exit(code if code >= 0 else 128 - code)  # killed by a signal: as a shell says it


@app.command()
def patterns() -> None:
    """List the patterns with their one-line description."""
    import codemods

    for name, p in codemods.all_patterns().items():
        typer.echo(f"{name:<16} {p.SAFETY:<7} {p.DESCRIPTION}")


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"loopvec {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    pass


if __name__ == "__main__":  # pragma: no cover
    app()
