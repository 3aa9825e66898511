"""The pattern registry: every module in this package holds one pattern class.

A pattern class has NAME, DESCRIPTION, SAFETY, ORDER (lower tries first on a loop) and
`match(loop, ctx) -> Rewrite | Decline`. The registry walks the package once and keys
patterns by NAME; two patterns with one NAME is an error, not a silent override.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache


class RegistryError(Exception):
    pass


@lru_cache(maxsize=1)
def all_patterns() -> dict[str, object]:
    found: dict[str, object] = {}
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and obj.__module__ == module.__name__ and hasattr(obj, "NAME") \
                    and hasattr(obj, "match"):
                if obj.NAME in found:
                    raise RegistryError(f"two patterns are named {obj.NAME!r}")
                found[obj.NAME] = obj()
    return dict(sorted(found.items(), key=lambda kv: (getattr(kv[1], "ORDER", 100), kv[0])))


def select(names: list[str] | tuple[str, ...] | None) -> list[object]:
    patterns = all_patterns()
    if not names:
        return list(patterns.values())
    unknown = [n for n in names if n not in patterns]
    if unknown:
        raise RegistryError(f"unknown pattern {unknown[0]!r}; known: {', '.join(patterns)}")
    return [p for n, p in patterns.items() if n in names]
