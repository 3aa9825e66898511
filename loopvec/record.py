"""`loopvec record [PATHS] -- COMMAND`: the values the functions holding candidate loops receive.

First the paths are planned, as `scan` plans them, to know which functions hold a
candidate loop and, for a method, which `self.X` it reads. Then the command runs
unchanged, with a `sitecustomize` put first on `PYTHONPATH` (as `loopvec profile` does):
every Python process it starts installs a `sys.setprofile` hook (and `threading.setprofile`
for new threads) that looks at 'call' events only, and does work only for the code objects
of those functions (matched once per code object by file and qualified name). For each
call it describes every argument and attribute (`observed.describe`: dtype, shape, device,
layout, list lengths and item kinds, module classes); it keeps at most `MAX_SIGNATURES`
distinct signatures per function and, for the first `MAX_SAMPLES` new signatures whose
tensors are all small, a copy of the values themselves (`torch.save`). At exit each process
writes what it saw; the parent merges it into `.loopvec_cache/observed/`, one
`observed.Record` per function, replacing earlier recordings of the functions it saw.

The hook is a Python function called at every call, return and builtin call of the
recorded program; for all but the watched functions it returns after one dict lookup.
Code that spends its time in torch kernels hardly notices; code made of many tiny Python
calls runs several times slower while recorded. It leaves `sys.settrace` (coverage tools,
debuggers) alone. A process that ends with `os._exit` (some worker pools) writes nothing.
"""

from __future__ import annotations

import ast
import atexit
import copy
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .observed import SELF, Record, Signature, describe

DIR_ENV = "LOOPVEC_RECORD_DIR"
TARGETS_ENV = "LOOPVEC_RECORD_TARGETS"
MAX_SIGNATURES = 50  # distinct signatures kept per function
MAX_SAMPLES = 3  # calls kept as values per function
SAMPLE_ELEMENTS = 10_000  # a sample's tensors each hold fewer elements than this (storage included)
_SAMPLE_TOTAL = 100_000  # and all of them together
_SAMPLE_ITEMS = 1_000  # list items in a sample
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_CO_GENERATOR = 0x20 | 0x80 | 0x200  # generator, coroutine, async generator: 'call' also means resume

