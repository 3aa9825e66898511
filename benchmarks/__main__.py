"""loopvec's benchmarks: the figures for the README and for reports.

    python -m benchmarks [--only speedup|scan|verify|profile|real|scale-file ...] [--json PATH]

speedup   every fixture rewrite pair (`fixtures/<pattern>/<case>.py` and its
          `.expected.py`): each rewritten function against its loop on scaled-up inputs
          (see `loopvec.bench`; sizes in `benchmarks/sizes.py`), on CPU and, when present,
          CUDA. Median of alternating calls, speedup as the ratio within one run, peak
          memory of one call each, geometric-mean speedup, and every rewrite that is slower.
scan      `loopvec scan` over a copy of the installed torch package's sources (a folder
          outside any git repository, so no .gitignore hides it): lines per second, CPU
          seconds, and the peak memory of the process tree, with --jobs 1 and 2, a second
          run over the unchanged tree from the cache, and `ruff check --select PERF` on the
          same tree when ruff is installed.
verify    median seconds per candidate, from `benchmarks/verify_cost.py`.
scale-file  `loopvec scan` (planning only) of one generated module of 0.1, 0.3, 1, 3 and
          10 MB (a function with a loop it rewrites every ~800 bytes, and filler): seconds,
          seconds per MB (flat when planning is linear in the file's size) and peak memory;
          also written to `benchmarks/results/scale_file.json`.
profile   the overhead of `loopvec profile`'s sampler on a CPU-bound Python loop.
real      `loopvec apply --dry-run` over installed PyTorch libraries (pinned in
          `benchmarks/real_requirements.txt`, installed when missing), and every rewrite it
          calls verified re-run on the library's own inputs (`benchmarks/real.py`); not run
          by default, since it installs packages.

loopvec's code is copied to a temporary folder first and run from there, so edits made
to the working tree while the benchmark runs do not mix into its figures. Timings on a
shared machine follow its load: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("speedup", "scan", "verify", "profile", "real", "scale-file")
DEFAULT_SECTIONS = ("speedup", "scan", "verify")


# --------------------------------------------------------------------------- helpers


def snapshot(tmp: str) -> str:
    """A copy of loopvec and its patterns to run from (see the module docstring)."""
    code = os.path.join(tmp, "code")
    for package in ("loopvec", "codemods"):
        shutil.copytree(ROOT / package, os.path.join(code, package),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return code


def machine() -> dict:
    from importlib.metadata import version

    try:
        torch_version = version("torch")
    except Exception:
        torch_version = "?"
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch_version,
        "load_average_1min_start": round(os.getloadavg()[0], 2),
    }


def table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[k])) for r in [header, *rows]) for k in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if k == 0 else str(c).rjust(w)  # noqa: E731
                              for k, (c, w) in enumerate(zip(r, widths)))
    return [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)]


def geomean(values: list[float]) -> float | None:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


class TreeMemory(threading.Thread):
    """Peak memory of a process and its descendants, sampled every 100 ms: the sum of each
    process's PSS (shared pages split between the processes that share them), so a forked
    worker is not charged for the parent's pages; RSS where PSS is not available."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, sum(_pss(p) for p in _descendants(self.pid)))


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def measured_run(cmd: list[str], cwd: str, env: dict) -> dict:
    """Wall and CPU seconds and peak tree memory of one command; its stdout."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mem = TreeMemory(proc.pid)
    mem.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    mem.done.set()
    mem.join()
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_bytes": mem.peak, "rc": proc.returncode,
            "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}


def code_env(code: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (code, env.get("PYTHONPATH")) if p)
    return env


# --------------------------------------------------------------------------- speedup


def _defs(tree: ast.Module, lines: list[str]) -> dict[str, str]:
    """qualname -> dedented source (decorators included) of top-level functions and methods."""
    out = {}

    def text(node) -> str:
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        return textwrap.dedent("".join(lines[start - 1: node.end_lineno]))

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = text(node)
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{node.name}.{sub.name}"] = text(sub)
    return out


def rewritten_functions(old: str, new: str) -> list[tuple[str, str, str]]:
    """(qualname, rewritten source, prelude) for every function the rewrite changed."""
    old_tree, new_tree = ast.parse(old), ast.parse(new)
    old_defs = _defs(old_tree, old.splitlines(keepends=True))
    new_defs = _defs(new_tree, new.splitlines(keepends=True))
    imports = lambda t: [ast.unparse(s) for s in t.body if isinstance(s, (ast.Import, ast.ImportFrom))]  # noqa: E731
    known = set(imports(old_tree))
    prelude = "\n".join(s for s in imports(new_tree) if s not in known)
    return [(q, src, prelude) for q, src in new_defs.items() if q in old_defs and old_defs[q] != src]


def _loops_by_function(case: Path, pattern: str) -> dict[str, tuple[int, int]]:
    """qualname -> (line, column) of the loop the pattern rewrites, for functions with one."""
    from loopvec.engine import plan_source

    import codemods

    # a folder that is not a pattern's (fixtures/vacuous) is planned with every pattern
    names = (pattern,) if pattern in codemods.all_patterns() else ()
    planned = plan_source(str(case), case.read_text(encoding="utf-8"), names).planned
    quals = [p.qualname for p in planned]
    return {p.qualname: (p.line, p.column) for p in planned if quals.count(p.qualname) == 1}


def speedup_section(args, tmp: str, code: str) -> dict:
    from benchmarks.sizes import MAX_LOOP_S, SIZES, TARGET_ELEMENTS
    from loopvec.bench import BenchRequest, bench, human_bytes, seconds
    from loopvec.engine import changed_lines
    from loopvec.verify.types import Impl

    requests = []
    for expected in sorted(ROOT.glob("fixtures/*/*.expected.py")):
        case = expected.with_name(expected.name[: -len(".expected.py")] + ".py")
        if not case.is_file():
            continue
        pattern, name = expected.parent.name, case.stem
        if args.filter and not any(f in f"{pattern}/{name}" for f in args.filter):
            continue
        try:
            changed = rewritten_functions(case.read_text(encoding="utf-8"), expected.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        loops = _loops_by_function(case, pattern)
        old_defs = _defs(ast.parse(case.read_text(encoding="utf-8")),
                         case.read_text(encoding="utf-8").splitlines(keepends=True))
        for qual, src, prelude in changed:
            # the reach probe: timed only on inputs where the loop runs (one loop per function)
            probe = {"loop": loops[qual], "span": changed_lines(old_defs[qual], src)} if qual in loops else {}
            sizes = {**SIZES.get(pattern, {}), **SIZES.get(f"{pattern}/{name}", {}),
                     **SIZES.get(f"{pattern}/{name}::{qual}", {})}
            for device in args.devices:
                requests.append(BenchRequest(
                    f"{pattern}/{name}::{qual}" + (f" [{device}]" if len(args.devices) > 1 else ""),
                    Impl(str(case), qual, loop=probe.get("loop")),
                    Impl(str(case), qual, src, prelude, span=probe.get("span")), sizes=tuple(sizes.items()),
                    target_elements=TARGET_ELEMENTS, max_loop_s=MAX_LOOP_S, budget_s=args.budget,
                    device=device, threads=args.threads))
    print(f"speedup: {len(requests)} rewritten functions of {len({r.key.split('::')[0] for r in requests})} "
          f"fixture pairs, {args.threads} torch thread(s), devices {', '.join(args.devices)}", flush=True)
    started = time.perf_counter()
    timings = []
    for k, req in enumerate(requests):  # one at a time, so progress shows
        t = bench([req], timeout_s=args.timeout)[0]
        timings.append(t)
        if args.verbose:
            print(f"  [{k + 1}/{len(requests)}] {req.key}: {t.status} {t.speedup or ''}", flush=True)
    rows, data = [], []
    for req, t in zip(requests, timings):
        s = t.speedup
        flag = "SLOWER" if s is not None and s < 1 else ("" if t.status == "measured" else t.status.upper())
        rows.append([req.key, t.size_text or "-", seconds(t.original_s), seconds(t.rewrite_s),
                     f"{s:.1f}x" if s is not None else "-", human_bytes(t.original_bytes),
                     human_bytes(t.rewrite_bytes), flag])
        data.append({"case": req.key, "status": t.status, "message": t.message, "sizes": dict(t.sizes),
                     "shapes": t.shapes, "device": t.device, "loop_s": t.original_s, "rewrite_s": t.rewrite_s,
                     "speedup": round(s, 3) if s is not None else None, "loop_peak_bytes": t.original_bytes,
                     "rewrite_peak_bytes": t.rewrite_bytes, "calls": t.calls})
    lines = table(rows, ["case", "sizes", "loop", "rewrite", "speedup", "loop mem", "rewrite mem", ""])
    measured = [t.speedup for t in timings if t.speedup]
    slower = [d for d in data if d["speedup"] is not None and d["speedup"] < 1]
    unmeasured = [d for d in data if d["status"] != "measured"]
    summary = {
        "functions": len(timings), "measured": len(measured),
        "geomean_speedup": round(geomean(measured), 2) if measured else None,
        "median_speedup": round(statistics.median(measured), 2) if measured else None,
        "slower_than_loop": [d["case"] for d in slower],
        "not_measured": {d["case"]: d["message"] for d in unmeasured},
        "wall_s": round(time.perf_counter() - started, 1),
        "threads": args.threads,
        "memory_measures": "CPU: peak bytes of tensor storage created by torch ops and alive at once during one "
                           "call, inputs excluded (TorchDispatchMode); CUDA: torch.cuda.max_memory_allocated",
    }
    lines.append("")
    lines.append(f"geometric-mean speedup {summary['geomean_speedup']}x over {len(measured)} measured rewrites "
                 f"(median {summary['median_speedup']}x); {len(slower)} slower than their loop, "
                 f"{len(unmeasured)} not measured")
    for d in slower:
        lines.append(f"  SLOWER: {d['case']} {d['speedup']}x at {d['shapes']}")
    for d in unmeasured:
        lines.append(f"  not measured: {d['case']}: {d['message']}")
    return {"summary": summary, "cases": data, "lines": lines}


# --------------------------------------------------------------------------- scan


def torch_sources(tmp: str, given: str | None) -> tuple[str, int, int]:
    """A copy of the torch package's .py files outside any git repository: (folder, files, lines)."""
    if given:
        src = Path(given)
    else:
        spec = importlib.util.find_spec("torch")
        src = Path(list(spec.submodule_search_locations)[0])
    dest = Path(tmp) / "tree" / src.name
    files = lines = 0
    for path in src.rglob("*.py"):
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        target.write_bytes(data)
        files += 1
        lines += data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    return str(dest), files, lines


