"""Turn an `Impl` into something to call, inside the worker process.

The module is imported in its package context, as pytest's rootdir insertion does: walk
up while `__init__.py` exists, put the directory above on `sys.path`, import by dotted
name, so relative imports, helpers and module constants resolve. A rewrite is compiled
into a *copy* of the module's namespace (after its prelude), so it sees the same helpers
without replacing anything the original sees.

Every candidate sees the module graph of its own file. A warm worker takes candidates
from many folders one after another, and two folders may each hold a `utils.py`: once
`sys.modules["utils"]` is the first folder's, `from utils import helper` in the second
folder's module would get the first one's helper, and its rewrite would be proved (and
timed) against someone else's code. So the worker takes a `ModuleGraph` before it
imports any user code, and after each candidate `ModuleGraph.restore` drops every module
loaded since from outside the interpreter's own libraries (the user's modules, and
whatever they imported from the user's tree, wherever sys.path pointed), and restores
sys.path and the import hooks. Modules from the standard library and site-packages stay
loaded: they are the same whichever file imported them, and some (numpy) must not be
imported twice in one process (a file that itself lies in site-packages, an installed
library's, stays loaded like one). This was chosen over a fresh worker per package root,
which would pay torch's import again for every folder of loose scripts, and would still
let one file's candidates see what another file of the same root left behind.
"""

from __future__ import annotations

import __future__
import ast
import importlib
import importlib.util
import inspect
import io
import linecache
import os
import site
import sys
import sysconfig
import textwrap
import tokenize
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from loopvec.observed import SELF

from .oracle import describe_error
from .probe import PROBE_NAME, Probe, ProbeError, count_loop, mark_lines
from .source import Definition, find_definition, parse_rewrite, source_lines
from .types import Impl