_SITECUSTOMIZE = '''\
# written by `loopvec record`: start its recorder, then run any sitecustomize it shadows
import os as _os
import sys as _sys

if _os.environ.get("{dir_env}"):
    _sys.path.insert(0, {root!r})
    try:
        from loopvec.record import start_recorder as _start
        _start()
    except Exception as _e:  # recording must never break the program
        _sys.stderr.write(f"loopvec record: recorder not started: {{_e}}\\n")
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


@dataclass(frozen=True)
class Target:
    """A function that holds a candidate loop."""

    path: str  # resolved
    qualname: str
    firstlineno: int  # of its first decorator, else of the def: `co_firstlineno`
    method: bool  # its first parameter is the instance
    attrs: tuple[str, ...] = ()  # the `self.X` it reads


# --------------------------------------------------------------------------- which functions


def targets_of(sources: list[tuple[str, str, list[str]]]) -> list[Target]:
    """[(path, text, qualnames)] -> the targets, with the attributes each method reads."""
    out = []
    for path, text, qualnames in sources:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for qualname in dict.fromkeys(qualnames):
            node, in_class = _find(tree, qualname)
            if node is None:
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            static = any(isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod")
                         for d in node.decorator_list)
            params = [*node.args.posonlyargs, *node.args.args]
            method = in_class and not static and bool(params)
            attrs = _attributes_read(node, params[0].arg) if method else ()
            out.append(Target(str(Path(path).resolve()), qualname, first, method, attrs))
    return out


def _find(tree: ast.Module, qualname: str) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef | None, bool]:
    body, in_class = tree.body, False
    parts = qualname.split(".")
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if last else (ast.ClassDef,)
        found = [n for n in body if isinstance(n, kinds) and n.name == part]
        if not found:
            return None, False
        if last:
            return found[-1], in_class
        body, in_class = found[-1].body, True
    return None, False


def _attributes_read(node: ast.AST, self_name: str) -> tuple[str, ...]:
    """`self.X` read anywhere in the method (the first name of a chain: `self.cfg.eps` -> cfg)."""
    reads = [n for n in ast.walk(node)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == self_name
             and isinstance(n.ctx, ast.Load)]
    return tuple(dict.fromkeys(n.attr for n in sorted(reads, key=lambda n: (n.lineno, n.col_offset))))


def plan_targets(options: Any) -> list[Target]:
    """The functions of `options.paths` that hold a candidate loop (planned as `scan` does)."""
    from .engine import FilePlan
    from .runner import plan_all

    results, _, _ = plan_all(options)
    sources = []
    for res in results:
        if not isinstance(res, FilePlan):
            continue
        qualnames = [p.qualname for p in res.planned if p.qualname]
        if qualnames:
            sources.append((res.path, res.source, qualnames))
    return targets_of(sources)


# --------------------------------------------------------------------------- the recorder (in the recorded process)


class _Calls:
    """What one process saw of one function."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.signatures: dict[Signature, int] = {}
        self.samples: list[str] = []
        self.calls = 0


class Recorder:
    def __init__(self, folder: str, targets: list[Target]) -> None:
        self.folder = folder
        self.by_file: dict[str, dict[str, Target]] = {}
        for t in targets:
            self.by_file.setdefault(t.path, {})[t.qualname] = t
        self.by_line = {(t.path, t.qualname.rsplit(".", 1)[-1], t.firstlineno): t for t in targets}
        # id(code object) -> (the code object, kept alive so its id is not reused; its
        # target or None). Not keyed by the code object itself: code objects compare equal
        # when their bytecode is, whatever their file or class (`A.apply`, `B.apply`).
        self.codes: dict[int, tuple[Any, Target | None]] = {}
        self.files: dict[str, str | None] = {}  # co_filename -> resolved path, if it holds targets
        self.calls: dict[tuple[str, str], _Calls] = {}
        self.busy = threading.local()
        self.lock = threading.Lock()
        self.saved = 0

    def make_hook(self):
        """The profile function: a closure, as cheap as a Python hook can be for the calls
        that are not targets (one dict lookup)."""
        codes, match, busy, record = self.codes, self._match, self.busy, self._record

        def hook(frame: Any, event: str, arg: Any) -> None:
            if event != "call":
                return
            code = frame.f_code
            known = codes.get(id(code))
            if known is not None and known[0] is code:
                target = known[1]
            else:
                target = match(code)
                codes[id(code)] = (code, target)
            if target is None or getattr(busy, "on", False):
                return
            busy.on = True
            try:
                record(target, frame)
            except Exception:  # a value that cannot be described must not break the program
                pass
            finally:
                busy.on = False

        return hook

    def _match(self, code: Any) -> Target | None:
        if code.co_flags & _CO_GENERATOR:
            return None  # its 'call' events include every resumption, where locals are not arguments
        filename = code.co_filename
        path = self.files.get(filename, False)
        if path is False:
            try:
                real = str(Path(filename).resolve())
            except (OSError, ValueError):
                real = None
            path = self.files[filename] = real if real in self.by_file else None
        if path is None:
            return None
        qualname = getattr(code, "co_qualname", None)  # Python 3.11+
        if qualname is not None:
            return self.by_file[path].get(qualname)
        return self.by_line.get((path, code.co_name, code.co_firstlineno))

    def _record(self, target: Target, frame: Any) -> None:
        code = frame.f_code
        # the named parameters (`*args` and `**kwargs` are not drawn, so not replayed either)
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        local = frame.f_locals
        values = {n: local[n] for n in names if n in local}
        attrs: dict[str, Any] = {}
        if target.method and names:
            attrs = _instance_attributes(values.pop(names[0], None), target.attrs)
        sig = Signature(tuple((n, describe(v, keep_value=True)) for n, v in values.items()),
                        tuple((n, describe(v, keep_value=True)) for n, v in attrs.items()))
        with self.lock:
            calls = self.calls.get((target.path, target.qualname))
            if calls is None:
                calls = self.calls[(target.path, target.qualname)] = _Calls(target)
            calls.calls += 1
            if sig in calls.signatures:
                calls.signatures[sig] += 1
                return
            if len(calls.signatures) >= MAX_SIGNATURES:
                return
            calls.signatures[sig] = 1
            if len(calls.samples) < MAX_SAMPLES:
                name = self._save({**values, **{SELF + n: v for n, v in attrs.items()}})
                if name is not None:
                    calls.samples.append(name)

    def _save(self, values: dict[str, Any]) -> str | None:
        """A copy of one call's values, when every tensor in it is small."""
        torch = sys.modules.get("torch")
        if torch is None or not _small(values, torch, [_SAMPLE_TOTAL]):
            return None
        try:
            data = copy.deepcopy(values)  # before the function mutates them
            self.saved += 1
            name = f"{os.getpid()}-{self.saved}.pt"
            torch.save(data, os.path.join(self.folder, name))
        except Exception:  # an unpicklable value: no sample, the signature stays
            return None
        return name

    def dump(self) -> None:
        with self.lock:
            data = {key: (c.signatures, c.samples, c.calls) for key, c in self.calls.items()}
        path = os.path.join(self.folder, f"{os.getpid()}.pickle")
        try:
            with open(path + ".tmp", "wb") as fh:
                pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(path + ".tmp", path)
        except OSError:
            pass

    def forget(self) -> None:
        """In a forked child: its calls are its own (the parent writes the ones before)."""
        self.calls = {}
        self.lock = threading.Lock()


def _instance_attributes(instance: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The attributes among `names` the instance holds itself (a module's parameters,
    buffers and submodules included); methods, properties and class constants are the
    class's, and come with it."""
    held = getattr(instance, "__dict__", None)
    if not isinstance(held, dict):
        return {}
    out = {}
    stores = [held.get(s) for s in ("_parameters", "_buffers", "_modules")]
    for name in names:
        if name in held:
            out[name] = held[name]
            continue
        for store in stores:
            if isinstance(store, dict) and name in store:
                out[name] = store[name]
                break
    return out


def _small(value: Any, torch: Any, budget: list[int], depth: int = 0) -> bool:
    """Whether `value` is plain data (tensors, arrays, numbers, strings, lists, dicts, small
    modules) with small tensors; `budget` counts the elements left for the whole sample."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return True
    if depth > 4:
        return False
    if isinstance(value, torch.Tensor):
        if value.is_sparse or value.layout != torch.strided:
            return False
        held = value.untyped_storage().nbytes() // max(value.element_size(), 1)
        budget[0] -= held
        return held < SAMPLE_ELEMENTS and budget[0] >= 0
    if isinstance(value, torch.nn.Module):
        return all(_small(t, torch, budget, depth + 1) for t in [*value.parameters(), *value.buffers()])
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        budget[0] -= value.size
        return value.dtype != object and value.size < SAMPLE_ELEMENTS and budget[0] >= 0
    if isinstance(value, (list, tuple, torch.Size)):
        return len(value) <= _SAMPLE_ITEMS and all(_small(v, torch, budget, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= _SAMPLE_ITEMS and all(
            _small(k, torch, budget, depth + 1) and _small(v, torch, budget, depth + 1) for k, v in value.items())
    held = getattr(value, "__dict__", None)
    if isinstance(held, dict) and not callable(value) and not isinstance(value, type) \
            and type(value).__module__ not in ("builtins", "types"):
        return _small(held, torch, budget, depth + 1)  # a plain object: a config, a dataclass
    return False


_active: Recorder | None = None


def start_recorder() -> None:
    """Called by the generated sitecustomize in every recorded Python process."""
    global _active
    with open(os.environ[TARGETS_ENV], "rb") as fh:
        targets = pickle.load(fh)
    _active = Recorder(os.environ[DIR_ENV], targets)
    hook = _active.make_hook()
    sys.setprofile(hook)
    threading.setprofile(hook)
    atexit.register(_active.dump)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_active.forget)


# --------------------------------------------------------------------------- running the command, keeping what it saw


def run_recorded(command: list[str], targets: list[Target], folder: str,
                 env: dict | None = None) -> tuple[int, list[Record]]:
    """Run `command` with the recorder in every Python process; (exit code, the records
    stored in the cache `folder`, one per function called)."""
    with tempfile.TemporaryDirectory(prefix="loopvec-record-") as tmp:
        site = os.path.join(tmp, "site")
        out = os.path.join(tmp, "calls")
        os.makedirs(site)
        os.makedirs(out)
        with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as fh:
            fh.write(_SITECUSTOMIZE.format(dir_env=DIR_ENV, root=_PACKAGE_ROOT))
        targets_file = os.path.join(tmp, "targets.pickle")
        with open(targets_file, "wb") as fh:
            pickle.dump(targets, fh)
        child = dict(env if env is not None else os.environ)
        child["PYTHONPATH"] = os.pathsep.join(p for p in (site, child.get("PYTHONPATH")) if p)
        child[DIR_ENV] = out
        child[TARGETS_ENV] = targets_file
        proc = subprocess.Popen(command, env=child)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(2)
            code = proc.wait()
        return code, store(merge(out), out, folder)


def merge(out: str) -> list[Record]:
    """The calls every process wrote, one record per function (samples named as written)."""
    records: dict[tuple[str, str], Record] = {}
    for name in sorted(os.listdir(out)):
        if not name.endswith(".pickle"):
            continue
        try:
            with open(os.path.join(out, name), "rb") as fh:
                data = pickle.load(fh)
        except Exception:
            continue
        for (path, qualname), (signatures, samples, calls) in data.items():
            rec = records.setdefault((path, qualname), Record(path, qualname))
            rec.calls += calls
            for sig, n in signatures.items():
                if sig in rec.signatures or len(rec.signatures) < MAX_SIGNATURES:
                    rec.signatures[sig] = rec.signatures.get(sig, 0) + n
            rec.samples += samples[: MAX_SAMPLES - len(rec.samples)]
    return list(records.values())


def store(records: list[Record], out: str, folder: str) -> list[Record]:
    """Write each record (and its samples, renamed by their hash) into the cache `folder`,
    replacing what an earlier recording kept of the same function."""
    from . import cache

    stored = []
    for rec in records:
        entry = cache.observed_entry(folder, rec.path, rec.qualname)
        if entry.parent.is_dir():
            for old in entry.parent.glob(f"{entry.stem}-*.pt"):
                old.unlink(missing_ok=True)
        samples = {}
        for sample in rec.samples:
            try:
                digest = hashlib.sha256(Path(out, sample).read_bytes()).hexdigest()[:16]
            except OSError:
                continue
            samples[f"{entry.stem}-{digest}.pt"] = os.path.join(out, sample)
        rec = replace(rec, samples=list(samples))
        cache.store_observed(entry, rec)  # first: it makes the folder, and the cache's .gitignore
        for name, source in samples.items():
            try:
                shutil.copyfile(source, entry.parent / name)
            except OSError:
                rec.samples.remove(name)
        stored.append(rec)
    return stored
