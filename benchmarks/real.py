"""The real-code check: loopvec over installed PyTorch libraries, and every rewrite it
calls verified re-run on the library's own inputs.

    python -m benchmarks --only real [--lib kornia ...]

1. Installs the libraries pinned in `benchmarks/real_requirements.txt` into the running
   environment when one is missing (`pip install --no-deps -r`, so pip never replaces
   torch).
2. Runs `loopvec apply --dry-run --format json --no-cache --min-speedup 0` over each
   library's installed sources (the files named one by one, because discovery leaves out
   what a virtual environment or `.gitignore` holds), from an empty temporary folder, with
   a time limit per library. The speed gate is off so that every rewrite the verifier
   passes is checked, also those the gate would drop. A listing of the package folder
   before and after shows that nothing was written into it.
3. Counts per library: loops, candidates, verified, failed verification, and unverifiable
   by reason class (`reason_class`).
4. Re-runs each verified rewrite on realistic inputs (`benchmarks/real_inputs.py`, keyed
   by `"lib:module.qualname"`): the finding's diff is applied to the module text in memory,
   the rewritten function is compiled into a copy of the real module's namespace
   (`loopvec.verify.loading.load`), and the original and the rewrite are called on the
   same inputs, directly or through the library's public API with the function swapped.
   The original is the probed copy of the verifier, so the check also says whether the
   loop ran. Each rewrite is `correct` (agrees on every realistic input that reaches the
   loop), `WRONG` (differs, or raises where the original did not) or `unchecked` (no
   entry, the entry never reaches the loop, or the rewrite cannot be built). The check
   runs in a subprocess per library (`python -m benchmarks.real check IN OUT`).

Writes `benchmarks/results/real.json`. The target is 0 WRONG.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "benchmarks" / "real_requirements.txt"
RESULTS = ROOT / "benchmarks" / "results" / "real.json"


@dataclass(frozen=True)
class Library:
    name: str  # the key prefix in `real_inputs.INPUTS`, and --lib
    dist: str  # the distribution in PINS
    package: str  # the import name
    folders: tuple[str, ...] = ()  # sub-folders of the package to run over; () = all of it
    limit_s: float = 200.0  # loopvec's time over this library (15-80 s today on 2 busy cores)


# Whole packages: `loopvec scan` finds 12-19 candidates in each, and `apply` over one
# takes 15-50 s on 2 cores, so no restriction to sub-folders is needed today.
LIBRARIES = (
    Library("torchmetrics", "torchmetrics", "torchmetrics"),
    Library("kornia", "kornia", "kornia"),
    Library("monai", "monai", "monai"),
    Library("torch_geometric", "torch-geometric", "torch_geometric"),
)
CHECK_LIMIT_S = 120.0  # the realistic-input check of one library's rewrites (10-30 s today)

# Unverifiable messages, grouped: (class, pattern), the first that matches wins.
REASONS = (
    ("loop never ran", re.compile(r"loop never ran|never reached|did not reach|returned at line")),
    ("module failed to import", re.compile(r"module failed to import|failed to import")),
    ("too few inputs ran", re.compile(r"only \d+ of \d+ generated inputs")),
    ("needs arguments to build instance", re.compile(r"needs arguments")),
    ("cannot probe the loop", re.compile(r"cannot probe")),
    ("nested function", re.compile(r"nested function")),
)


def reason_class(message: str) -> str:
    """The class of an unverifiable finding's message (`REASONS`), else "other"."""
    for name, pattern in REASONS:
        if pattern.search(message or ""):
            return name
    return "other"


# --------------------------------------------------------------------------- install


def read_pins(path: Path = PINS) -> dict[str, str]:
    """distribution -> pinned version, for the `name==version` lines of the pin file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins[name] = version
    return pins


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def ensure_installed(path: Path = PINS) -> dict:
    """Install the pin file when a pinned distribution is missing or at another version;
    what was there before, what is there after, and torch's version before and after."""
    pins = read_pins(path)
    before = {dist: _installed(dist) for dist in pins}
    torch_before = _installed("torch")
    wanted = [d for d, v in pins.items() if before[d] != v]
    result = {"pins": pins, "installed_before": before, "torch": torch_before, "pip": None}
    if wanted:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "-r", str(path)],
                              capture_output=True, text=True)
        result["pip"] = {"rc": proc.returncode, "stderr": proc.stderr[-2000:], "for": wanted}
        importlib.invalidate_caches()
    result["installed"] = {dist: _installed(dist) for dist in pins}
    result["torch_after"] = _installed("torch")
    return result