def scan_section(args, tmp: str, code: str) -> dict:
    tree, files, lines = torch_sources(tmp, args.tree)
    print(f"scan: {files} files, {lines} lines (copy of {args.tree or 'the installed torch package'})", flush=True)
    env = code_env(code)
    work = os.path.join(tmp, "work")
    os.makedirs(work, exist_ok=True)
    runs = {}
    rows = []
    base = [sys.executable, "-m", "loopvec.cli", "scan", tree, "--format", "json"]
    for jobs in args.jobs:
        r = measured_run([*base, "--jobs", str(jobs), "--no-cache"], work, env)
        runs[f"jobs{jobs}"] = r
        rows.append([f"loopvec scan --jobs {jobs}", r])
    cached_cwd = os.path.join(tmp, "cached")
    os.makedirs(cached_cwd, exist_ok=True)
    jobs = max(args.jobs)
    first = measured_run([*base, "--jobs", str(jobs)], cached_cwd, env)
    second = measured_run([*base, "--jobs", str(jobs)], cached_cwd, env)
    runs["cache_fill"], runs["cached"] = first, second
    rows.append([f"loopvec scan --jobs {jobs}, filling the cache", first])
    rows.append([f"loopvec scan --jobs {jobs}, unchanged tree (cache)", second])
    ruff = shutil.which("ruff")
    if ruff:
        r = measured_run([ruff, "check", "--select", "PERF", "--no-cache", "--exit-zero", "--quiet", tree], work,
                         dict(os.environ))
        runs["ruff"] = r
        rows.append(["ruff check --select PERF", r])
    out_rows = []
    summary = None
    for label, r in rows:
        if label.startswith("loopvec"):
            try:
                report = json.loads(r["stdout"])
                summary = report["summary"]
                r["lines"], r["files"] = summary["lines"], summary["files"]
            except (json.JSONDecodeError, KeyError):
                r["lines"], r["files"] = lines, files
        else:
            r["lines"], r["files"] = lines, files
        r["lines_per_s"] = round(r["lines"] / r["wall_s"]) if r["wall_s"] else None
        r["lines_per_cpu_s"] = round(r["lines"] / r["cpu_s"]) if r["cpu_s"] else None
        out_rows.append([label, f"{r['wall_s']:.1f} s", f"{r['cpu_s']:.1f} s", f"{r['lines_per_s']:,}",
                         f"{r['lines_per_cpu_s']:,}" if r["lines_per_cpu_s"] else "-",
                         f"{r['peak_bytes'] / 2 ** 20:.0f} MiB", str(r["rc"])])
    for r in runs.values():
        r.pop("stdout", None)
        r["stderr"] = r["stderr"][-2000:]
    lines_out = table(out_rows, ["run", "wall", "cpu", "lines/s", "lines/cpu-s", "peak mem", "rc"])
    if not ruff:
        lines_out.append("ruff: not installed (`pip install ruff` to compare; not a loopvec dependency)")
    if summary:
        lines_out.append(f"loopvec found: {summary['files']} files, {summary['loops']} loops, "
                         f"{summary.get('candidate', 0)} candidates {summary['candidates_per_pattern']}, "
                         f"{summary['errors']} files it could not handle")
    if runs["cached"]["wall_s"]:
        ratio = runs["cache_fill"]["wall_s"] / runs["cached"]["wall_s"]
        lines_out.append(f"second run over the unchanged tree: {ratio:.1f}x faster than the first")
    return {"tree": {"files": files, "lines": lines, "source": args.tree or "installed torch"},
            "runs": runs, "summary": summary, "lines": lines_out,
            "memory_measures": "peak of the summed PSS of the process tree, sampled every 100 ms"}


