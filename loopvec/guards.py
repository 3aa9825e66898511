"""Guards that patterns share, each naming what it prevents.

A map-shaped pattern calls `map_loop_problem(loop)` and declines with the returned reason
(`body_problem` is its part about the body, for folds and scans that carry a value); it
then adds the guards specific to its own shape: `collected_list` (an `out = []` filled by
the loop and stacked after it), `used_after_problem`, `output_read_problem` (the body reads
what it builds), `between_problem` and `adjacent` (statements between the loop and the
statement that stacks its list).
"""

from __future__ import annotations

import re
from dataclasses import replace

import libcst as cst

from .analysis.loops import Finish, Init, Loop
from .analysis.module import ModuleInfo, VariableVisitor, bound_names, code, top_statement_index, walk
from .rewrite import SAFE, UNSAFE, Rewrite
from .analysis import traverse


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
    return body_problem(loop, allow, allow_nested=allow_nested)


# control statements that leave an iteration or the loop early, or hide what runs
STOPS = frozenset({"break", "return", "yield", "raise", "await", "continue", "while", "try", "with", "else"})


def body_problem(loop: Loop, allow: frozenset[str] = frozenset(), carried: bool = True,
                 allow_nested: bool = False, where: str = "in the loop body") -> str | None:
    """What in the body keeps one whole-array statement from doing what n iterations do.
    `carried=False` for patterns whose shape is a carried value (a fold, a scan)."""
    # break/return stop early: the vectorized form would compute every element
    stops = (loop.control - allow) & STOPS
    if stops:
        return f"`{sorted(stops)[0]}` {where}"
    # print, random numbers, appends to other lists: running once is not running n times
    if loop.side_effects:
        return f"side effect: {loop.side_effects[0]}"
    # out[i] = out[i-1] + x[i]: a scan, not a map
    if carried and loop.carried:
        return f"loop-carried dependency: {loop.carried[0]}"
    if loop.nested and not allow_nested:
        return "nested loop"
    return None


def collected_list(loop: Loop, target: str) -> tuple[Init, Finish] | str:
    """The empty list `target` the loop appends to and the torch.stack/tensor/cat that turns
    it into a tensor after the loop; or why the list is more than this loop's output."""
    init = loop.setup.get(target)
    # `out` filled before the loop, or read between: the list is more than this loop's
    if init is None or init.kind != "list" or init.interleaved:
        return f"`{target}` is not an empty list right before the loop"
    finish = loop.finish.get(target)
    if finish is None:
        return f"`{target}` is not turned into a tensor with torch.stack/tensor/cat"
    # len(out), out[0] or the list itself returned later: it must stay a list
    if finish.list_used_later:
        return f"the list `{target}` is used after it is stacked"
    return init, finish


def used_after_problem(loop: Loop, allowed: set[str]) -> str | None:
    # `x` (the loop variable) or a body temporary read after the loop would change value
    leaked = sorted(loop.used_after - allowed)
    if leaked:
        return f"`{leaked[0]}` is bound in the loop and used after it"
    return None