class LoadError(Exception):
    """The implementation cannot be run; `status` is the verdict it leads to."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ImportExit(BaseException):
    """The module called sys.exit while being imported."""

    def __init__(self, code: Any) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Loaded:
    """A callable implementation: a function, or a method called on a fresh instance."""

    impl: Impl
    definition: Definition
    target: Any  # the function, or the class attribute (function/staticmethod/...)
    owner: type | None  # the class, for methods
    probe: Probe | None = None  # the reach probe compiled into it (`Impl.loop` / `Impl.span`)
    # a method's instance attributes as observed (`loopvec record`): when set, instances
    # are built without `__init__`, holding copies of these
    attrs: dict[str, Any] | None = None
    # the class cannot be built with its defaults: instances are test doubles (see
    # `double`), holding the attributes the method reads, drawn per example into `attrs`
    double: bool = False

    def signature(self) -> inspect.Signature:
        func = inspect.unwrap(getattr(self.target, "__func__", self.target))
        sig = inspect.signature(func)
        if self.definition.skips_first:
            sig = sig.replace(parameters=list(sig.parameters.values())[1:])
        if self.double and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            # a test double's attributes travel as keywords `self.X` (see `caller`)
            extra = inspect.Parameter("loopvec_attributes", inspect.Parameter.VAR_KEYWORD)
            sig = sig.replace(parameters=[*sig.parameters.values(), extra])
        return sig

    def make_instance(self, device: str) -> Any:
        instance = self.owner() if self.attrs is None else bare_instance(self.owner, self.attrs, device)
        if device != "cpu" and hasattr(instance, "to") and callable(instance.to):
            import torch

            if isinstance(instance, torch.nn.Module):
                instance = instance.to(device)
        return instance

    def caller(self, device: str):
        """(args, kwargs) -> (value, instance or None), for `oracle.run`."""
        if self.owner is None or self.definition.static:
            func = getattr(self.target, "__func__", self.target)
            return lambda args, kwargs: (func(*args, **kwargs), None)

        def call(args: tuple, kwargs: dict) -> tuple[Any, Any]:
            # A fresh instance per call: a method that updates self must not leak state
            # from one side (or one example) to the next.
            if self.double:  # the keywords `self.X` are the double's attributes
                attrs = {k[len(SELF):]: v for k, v in kwargs.items() if k.startswith(SELF)}
                kwargs = {k: v for k, v in kwargs.items() if not k.startswith(SELF)}
                self.attrs = attrs or self.attrs
            instance = self.make_instance(device)
            return self.target.__get__(instance, self.owner)(*args, **kwargs), instance

        return call


_loaded_files: dict[str, int] = {}  # module name -> mtime_ns it was imported at (`ModuleGraph` prunes it)


def load(impl: Impl, bare: bool = False) -> Loaded:
    """`bare`: a method's instances will be built from observed attributes (`Loaded.attrs`),
    so a constructor that needs arguments does not stop it."""
    path = Path(impl.path).resolve()
    if not path.is_file():
        raise LoadError("unverifiable", f"no such file: {impl.path}")
    definition = None
    if impl.source is None:
        definition = _definition_in_file(path, impl.qualname)
    module = import_file(path)
    owner_path, _, name = impl.qualname.rpartition(".")
    owner = _resolve(module, owner_path, impl) if owner_path else None
    if owner is not None and not isinstance(owner, type):
        raise LoadError("unverifiable", f"{owner_path} in {path.name} is not a class")
    if definition is None:
        definition, target, probe = _compile_rewrite(impl, module, owner)
        return _checked(Loaded(impl, definition, target, owner, probe), bare)
    if impl.loop is not None:
        target, probe = _compile_counted(impl, definition, module, owner, path)
        return _checked(Loaded(impl, definition, target, owner, probe), bare)
    target = inspect.getattr_static(owner, name, None) if owner is not None else getattr(module, name, None)
    if target is None:
        raise LoadError("unverifiable", f"{impl.qualname} is not defined when {path.name} is imported")
    return _checked(Loaded(impl, definition, target, owner), bare)


def read_source(path: Path) -> str:
    """The file's text as Python's import reads it: a UTF-8 BOM is dropped, a coding
    cookie (`# -*- coding: latin-1 -*-`) is honoured, newlines are universal."""
    data = path.read_bytes()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:  # a bad cookie: the import fails and says so; read what we can
        encoding = "utf-8-sig"
    text = data.decode(encoding, errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _definition_in_file(path: Path, qualname: str) -> Definition:
    text = read_source(path)
    try:
        definition = find_definition(text, qualname)
    except SyntaxError as e:
        raise LoadError("unverifiable", f"cannot parse {path.name}: {e.msg} (line {e.lineno})") from None
    if definition is None:
        raise LoadError("unverifiable", f"no function {qualname} in {path.name}")
    return definition


def bare_instance(owner: type, attrs: dict[str, Any], device: str = "cpu") -> Any:
    """An instance of `owner` made without calling its `__init__`, holding copies of `attrs`
    on `device` (a module gets `nn.Module.__init__` first, so it can hold parameters and
    submodules)."""
    import copy

    import torch

    from .inputs import to_device

    instance = object.__new__(owner)
    if isinstance(instance, torch.nn.Module):
        torch.nn.Module.__init__(instance)
    for name, value in to_device(copy.deepcopy(attrs), device).items():
        setattr(instance, name, value)
    return instance


def _checked(loaded: Loaded, bare: bool = False) -> Loaded:
    if loaded.owner is None or loaded.definition.static or bare:
        return loaded
    try:
        sig = inspect.signature(loaded.owner)
    except (TypeError, ValueError):  # a C-level __init__ without a signature: just try it
        return loaded
    needed = [
        p.name
        for p in sig.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if needed:
        # `ScaleTransform(factors)`: no guess at `factors`; the method gets a test double
        # holding what it reads instead (`double`)
        as_double(loaded)
    return loaded


def as_double(loaded: Loaded) -> None:
    """From now on `loaded` calls its method on test doubles: instances built without
    `__init__`, holding the attributes set in `attrs` before each call."""
    loaded.double = True
    loaded.attrs = {}


def _resolve(module: ModuleType, dotted: str, impl: Impl) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LoadError("unverifiable", f"no {dotted} in {Path(impl.path).name}") from None
    return obj


def _compile_rewrite(impl: Impl, module: ModuleType, owner: type | None) -> tuple[Definition, Any, Probe | None]:
    try:
        definition = parse_rewrite(impl.source or "", owner is not None)
    except SyntaxError as e:
        raise LoadError("failed", f"the rewrite does not parse: {e.msg} (line {e.lineno})") from None
    # A copy: the rewrite sees the module's helpers and constants, and rebinding names
    # (its own def, its prelude's imports) leaves the original's namespace untouched.
    namespace = dict(vars(module))
    filename = f"<loopvec rewrite of {impl.path}::{impl.qualname}>"
    source = textwrap.dedent(impl.source or "")
    node, probe = definition.node, None
    if impl.span is not None:
        node, marks = mark_lines(node, impl.span)
        probe = Probe(marks)
        namespace[PROBE_NAME] = probe
    try:
        if impl.prelude.strip():
            exec(compile(impl.prelude, f"<loopvec prelude of {impl.qualname}>", "exec"), namespace)
        linecache.cache[filename] = (len(source), None, _with_ends(source), filename)
        target = _compile_def(node, owner, namespace, filename, _future_flags(module))
    except SyntaxError as e:
        raise LoadError("failed", f"the rewrite does not compile: {e.msg} (line {e.lineno})") from None
    except SystemExit as e:
        raise ImportExit(e.code) from None
    except Exception as e:  # its prelude or decorators fail: the rewrite is broken
        raise LoadError("failed", f"the rewrite fails to load: {describe_error(e)}") from None
    if probe is not None:
        probe.code = _code_of(target)
    return definition, target, probe


def _compile_counted(impl: Impl, definition: Definition, module: ModuleType, owner: type | None,
                     path: Path) -> tuple[Any, Probe]:
    """The original, compiled from its own definition with the loop at `impl.loop`
    counting its iterations, into a copy of the module's namespace (as a rewrite is, so
    both sides are built the same way)."""
    line, column = impl.loop
    try:
        node = count_loop(definition.node, line, column)
    except ProbeError as e:
        raise LoadError("unverifiable", f"cannot probe the original: {e}") from None
    probe = Probe()
    namespace = dict(vars(module))
    namespace[PROBE_NAME] = probe
    try:
        target = _compile_def(node, owner, namespace, str(path), _future_flags(module))
    except SystemExit as e:
        raise ImportExit(e.code) from None
    except Exception as e:  # a decorator that refuses to run twice, say
        raise LoadError("unverifiable", f"cannot probe the original: {describe_error(e)}") from None
    probe.code = _code_of(target)
    return target, probe


def _future_flags(module: ModuleType) -> int:
    """The module's `from __future__ import annotations`, so a copy of one of its
    functions reads its annotations as the module does (lazily)."""
    feature = __future__.annotations
    return feature.compiler_flag if vars(module).get("annotations") is feature else 0


def _code_of(target: Any) -> Any:
    func = getattr(target, "__func__", getattr(target, "fget", target))
    func = inspect.unwrap(func) if func is not None else None
    return getattr(func, "__code__", None)


def _with_ends(source: str) -> list[str]:
    """linecache's lines, numbered as the compiler numbers them."""
    return [line + "\n" for line in source_lines(source)]