# --------------------------------------------------------------------------- verify


def verify_section(args, tmp: str, code: str) -> dict:
    out = os.path.join(tmp, "verify.json")
    script = ROOT / "benchmarks" / "verify_cost.py"
    if not script.is_file():
        return {"lines": ["verify: benchmarks/verify_cost.py is not there"], "error": "missing"}
    proc = subprocess.run([sys.executable, str(script), "--json", out], cwd=str(ROOT), capture_output=True,
                          text=True, env=code_env(code))
    if not os.path.exists(out):
        return {"lines": [f"verify: verify_cost.py failed: {proc.stderr.strip()[-300:]}"], "error": proc.stderr}
    with open(out, encoding="utf-8") as fh:
        data = json.load(fh)
    return {"result": data, "lines": proc.stdout.rstrip().splitlines()}


# --------------------------------------------------------------------------- profile


_BUSY = """
def busy(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


busy({n})
"""


def profile_section(args, tmp: str, code: str) -> dict:
    from loopvec.profile import run_profiled

    script = os.path.join(tmp, "busy.py")
    with open(script, "w", encoding="utf-8") as fh:
        fh.write(_BUSY.format(n=20_000_000))
    plain, sampled = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, script], check=True)
        plain.append(time.perf_counter() - t0)
        _, samples = run_profiled([sys.executable, script], 0.005)
        sampled.append(samples.seconds)
    p, s = statistics.median(plain), statistics.median(sampled)
    overhead = (s - p) / p * 100
    return {"plain_s": round(p, 3), "profiled_s": round(s, 3), "overhead_percent": round(overhead, 1),
            "lines": [f"profile: a CPU-bound loop runs in {p:.2f} s, {s:.2f} s under `loopvec profile` "
                      f"(5 ms samples): {overhead:+.1f}% (median of 3)"]}