# --------------------------------------------------------------------------- loopvec run


def package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def package_files(lib: Library) -> list[str]:
    base = package_dir(lib.package)
    if base is None:
        return []
    roots = [base / f for f in lib.folders] if lib.folders else [base]
    return sorted(str(p) for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime) of every file under `folder` but bytecode caches."""
    out = {}
    for p in folder.rglob("*"):
        if "__pycache__" in p.parts or not p.is_file():
            continue
        st = p.stat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def run_loopvec(lib: Library, files: list[str], cwd: str, env: dict) -> dict:
    """`loopvec apply --dry-run` over `files`: its JSON report, or an "error"."""
    cmd = [sys.executable, "-m", "loopvec.cli", "apply", "--dry-run", "--format", "json", "--no-cache",
           "--jobs", "2", "--min-speedup", "0", *files]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=lib.limit_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {lib.limit_s:.0f} s", "wall_s": lib.limit_s}
    wall = round(time.perf_counter() - started, 1)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": f"no JSON report (rc {proc.returncode}): {proc.stderr.strip()[-500:]}", "wall_s": wall}
    report["wall_s"] = wall
    return report


def counts(report: dict) -> dict:
    """The figures of one library's report."""
    summary = report.get("summary", {})
    findings = report.get("findings", [])
    reasons: dict[str, int] = {}
    for f in findings:
        if f["status"] == "unverifiable":
            name = reason_class(f.get("message", ""))
            reasons[name] = reasons.get(name, 0) + 1
    by_status = lambda s: sum(f["status"] == s for f in findings)  # noqa: E731
    return {
        "files": summary.get("files", 0), "lines": summary.get("lines", 0), "loops": summary.get("loops", 0),
        "candidates": sum(summary.get("candidates_per_pattern", {}).values()),
        "verified": by_status("verified"), "failed-verification": by_status("failed-verification"),
        "unverifiable": by_status("unverifiable"), "unverifiable_by_reason": dict(sorted(reasons.items())),
        "errors": len(report.get("errors", [])),
    }


# --------------------------------------------------------------------------- diffs

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class DiffError(Exception):
    pass


def apply_diff(text: str, diff: str) -> str:
    """`text` with the unified diff `diff` applied; DiffError when a hunk does not match."""
    old = text.split("\n")
    out: list[str] = []
    at = 0  # next line of `old` not yet copied
    lines = diff.split("\n")
    k = 0
    while k < len(lines):
        m = _HUNK.match(lines[k])
        k += 1
        if not m:
            continue
        start = int(m.group(1)) - (0 if m.group(2) == "0" else 1)
        if start < at:
            raise DiffError(f"hunk at line {start + 1} overlaps the previous one")
        out += old[at:start]
        at = start
        while k < len(lines) and not lines[k].startswith("@@"):
            line = lines[k]
            k += 1
            if line.startswith("\\"):  # "\ No newline at end of file"
                continue
            if line.startswith("+"):
                out.append(line[1:])
                continue
            if not line and k == len(lines):  # the diff's own final newline
                continue
            tag, body = (line[:1], line[1:]) if line else (" ", "")
            if tag not in " -":
                raise DiffError(f"unexpected diff line {line!r}")
            if at >= len(old) or old[at] != body:
                raise DiffError(f"line {at + 1} does not match the diff: {body!r}")
            at += 1
            if tag == " ":
                out.append(body)
    out += old[at:]
    return "\n".join(out)


def rewritten(text: str, diff: str, qualname: str) -> tuple[str, str, tuple[int, ...]]:
    """(dedented source, prelude, span) of `qualname` after `diff`: what the verifier
    compiles, and the lines of that source the rewrite put in (for the reach probe)."""
    from benchmarks.__main__ import _defs, rewritten_functions
    from loopvec.engine import changed_lines

    new = apply_diff(text, diff)
    for qual, source, prelude in rewritten_functions(text, new):
        if qual == qualname:
            before = _defs(ast.parse(text), text.splitlines(keepends=True))[qual]
            return source, prelude, changed_lines(before, source)
    raise DiffError(f"the diff does not change {qualname}")


