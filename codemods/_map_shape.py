"""The map-loop shape shared by `batched_op`, `batch_call` and `vmap`: temporaries plus one
`append` (then `torch.stack/cat/tensor`), a comprehension fed to one of those, or one
`out[i] = ...` store."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from loopvec.analysis.loops import Append, Finish, Init, Loop
from loopvec.analysis.module import only
from loopvec.guards import collected_list, map_loop_problem, used_after_problem


@dataclass(frozen=True)
class MapShape:
    """A map loop: `temps`, then one value collected or stored.

    kind: comprehension | append | store
    """

    kind: str
    temps: tuple[cst.BaseStatement, ...]
    value: cst.BaseExpression
    finish: Finish | None = None
    init: Init | None = None
    append: Append | None = None
    write_array: str | None = None


def map_shape(loop: Loop) -> MapShape | str:
    """The map loop's parts, or why it is not one (the decline reason)."""
    if loop.kind == "comprehension":
        # [f(x) for x in data if ...]: a filter changes the length (see boolean_mask)
        if loop.conditions:
            return "comprehension with a condition"
        return MapShape("comprehension", (), loop.element, loop.collector)
    # total += f(x): a reduction, not a map
    if loop.accumulators:
        return "accumulates into a name (a reduction)"
    if not loop.body:
        return "empty or one-line body"
    last, temps = loop.body[-1], loop.body[:-1]
    small = only(last)
    if len(loop.appends) == 1 and not loop.writes and loop.appends[0].statement is small:
        app = loop.appends[0]
        found = collected_list(loop, app.target)
        if isinstance(found, str):
            return found
        init, finish = found
        return MapShape("append", tuple(temps), app.value, finish, init, app)
    if (len(loop.writes) == 1 and not loop.appends and isinstance(small, cst.Assign)
            and len(small.targets) == 1 and small.targets[0].target is loop.writes[0].node):
        write = loop.writes[0]
        dom = loop.domain
        # out[2*i] = ..., out[i, j] = ...: not one row per iteration
        if dom is None or dom.index is None or write.index != (dom.index,):
            return f"`{write.array}[{', '.join(write.index)}]` is not written at the loop index"
        return MapShape("store", tuple(temps), small.value, None, loop.setup.get(write.array),
                        write_array=write.array)
    return "body is not temporaries followed by one append or one `out[i] = ...`"


def map_loop(loop: Loop) -> MapShape | str:
    """The map loop's parts, after the guards every map loop passes; or the decline reason."""
    problem = map_loop_problem(loop)
    if problem:
        return problem
    shape = map_shape(loop)
    if isinstance(shape, str):
        return shape
    # a body temporary or the loop variable read after the loop would now hold every value
    return used_after_problem(loop, set()) or shape