# --------------------------------------------------------------------------- real


def real_section(args, tmp: str, code: str) -> dict:
    from benchmarks.real import section  # imported here: benchmarks.real imports this module

    return section(args, tmp, code)


# --------------------------------------------------------------------------- scale-file


SCALE_FILE_SIZES = (100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)
# One unit of a generated module: a function whose loop loopvec rewrites (with a hint
# comment, so the hint lookup runs), then filler it reads and passes over: a class with
# a loop no pattern rewrites, and a function with no loop.
SCALE_UNIT = '''

def scale_{k}(x: torch.Tensor, s: float) -> torch.Tensor:  # loopvec: shapes x=[n]
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = x[i] * s + {k}
    return out


class Record{k}:
    """A record with no loop over a tensor: text the prefilter reads and passes over."""

    def __init__(self, name: str, values: dict) -> None:
        self.name = name
        self.values = dict(values)

    def total(self) -> float:
        # a loop over a dict's items: no pattern rewrites it
        total = 0.0
        for key, value in self.values.items():
            total += value
        return total

    def describe(self) -> str:
        return f"Record{k}({{self.name!r}}, {{len(self.values)}} values)"


def mean_{k}(x: torch.Tensor) -> torch.Tensor:
    return x.mean() if x.numel() else torch.zeros(())
'''