def module_name(path: str) -> str:
    """The dotted name `path` is imported by (walking up while `__init__.py` exists)."""
    p = Path(path)
    parts = [] if p.name == "__init__.py" else [p.stem]
    folder = p.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def input_key(lib: str, path: str, qualname: str) -> str:
    return f"{lib}:{module_name(path)}.{qualname}"


# --------------------------------------------------------------------------- the check (worker side)


def _bindings(original: Any) -> list[tuple[Any, str]]:
    """Every module attribute bound to `original`: a function imported under other names
    (`from .x import f`) is reached through those too."""
    out = []
    for module in list(sys.modules.values()):
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        out += [(module, name) for name, value in items if value is original]
    return out


class Swap:
    """Put `replacement` where the function `loaded` stands (its class, or each module
    binding of the module's function) for the length of a `with` block."""

    def __init__(self, loaded: Any, replacement: Any) -> None:
        name = loaded.impl.qualname.rpartition(".")[2]
        if loaded.owner is not None:
            self.slots = [(loaded.owner, name)]
        else:
            from loopvec.verify.loading import import_file

            module = import_file(Path(loaded.impl.path).resolve())
            self.slots = _bindings(getattr(module, name)) or [(module, name)]
        self.replacement = replacement
        self.saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> "Swap":
        for holder, name in self.slots:
            # a class's own attribute (a staticmethod object, not the function it gives)
            value = holder.__dict__[name] if isinstance(holder, type) else getattr(holder, name)
            self.saved.append((holder, name, value))
            setattr(holder, name, self.replacement)
        return self

    def __exit__(self, *exc) -> None:
        for holder, name, value in reversed(self.saved):
            setattr(holder, name, value)
        self.saved.clear()


class _self_from_entry:
    """`load` refuses a method of a class whose constructor needs arguments, because the
    verifier builds `self` itself; here each entry builds it (`Call.instance`). For the
    length of the load, the class shows a signature without parameters."""

    def __init__(self, path: str, qualname: str) -> None:
        self.path, self.owner_path = path, qualname.rpartition(".")[0]
        self.owner: Any = None
        self.saved: Any = None

    def __enter__(self) -> None:
        import inspect

        from loopvec.verify.loading import LoadError, import_file

        if not self.owner_path:
            return
        try:
            obj: Any = import_file(Path(self.path).resolve())
            for part in self.owner_path.split("."):
                obj = getattr(obj, part)
        except (LoadError, AttributeError):  # load says why, with its own words
            return
        if isinstance(obj, type):
            self.owner, self.saved = obj, obj.__dict__.get("__signature__")
            obj.__signature__ = inspect.Signature()

    def __exit__(self, *exc) -> None:
        if self.owner is None:
            return
        if self.saved is None:
            del self.owner.__signature__
        else:
            self.owner.__signature__ = self.saved


def _direct(loaded: Any, call: Any):
    """(args, kwargs) -> (value, self or None) for `oracle.run`."""
    if loaded.owner is None or loaded.definition.static:
        func = getattr(loaded.target, "__func__", loaded.target)
        return lambda args, kwargs: (func(*args, **kwargs), None)

    def run(args: tuple, kwargs: dict) -> tuple[Any, Any]:
        instance = call.instance()
        return loaded.target.__get__(instance, loaded.owner)(*args, **kwargs), instance

    return run


def _through(loaded: Any, call: Any):
    def run(args: tuple, kwargs: dict) -> tuple[Any, Any]:
        with Swap(loaded, loaded.target):
            return call.through(), None

    return run


