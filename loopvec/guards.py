"""Guards that every map-shaped pattern checks first, each naming what it prevents.

A pattern calls `map_loop_problem(loop)` and declines with the returned reason; it then
adds the guards specific to its own shape.
"""

from __future__ import annotations

from .analysis.loops import Loop


def map_loop_problem(loop: Loop, allow_nested: bool = False, allow: frozenset[str] = frozenset()) -> str | None:
    """`allow` names control statements the caller handles itself (a filter's `continue`)."""
    # iterating a Python list, a generator, a dict: no tensor to vectorize over
    if loop.domain is None:
        return loop.domain_problem or "iteration loopvec cannot describe"
    # vals = [1.0, 2.0]; for v in vals: `vals * 2` would repeat the list, not scale it
    if loop.iterable_problem:
        return loop.iterable_problem
    # range(1, n), range(0, n, 2), enumerate(x, 1): a whole-array rewrite touches skipped rows
    if not loop.domain.full:
        return "partial or strided range: a whole-array rewrite would touch elements the loop skips"
    # break/return stop early: the vectorized form would compute every element
    stops = (loop.control - allow) & {"break", "return", "yield", "raise", "await", "continue", "while",
                                      "try", "with", "else"}
    if stops:
        return f"`{sorted(stops)[0]}` in the loop body"
    # print, random numbers, appends to other lists: running once is not running n times
    if loop.side_effects:
        return f"side effect: {loop.side_effects[0]}"
    # out[i] = out[i-1] + x[i]: a scan, not a map
    if loop.carried:
        return f"loop-carried dependency: {loop.carried[0]}"
    if loop.nested and not allow_nested:
        return "nested loop"
    return None


def used_after_problem(loop: Loop, allowed: set[str]) -> str | None:
    # `x` (the loop variable) or a body temporary read after the loop would change value
    leaked = sorted(loop.used_after - allowed)
    if leaked:
        return f"`{leaked[0]}` is bound in the loop and used after it"
    return None