def scale_file_source(size: int) -> tuple[str, int]:
    """(a module of at least `size` bytes made of numbered units, at least one, how many
    units: each holds one loop loopvec rewrites)."""
    parts = ['"""A generated module: many functions with a loop over a tensor, and filler."""\n\nimport torch\n']
    total, k = len(parts[0]), 0
    while total < size or not k:
        parts.append(SCALE_UNIT.format(k=k))
        total += len(parts[-1])
        k += 1
    return "".join(parts), k


def _timed_scan(path: str, cwd: str, env: dict, limit: float) -> dict:
    """`loopvec scan` of one file (planning only: scan verifies nothing): wall and CPU
    seconds, peak memory of the process tree, candidates found; stopped at `limit` seconds."""
    cmd = [sys.executable, "-m", "loopvec.cli", "scan", path, "--no-cache", "--jobs", "1", "--format", "json"]
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    mem = TreeMemory(proc.pid)
    mem.start()
    timed_out = False
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    mem.done.set()
    mem.join()
    candidates = None
    try:
        candidates = json.loads(out)["summary"].get("candidate", 0)
    except (json.JSONDecodeError, KeyError, TypeError):
        pass
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_bytes": mem.peak, "rc": proc.returncode,
            "timed_out": timed_out, "candidates": candidates, "stderr": err.decode(errors="replace")[-2000:]}