def _compile_def(node: ast.AST, owner: type | None, namespace: dict, filename: str, flags: int) -> Any:
    """Execute one def (an AST that keeps its own line numbers) in `namespace`. A method
    is compiled inside a class of the owner's name, so `self.__x` mangles as in the
    original; then its `__class__` cell points at the real class, so `super()` works."""
    if owner is None:
        module = ast.Module(body=[node], type_ignores=[])
        exec(compile(module, filename, "exec", flags=flags, dont_inherit=True), namespace)
        return namespace[node.name]
    cls_name = owner.__name__
    cls = ast.ClassDef(name=cls_name, bases=[], keywords=[], body=[node], decorator_list=[])
    if "type_params" in ast.ClassDef._fields:
        cls.type_params = []
    ast.copy_location(cls, node)
    module = ast.Module(body=[cls], type_ignores=[])
    saved = namespace.get(cls_name, None)
    exec(compile(module, filename, "exec", flags=flags, dont_inherit=True), namespace)
    holder = namespace.pop(cls_name)
    if saved is not None:
        namespace[cls_name] = saved
    raw = holder.__dict__[node.name]
    func = getattr(raw, "__func__", getattr(raw, "fget", raw))
    if func is not None and func.__closure__:
        for cell_name, cell in zip(func.__code__.co_freevars, func.__closure__):
            if cell_name == "__class__":
                cell.cell_contents = owner
    return raw


def import_file(path: Path) -> ModuleType:
    """Import the module at `path` the way pytest's rootdir insertion would."""
    global _root_in_use
    parts = [] if path.name == "__init__.py" else [path.stem]
    root = path.parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    if _graph is not None and _root_in_use not in (None, str(root)):
        # an original and a rewrite from two folders (`loopvec verify a/m.py::f b/m.py::f`):
        # b's `from utils import helper` must not find a's
        _graph.restore()
    _root_in_use = str(root)
    name = ".".join(parts)
    if len(parts) == 1 and _taken_elsewhere(name, path):
        # A lone file named like a module already loaded (or like the standard library's):
        # load it under a private name rather than shadow the real one.
        name = f"_loopvec_user_{zlib.crc32(str(path).encode()):08x}_{path.stem}"
        return _import(name, path, str(root), spec_path=path)
    return _import(name, path, str(root))


def _taken_elsewhere(name: str, path: Path) -> bool:
    existing = sys.modules.get(name)
    if existing is not None:
        return _file_of(existing) != path
    return name in sys.stdlib_module_names