def check_finding(lib: str, finding: dict, seed: int = 0, original_only: bool = False) -> dict:
    """Run one verified rewrite and its original on the realistic inputs of its entry.
    `original_only` runs just the original, to try an entry out (`entries` below): each
    call's iterations of the loop, and what it raised."""
    from loopvec.verify.loading import LoadError, load, read_source
    from loopvec.verify.oracle import describe_error, judge, run, seed_everything
    from loopvec.verify.types import Impl

    from benchmarks import real_inputs

    path, qualname = finding["path"], finding["function"]
    key = input_key(lib, path, qualname)
    out: dict[str, Any] = {"key": key, "pattern": finding["pattern"], "safety": finding.get("safety"),
                           "line": finding["line"], "verifier": finding.get("status"), "status": "unchecked", "why": "",
                           "calls": []}
    make = real_inputs.INPUTS.get(key)
    # no entry: nothing says what callers pass, so nothing to check against
    if make is None:
        out["why"] = "no realistic-input entry"
        return out
    try:
        source, prelude, span = ("", "", ()) if original_only else rewritten(read_source(Path(path)),
                                                                              finding["diff"], qualname)
    except (DiffError, SyntaxError) as e:
        out["why"] = f"cannot rebuild the rewrite: {e}"
        return out
    try:
        with _self_from_entry(path, qualname):
            try:
                ref = load(Impl(path, qualname, loop=(finding["line"], finding["column"])))
            except LoadError as e:  # the probe cannot find the loop: compare without reach figures
                out["probe"] = e.message
                ref = load(Impl(path, qualname))
            cand = None if original_only else load(Impl(path, qualname, source=source, prelude=prelude, span=span))
    except LoadError as e:
        out["why"] = f"cannot load: {e.message}"
        return out
    seed_everything(seed)
    calls = make()
    names = [p.name for p in ref.definition.params()]
    reached = 0
    for k, call in enumerate(calls):
        label = call.label or f"call {k + 1}"
        side = _through if call.through is not None else _direct
        if ref.probe is not None:
            ref.probe.reset()
        a = run(side(ref, call), tuple(call.args), dict(call.kwargs), seed, "original")
        iterations = ref.probe.iterations if ref.probe is not None else None
        record: dict[str, Any] = {"label": label, "iterations": iterations}
        out["calls"].append(record)
        if a.error is not None:  # outside the function's domain: the entry is wrong, not the rewrite
            record["result"] = f"original raised {describe_error(a.error)}"
            continue
        if cand is None:
            record["result"] = "ran"
            reached += iterations is None or iterations >= 2
            continue
        if cand.probe is not None:
            cand.probe.reset()
        b = run(side(cand, call), tuple(call.args), dict(call.kwargs), seed, "rewrite")
        record["span_ran"] = cand.probe.span_ran if cand.probe is not None else None
        difference = judge(a, b, names)
        if difference is not None:
            record["result"] = f"differs: {difference.text()}"
            if out["status"] != "WRONG":
                out["status"], out["why"] = "WRONG", f"{label}: {difference.text()}"
            continue
        record["result"] = "same"
        # reached: the loop ran twice or more, and the rewritten code ran in its place
        reached += (iterations is None or iterations >= 2) and record["span_ran"] is not False
    agreed = [c for c in out["calls"] if c["result"] in ("same", "ran")]
    if out["status"] == "WRONG":
        return out
    if original_only:
        out["status"] = "ran"
        return out
    if not agreed:
        out["why"] = "the original raised on every realistic input"
    elif not reached:
        out["why"] = "no realistic input reached the loop (two or more iterations) and the rewritten code"
    else:
        out["status"] = "correct"
        out["why"] = f"agreed on {len(agreed)} realistic input(s), {reached} reaching the loop"
        if out.get("probe"):
            out["why"] = f"agreed on {len(agreed)} realistic input(s); whether they reach the loop is not known " \
                         f"({out['probe']})"
    return out


def check_all(items: list[dict], out_path: str) -> None:
    """The worker: check each {"lib", "finding"}, writing the results after each one."""
    import warnings

    warnings.simplefilter("ignore")
    results = []
    for item in items:
        try:
            result = check_finding(item["lib"], item["finding"])
        except Exception as e:  # a broken entry or library: say so, keep checking the others
            f = item["finding"]
            result = {"key": input_key(item["lib"], f["path"], f["function"]), "line": f["line"],
                      "verifier": f["status"], "status": "unchecked",
                      "why": f"the check crashed: {type(e).__name__}: {e}"}
        results.append(result)
        Path(out_path).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")


