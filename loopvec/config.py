"""`[tool.loopvec]` in pyproject.toml: defaults that command-line flags override.

    [tool.loopvec]
    patterns = ["elementwise", "where"]   # enabled patterns (default: all)
    exclude = ["tests/fixtures/*", "legacy/"]
    max_examples = 60                      # verification examples per candidate
    timeout = 20                           # seconds per candidate
    device = "all"                         # cpu | cuda | all
    jobs = 1

    [tool.loopvec.hints]
    "mypkg.ops:pairwise" = "x=[n,3] y=[m,3] k=int"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    patterns: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_examples: int | None = None
    timeout: float | None = None
    device: str | None = None
    jobs: int | None = None
    min_speedup: float | None = None
    max_memory: str | int | None = None  # "4GiB", bytes, or "off"
    hints: dict[str, str] = field(default_factory=dict)
    root: str | None = None  # folder of the pyproject.toml it came from


_KNOWN = {"patterns", "exclude", "max_examples", "timeout", "device", "jobs", "min_speedup", "max_memory", "hints"}


def find_pyproject(start: str) -> Path | None:
    here = Path(start).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load(start: str) -> Config:
    path = find_pyproject(start)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read [tool.loopvec]: {exc}") from None
    section = data.get("tool", {}).get("loopvec", {})
    unknown = set(section) - _KNOWN
    if unknown:
        raise ConfigError(f"{path}: unknown [tool.loopvec] key {sorted(unknown)[0]!r}")
    hints = section.get("hints", {})
    if not isinstance(hints, dict) or not all(isinstance(v, str) for v in hints.values()):
        raise ConfigError(f"{path}: [tool.loopvec.hints] maps 'module:function' to a spec string")
    return Config(
        patterns=tuple(section.get("patterns", ())),
        exclude=tuple(section.get("exclude", ())),
        max_examples=section.get("max_examples"),
        timeout=section.get("timeout"),
        device=section.get("device"),
        jobs=section.get("jobs"),
        min_speedup=section.get("min_speedup"),
        max_memory=section.get("max_memory"),
        hints=dict(hints),
        root=str(path.parent),
    )