def output_read_problem(loop: Loop, output: str) -> str | None:
    """The loop reads `output` other than as `output[i]` at its own index or `output.append`."""
    dom = loop.domain
    allowed: set[int] = set()
    for acc in (*loop.reads, *loop.writes):
        if acc.array == output and dom.index is not None and acc.index == (dom.index,):
            head = acc.node.value
            if isinstance(head, cst.Name):
                allowed.add(id(head))
    for app in loop.appends:
        if app.target == output:
            func = app.statement.value.func
            allowed.add(id(func.value))

    found: list[str] = []

    class _V(VariableVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            if node.value == output and id(node) not in allowed:
                found.append(node.value)

    body = loop.node.body if loop.kind == "for" else loop.node
    traverse.visit(body, _V())
    if found:
        return f"the body reads `{output}`, the output being built"
    return None


def between_problem(loop: Loop, finish: Finish, emitted: set[str]) -> str | None:
    """Temporaries emitted where the loop was are read again by the new finish statement:
    no statement in between may touch them (`t = ...` there would change what it reads)."""
    block = loop.block
    try:
        end = next(k for k, st in enumerate(block) if st is finish.statement)
    except StopIteration:
        return "the stacking statement is not in the loop's block"
    for stmt in block[loop.block_index + 1:end]:
        touched = sorted(emitted & {n.value for n in walk(stmt) if isinstance(n, cst.Name)})
        if touched:
            return f"`{touched[0]}` is used between the loop and `{code(finish.call.func)}`"
    return None


def adjacent(loop: Loop, finish: Finish) -> bool:
    """The finish statement comes right after the loop (a named mask cannot be rebound between)."""
    block = loop.block
    k = loop.block_index + 1
    return 0 < k < len(block) and block[k] is finish.statement


# --------------------------------------------------------------------------- the safety tier

_LENGTHS_EQUAL = re.compile(r"len\((\w+)\) == len\((\w+)\)")


def length_tier(rw: Rewrite, info: ModuleInfo) -> Rewrite:
    """`zip(x, y)` and `range(len(x))` reading `y[i]` walk arrays together; the rewrite's
    whole-array expression assumes they have one length (`len(y) == len(x)`), and the
    verifier, whose inputs share that length, cannot see the assumption. Where lengths
    differ the loop stops at the shorter (or raises) while the rewrite raises, or, with a
    length-1 array, silently broadcasts it to every row. So a safe rewrite with such an
    assumption stays safe only when the function proves it (declared shapes with one
    first dimension, or an array allocated from the other's length before the loop);
    otherwise it is `unsafe`: applied with `--unsafe`, and the report names it."""
    if rw.safety != SAFE:
        return rw
    kept, unproved = [], False
    for assumption in rw.assumptions:
        m = _LENGTHS_EQUAL.fullmatch(assumption)
        if m and lengths_proved(m.group(1), m.group(2), rw.loop.function, rw.loop.node, info):
            continue  # proved: no longer an assumption
        kept.append(assumption)
        unproved = unproved or m is not None
    return replace(rw, safety=UNSAFE if unproved else SAFE, assumptions=tuple(kept))


def lengths_proved(a: str, b: str, function: cst.FunctionDef | None, loop_node: cst.CSTNode,
                   info: ModuleInfo) -> bool:
    """`len(a) == len(b)` holds whenever the function reaches the loop."""
    if function is None:
        return False
    from .analysis.facts import Signature

    sig = Signature(info, function)
    first = [_first_dim(sig.specs.get(name)) for name in (a, b)]
    if first[0] is not None and first[0] == first[1]:
        return True  # x=[n, 3] y=[n] in a hint, or jaxtyping "n d" and "n"
    body = function.body.body if isinstance(function.body, cst.IndentedBlock) else ()
    proved_at = None  # the statement that sizes one from the other, if neither is rebound after it
    stop = top_statement_index(function, loop_node)
    for k, stmt in enumerate(body):
        if k == stop:
            break
        if proved_at is not None and {a, b} & bound_names(stmt):
            proved_at = None  # `x = x[1:]` after `w = torch.ones(len(x))`
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 else None
        if not isinstance(small, cst.Assign) or len(small.targets) != 1 \
                or not isinstance(small.targets[0].target, cst.Name):
            continue
        name, value = small.targets[0].target.value, code(small.value)
        if any(name == made and _sized_from(value, other) for made, other in ((a, b), (b, a))):
            proved_at = k
    return proved_at is not None


def _first_dim(spec) -> str | None:
    from .verify.specs import TensorSpec

    if isinstance(spec, TensorSpec) and spec.dims and isinstance(spec.dims[0], str) \
            and spec.dims[0] not in ("_", "...") and not spec.dims[0].isdigit():
        return spec.dims[0]
    return None


def _sized_from(value: str, other: str) -> bool:
    """`torch.zeros_like(x)`, `x.clone()`, `torch.empty(len(x))`, `torch.zeros(x.shape)`,
    `x.new_zeros(x.shape[0], 3)`: an array whose first dimension is `other`'s."""
    o = re.escape(other)
    return any(re.search(p, value) for p in (
        rf"^\w+(\.\w+)*\.(zeros|ones|empty|full|rand|randn|randint)_like\(\s*{o}\s*[,)]",
        rf"^{o}\.(clone|detach|to|float|double|half|int|long|bool|contiguous)\(",
        rf"^\w+(\.\w+)*\.(zeros|ones|empty|full|rand|randn|tensor)\(\s*\(?\s*len\({o}\)",
        rf"^\w+(\.\w+)*\.(zeros|ones|empty|full|rand|randn)\(\s*\(?\s*{o}\.(shape|size\(\))(\[0\]|\)|,|\s*$)",
        rf"^\w+(\.\w+)*\.(zeros|ones|empty|full|rand|randn)\(\s*\(?\s*{o}\.(shape\[0\]|size\(0\))",
        rf"^\w+\.new_(zeros|ones|empty|full)\(\s*\(?\s*(len\({o}\)|{o}\.shape\[0\]|{o}\.size\(0\)|{o}\.shape\b)",
    ))
