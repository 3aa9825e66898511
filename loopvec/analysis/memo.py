"""Answers about one function that several loops (and patterns) ask for in turn.

`per_node` memoises a function of CST nodes (and `ModuleInfo`s) by the identity of its
arguments. Entries keep their arguments alive, so an id is never reused while its entry
stands; the cache is small and starts over when full. Callers must not mutate a result.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
SIZE = 64


def per_node(fn: F) -> F:
    cache: dict[tuple[int, ...], tuple[tuple, Any]] = {}

    @functools.wraps(fn)
    def wrapper(*args):
        key = tuple(map(id, args))
        hit = cache.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], args)):
            return hit[1]
        if len(cache) >= SIZE:
            cache.clear()
        value = fn(*args)
        cache[key] = (args, value)
        return value

    wrapper.cache_clear = cache.clear  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