def run_checks(items: list[dict], tmp: str, env: dict, limit_s: float = CHECK_LIMIT_S) -> list[dict]:
    """`check_all` in a subprocess with a time limit; the rewrites it did not reach are
    unchecked."""
    src, dst = os.path.join(tmp, "check-in.json"), os.path.join(tmp, "check-out.json")
    Path(src).write_text(json.dumps(items), encoding="utf-8")
    if os.path.exists(dst):
        os.remove(dst)
    why = None
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.real", "check", src, dst], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=limit_s)
        if proc.returncode:
            why = f"the check process failed: {proc.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        why = f"the check timed out after {limit_s:.0f} s"
    done = json.loads(Path(dst).read_text(encoding="utf-8")) if os.path.exists(dst) else []
    for item in items[len(done):]:
        f = item["finding"]
        done.append({"key": input_key(item["lib"], f["path"], f["function"]), "line": f["line"],
                     "verifier": f["status"], "status": "unchecked", "why": why or "not reached by the check"})
    return done


# --------------------------------------------------------------------------- the section


def section(args, tmp: str, code: str) -> dict:
    from benchmarks import real_inputs
    from benchmarks.__main__ import code_env, table

    install = ensure_installed()
    if install["torch_after"] != install["torch"]:  # pip replaced torch after all: the figures are not comparable
        lines_head = [f"WARNING: installing the libraries changed torch {install['torch']} -> {install['torch_after']}"]
    else:
        lines_head = []
    only = set(getattr(args, "lib", None) or ())
    libs = [lib for lib in LIBRARIES if not only or lib.name in only]
    env = code_env(code)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(ROOT)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ written beside the library's files
    per_lib, checks, other_checks, lines = {}, [], [], lines_head
    for lib in libs:
        version = install["installed"].get(lib.dist)
        files = package_files(lib)
        if not files:
            per_lib[lib.name] = {"error": f"{lib.dist} is not installed"}
            lines.append(f"{lib.name}: not installed ({(install.get('pip') or {}).get('stderr', '')[-200:]})")
            continue
        work = os.path.join(tmp, f"real-{lib.name}")
        os.makedirs(work, exist_ok=True)
        base = package_dir(lib.package)
        before = listing(base)
        print(f"real: {lib.name} {version}: loopvec apply --dry-run over {len(files)} files", flush=True)
        report = run_loopvec(lib, files, work, env)
        untouched = listing(base) == before
        entry = {"version": version, "folders": list(lib.folders) or ["(all)"], "wall_s": report.get("wall_s"),
                 "package_untouched": untouched, "error": report.get("error")}
        if "error" not in report:
            entry.update(counts(report))
            entry["findings"] = [{k: f.get(k) for k in ("path", "line", "column", "function", "pattern", "status",
                                                         "safety", "assumptions", "message", "reached", "iterations")}
                                 | {"path": str(Path(f["path"]).relative_to(base.parent)),
                                    "reason": reason_class(f["message"]) if f["status"] == "unverifiable" else None}
                                 for f in report["findings"]]
            # The verified rewrites first, so a time-out cuts only the others: those the
            # verifier refused, checked too where an entry exists, to see whether it was right.
            verified = [f for f in report["findings"] if f["status"] == "verified"]
            others = [f for f in report["findings"] if f["status"] != "verified" and f.get("diff")
                      and input_key(lib.name, f["path"], f["function"]) in real_inputs.INPUTS]
            items = [{"lib": lib.name, "finding": f} for f in verified + others]
            if items:
                print(f"real: {lib.name}: checking {len(verified)} verified and {len(others)} other rewrite(s) on "
                      "realistic inputs", flush=True)
                done = run_checks(items, work, env)
                checks += done[:len(verified)]
                other_checks += done[len(verified):]
        per_lib[lib.name] = entry
    tally = {s: sum(c["status"] == s for c in checks) for s in ("correct", "WRONG", "unchecked")}
    refused = {}  # (verifier status, status on the library's inputs) -> count
    for c in other_checks:
        refused[f"{c['verifier']} / {c['status']}"] = refused.get(f"{c['verifier']} / {c['status']}", 0) + 1
    reasons: dict[str, int] = {}
    for entry in per_lib.values():
        for name, n in entry.get("unverifiable_by_reason", {}).items():
            reasons[name] = reasons.get(name, 0) + n
    rows = [[name, e.get("version") or "-", str(e.get("loops", "-")), str(e.get("candidates", "-")),
             str(e.get("verified", "-")), str(e.get("failed-verification", "-")), str(e.get("unverifiable", "-")),
             f"{e['wall_s']} s" if e.get("wall_s") is not None else "-",
             "yes" if e.get("package_untouched") else ("NO" if "package_untouched" in e else "-")]
            for name, e in per_lib.items()]
    lines += table(rows, ["library", "version", "loops", "candidates", "verified", "failed", "unverifiable",
                          "loopvec", "untouched"])
    for name, e in per_lib.items():
        if e.get("error"):
            lines.append(f"  {name}: {e['error']}")
    lines.append("")
    lines.append("unverifiable by reason: " + (", ".join(f"{k} {v}" for k, v in sorted(reasons.items(),
                                                                                        key=lambda kv: -kv[1]))
                                               or "none"))
    wrong_by_safety = {}
    for c in checks:
        if c["status"] == "WRONG":
            wrong_by_safety[c.get("safety")] = wrong_by_safety.get(c.get("safety"), 0) + 1
    tally["WRONG_by_safety"] = wrong_by_safety
    split = ", ".join(f"{n} {k}" for k, n in sorted(wrong_by_safety.items(), key=lambda kv: str(kv[0])))
    lines.append(f"verified rewrites on the libraries' own inputs: {len(checks)} checked, {tally['correct']} correct, "
                 f"{tally['WRONG']} WRONG{f' ({split})' if split else ''}, {tally['unchecked']} unchecked "
                 "(target: 0 WRONG; `unsafe` ones are written only with --unsafe)")
    for c in checks:
        lines.append(f"  {c['status']:9} {c['key']} [{c.get('pattern', '?')}, {c.get('safety', '?')}]: "
                     f"{c['why'].splitlines()[0] if c.get('why') else ''}")
    lines.append(f"rewrites the verifier did not pass, on the same inputs ({len(other_checks)} with an entry; "
                 "verifier / library inputs): " + (", ".join(f"{k} {v}" for k, v in sorted(refused.items())) or "none"))
    for c in other_checks:
        if c["status"] == "correct":  # a refusal that cost a correct rewrite
            lines.append(f"  correct but {c['verifier']}: {c['key']} line {c['line']}")
    result = {"install": install, "libraries": per_lib, "checks": checks, "check_tally": tally,
              "other_checks": other_checks, "other_tally": refused, "unverifiable_by_reason": reasons,
              "lines": lines}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    lines.append(f"wrote {RESULTS.relative_to(ROOT)}")
    return result