def scale_file_section(args, tmp: str, code: str) -> dict:
    env = code_env(code)
    folder = os.path.join(tmp, "scale-file")
    os.makedirs(folder, exist_ok=True)
    sizes = [int(mb * 1e6) for mb in args.file_sizes] if args.file_sizes else list(SCALE_FILE_SIZES)
    # the cost of starting loopvec and loading what planning uses, measured on a file with
    # one unit, is not the file's
    small = os.path.join(folder, "one_unit.py")
    Path(small).write_text(scale_file_source(1)[0], encoding="utf-8")
    startup = min(_timed_scan(small, folder, env, args.scale_timeout)["cpu_s"] for _ in range(3))
    # CPU seconds: on a shared machine wall time follows the others' load
    print(f"scale-file: `loopvec scan` of one generated file per size, CPU seconds (startup {startup:.2f} s, "
          f"subtracted); at most {args.scale_timeout:g} s of wall time each", flush=True)
    runs = []
    for size in sizes:
        source, units = scale_file_source(size)
        path = os.path.join(folder, f"generated_{size}.py")
        Path(path).write_text(source, encoding="utf-8")
        mb = len(source.encode("utf-8")) / 1e6
        r = _timed_scan(path, folder, env, args.scale_timeout)
        net = max(r["cpu_s"] - startup, 0.0)
        r.update({"size_bytes": len(source.encode("utf-8")), "lines": source.count("\n"), "units": units,
                  "net_s": round(net, 2), "s_per_mb": None if r["timed_out"] else round(net / mb, 2)})
        runs.append(r)
        done = f"{net:.1f} s CPU, {r['wall_s']:.1f} s wall"
        print(f"  {mb:6.2f} MB: {'timed out' if r['timed_out'] else done}", flush=True)
        if r["timed_out"]:
            break  # a larger file takes longer still
    rows = [[f"{r['size_bytes'] / 1e6:.2f} MB", f"{r['lines']:,}", f"{r['units']:,}",
             str(r["candidates"]) if r["candidates"] is not None else "-",
             f">{args.scale_timeout:g} s" if r["timed_out"] else f"{r['net_s']:.1f} s", f"{r['wall_s']:.1f} s",
             f"{r['s_per_mb']:.1f}" if r["s_per_mb"] is not None else "-",
             f"{r['peak_bytes'] / 2 ** 20:.0f} MiB", f"{r['peak_bytes'] / r['size_bytes']:.0f}"]
            for r in runs]
    lines = table(rows, ["file", "lines", "units", "candidates", "CPU", "wall", "CPU s/MB", "peak mem",
                         "mem/byte"])
    per_mb = [r["s_per_mb"] for r in runs if r["s_per_mb"] is not None]
    spread = round(max(per_mb) / min(per_mb), 2) if len(per_mb) > 1 and min(per_mb) > 0 else None
    lines.append("")
    lines.append(f"CPU seconds per MB from the smallest to the largest file: {', '.join(f'{v:.1f}' for v in per_mb)}"
                 + (f" (largest / smallest: {spread}x)" if spread else ""))
    missed = [r for r in runs if not r["timed_out"] and r["candidates"] != r["units"]]
    for r in missed:
        lines.append(f"  {r['size_bytes'] / 1e6:.2f} MB: {r['candidates']} candidates for {r['units']} loops "
                     f"(rc {r['rc']}): {r['stderr'].strip()[-300:]}")
    result = {"startup_s": startup, "runs": runs, "s_per_mb_spread": spread, "lines": lines,
              "measures": "CPU seconds (user + system) of `loopvec scan FILE --no-cache --jobs 1` less those of a "
                          "file of one unit (net_s, s_per_mb), its wall seconds, and the peak of the summed PSS "
                          "of the process tree, sampled every 100 ms"}
    out = ROOT / "benchmarks" / "results" / "scale_file.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), **{k: v for k, v in result.items() if k != "lines"}},
                              indent=2) + "\n", encoding="utf-8")
    lines.append(f"wrote {out.relative_to(ROOT)}")
    return result


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=SECTIONS, help="a section to run (repeatable)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "latest.json"), metavar="PATH")
    parser.add_argument("--tree", help="the tree to scan (default: the installed torch package)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="scan with these --jobs values")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while timing rewrites")
    parser.add_argument("--budget", type=float, default=1.5, help="seconds of timed calls per rewrite")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per rewrite at most")
    parser.add_argument("--filter", action="append", help="only fixture cases containing this text")
    parser.add_argument("--lib", action="append", help="real: only this library (repeatable)")
    parser.add_argument("--file-sizes", type=float, nargs="+", metavar="MB",
                        help="scale-file: generated file sizes in MB (default 0.1 0.3 1 3 10)")
    parser.add_argument("--scale-timeout", type=float, default=900.0, help="scale-file: seconds per file at most")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    sections = tuple(dict.fromkeys(args.only or DEFAULT_SECTIONS))
    results: dict = {"machine": machine(), "sections": list(sections)}
    with tempfile.TemporaryDirectory(prefix="loopvec-bench-") as tmp:
        code = snapshot(tmp)
        sys.path.insert(0, code)  # loopvec from the snapshot, and the bench workers with it
        import torch

        args.devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
        results["machine"]["cuda"] = torch.cuda.is_available()
        for name in sections:
            print(f"== {name}", flush=True)
            started = time.perf_counter()
            part = globals()[f"{name.replace('-', '_')}_section"](args, tmp, code)
            part["section_wall_s"] = round(time.perf_counter() - started, 1)
            for line in part["lines"]:
                print(line)
            print(flush=True)
            results[name] = part
    results["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"machine: {results['machine']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