def _file_of(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _import(name: str, path: Path, root: str, spec_path: Path | None = None) -> ModuleType:
    mtime = path.stat().st_mtime_ns
    cached = sys.modules.get(name)
    if cached is not None and _file_of(cached) == path and _loaded_files.setdefault(name, mtime) == mtime:
        return cached
    _forget(name, path, root)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    try:
        if spec_path is not None:
            spec = importlib.util.spec_from_file_location(name, spec_path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(name)
    except SystemExit as e:
        sys.modules.pop(name, None)
        raise ImportExit(e.code) from None
    except Exception as e:  # whatever the module raises, it is the user's module that failed
        sys.modules.pop(name, None)
        raise LoadError("unverifiable", f"module failed to import: {describe_error(e)}") from None
    if _file_of(module) != path:
        raise LoadError("unverifiable", f"importing {name} from {root} found {_file_of(module)}, not {path}")
    _loaded_files[name] = mtime
    return module


def _forget(name: str, path: Path, root: str) -> None:
    """Drop modules that would stand in for `name`: an older import of this file, or a
    package of the same dotted name from another root."""
    parts = name.split(".")
    for k in range(1, len(parts) + 1):
        prefix = ".".join(parts[:k])
        module = sys.modules.get(prefix)
        if module is None:
            continue
        if k < len(parts) and _file_of(module) == Path(root, *parts[:k], "__init__.py").resolve():
            continue
        for key in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
            del sys.modules[key]
        return


class ModuleGraph:
    """sys.modules, sys.path and the import hooks as they were before user code ran, and
    `restore` to go back to them between candidates (see the module docstring).
    `ModuleGraph.take()` also makes it the one `import_file` restores when a candidate's
    two sides come from two package roots."""

    @classmethod
    def take(cls) -> ModuleGraph:
        global _graph
        _graph = cls()
        return _graph

    def __init__(self) -> None:
        self.modules = dict(sys.modules)
        self.path = list(sys.path)
        self.meta_path = list(sys.meta_path)
        self.path_hooks = list(sys.path_hooks)
        self.importers = dict(sys.path_importer_cache)
        self.libraries = _library_folders()

    def restore(self) -> None:
        global _root_in_use
        _root_in_use = None
        for name, module in list(sys.modules.items()):
            if name in self.modules:
                continue
            if _from_libraries(name, module, self.libraries):
                self.modules[name] = module  # a library imported late: keep it, decide once
            else:
                del sys.modules[name]
        for name, module in self.modules.items():
            if sys.modules.get(name) is not module:  # `sys.modules["torch"] = stand_in`
                sys.modules[name] = module
        sys.path[:] = self.path
        # a hook user code installed would decide the next candidate's imports; one a
        # library installed when imported stays with it
        sys.meta_path[:] = [h for h in sys.meta_path if _kept_hook(h, self.meta_path)]
        sys.path_hooks[:] = [h for h in sys.path_hooks if _kept_hook(h, self.path_hooks)]
        for key in sys.path_importer_cache.keys() - self.importers.keys():
            del sys.path_importer_cache[key]
        for name in _loaded_files.keys() - sys.modules.keys():
            del _loaded_files[name]
        importlib.invalidate_caches()


_graph: ModuleGraph | None = None  # the worker's (`ModuleGraph.take`)
_root_in_use: str | None = None  # the package root the current candidate's modules came from


def _library_folders() -> tuple[str, ...]:
    """Where the interpreter's own modules live: the standard library, site-packages, and
    loopvec itself."""
    paths = sysconfig.get_paths()
    found = [paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    found += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE:
        found.append(site.getusersitepackages())
    found.append(str(Path(__file__).resolve().parents[1]))  # loopvec, wherever it is installed
    return tuple(sorted({os.path.realpath(p) for p in found if p}))


def _under(file: str, folders: tuple[str, ...]) -> bool:
    real = os.path.realpath(file)
    return any(real == f or real.startswith(f + os.sep) for f in folders)


def _from_libraries(name: str, module: Any, libraries: tuple[str, ...]) -> bool:
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.origin in ("built-in", "frozen"):
        return True
    file = getattr(module, "__file__", None) or (spec.origin if spec is not None and spec.has_location else None)
    if isinstance(file, str):
        return _under(file, libraries)
    locations = list(getattr(spec, "submodule_search_locations", None) or []) if spec is not None else []
    if locations:  # a namespace package: where its folders are
        return all(isinstance(p, str) and _under(p, libraries) for p in locations)
    # no file at all (`sys.modules["fake"] = ...`, `six.moves`): judged by its top package
    top = name.partition(".")[0]
    parent = sys.modules.get(top)
    return top != name and parent is not None and _from_libraries(top, parent, libraries)


def _kept_hook(hook: Any, before: list) -> bool:
    """An import hook (a finder, its class, a function) that was there before, or whose
    defining module is still loaded once the user's modules are dropped."""
    return any(hook is h for h in before) or getattr(hook, "__module__", None) in sys.modules