def try_entries(results: Path = RESULTS) -> list[str]:
    """Each realistic-input entry run through the original alone, for the findings of the
    last run (any status): whether its calls run and reach the loop. For writing entries
    before the verifier passes their rewrites."""
    import warnings

    from benchmarks import real_inputs

    warnings.simplefilter("ignore")
    data = json.loads(results.read_text(encoding="utf-8"))
    lines, seen = [], set()
    for lib, entry in data["libraries"].items():
        base = package_dir(entry["findings"][0]["path"].split("/")[0]).parent if entry.get("findings") else None
        for f in entry.get("findings", []):
            f = {**f, "path": str(base / f["path"])}
            key = input_key(lib, f["path"], f["function"])
            if key not in real_inputs.INPUTS or (key, f["line"]) in seen:
                continue
            seen.add((key, f["line"]))
            try:
                out = check_finding(lib, f, original_only=True)
            except Exception as e:  # a broken entry: say so and go on
                lines.append(f"{key} line {f['line']}: crashed: {type(e).__name__}: {e}")
                continue
            calls = "".join(f"\n    {c['label']}: {c['result']} ({c['iterations']} it.)" for c in out["calls"])
            lines.append(f"{key} line {f['line']} [{f['status']}]: {out['why'] if out['status'] != 'ran' else ''}"
                         f"{calls}")
    known = {k for k, _ in seen}
    lines += [f"{key}: no finding of the last run" for key in real_inputs.INPUTS if key not in known]
    return lines


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "check":
        items = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        check_all(items, argv[2])
        return 0
    if argv[:1] == ["entries"]:
        print("\n".join(try_entries(Path(argv[1]) if len(argv) > 1 else RESULTS)))
        return 0
    print("usage: python -m benchmarks.real check IN.json OUT.json | entries [RESULTS.json]\n"
          "(the section itself runs from python -m benchmarks --only real)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
