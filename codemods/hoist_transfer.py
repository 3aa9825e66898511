"""Device transfers of loop elements, hoisted: one transfer of the whole tensor before the loop."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from loopvec.analysis.facts import function_facts
from loopvec.analysis.loops import Loop, names_in
from loopvec.analysis.module import code, dotted, fresh_name, used_names
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite
from loopvec.analysis import traverse


class HoistTransfer:
    """Per-element device transfers moved out of the loop (the catalogue's Pitfall 2).

    What it rewrites:
        A loop over the rows of a tensor (`for x in data`, `enumerate`, `zip`,
        `for i in range(len(data))` with `data[i]`) whose body moves each row with
        `.to(...)`, `.cuda(...)` or `.cpu()` and never touches the row otherwise. The whole
        tensor moves once before the loop and the loop walks the moved tensor; the rest of
        the loop stays as it is, so this applies where the body cannot be vectorized.
        Moving the whole tensor holds all of it on the device at once (see
        `loopvec.memory`).

    Example:
        for x in data_cpu:
            x_gpu = x.cuda()
            results.append(model(x_gpu).cpu())

    Use instead:
        data_gpu = data_cpu.cuda()
        for x_gpu in data_gpu:
            results.append(model(x_gpu).cpu())

    When it declines:
        the row is used besides its transfer (`x.numpy()` and `x.cuda()`), the transfer
        is conditional (inside an `if`, a ternary, after a `continue`), the device or
        dtype changes per iteration, the loop may stop early (break/return/raise), the
        body writes into the walked tensor (a hoisted copy would miss the writes), the
        walked value is not known to be a tensor (a DataLoader or a list of tensors has no
        `.to`: annotate it `torch.Tensor`), `.to(memory_format=...)` (it depends on rank).
    """

    NAME = "hoist_transfer"
    DESCRIPTION = "x.to(device)/.cuda()/.cpu() on each loop element -> one transfer of the whole tensor"
    SAFETY = SAFE
    ORDER = 90

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        try:
            return _match(loop, ctx)
        except HoistError as exc:
            return Decline(self.NAME, str(exc))


class HoistError(Exception):
    pass


_TRANSFERS = {"to", "cuda", "cpu"}
_SUFFIX = {"cuda": "_gpu", "cpu": "_cpu", "to": "_dev"}


@dataclass(frozen=True)
class Transfer:
    call: cst.Call  # x.to(device)
    row: str  # the element name (`x`), or the array of `data[i]`
    array: str  # the walked tensor
    method: str
    statement: cst.BaseStatement  # the top-level body statement holding it
    rebinds: str | None  # `y` in a statement `y = x.to(device)`
    indexed: bool = False  # `data[i].to(device)` in a range loop


def _match(loop: Loop, ctx: PatternContext) -> Rewrite:
    if loop.kind != "for" or loop.function is None:
        raise HoistError("not a for-loop inside a function")
    dom = loop.domain
    # iterating a generator, a dict, a list built here: no one tensor to move
    if dom is None:
        raise HoistError(loop.domain_problem or "iteration loopvec cannot describe")
    if loop.iterable_problem:
        raise HoistError(loop.iterable_problem + ": a list has no `.to`")
    # break/return/raise may stop before the last row: moving every row does more
    stops = loop.control & {"break", "return", "yield", "raise", "await", "continue"}
    if stops:
        return_reason = sorted(stops)[0]
        raise HoistError(f"`{return_reason}` in the loop body: not every row is moved")
    if not dom.full:
        raise HoistError("partial or strided range: moving the whole tensor moves rows the loop skips")
    body = loop.node.body
    if not isinstance(body, cst.IndentedBlock):
        raise HoistError("one-line loop body")
    transfers = _transfers(loop)
    if not transfers:
        raise HoistError("no transfer of a loop element")
    facts = function_facts(loop, ctx.info, loop.node)
    loop_names = set(loop.assigned) | set(dom.names)
    for tr in transfers:
        _check(loop, tr, facts, loop_names)
    return _rewrite(loop, ctx, transfers)


def _transfers(loop: Loop) -> list[Transfer]:
    dom = loop.domain
    rows = dict(dom.elements)
    found: list[Transfer] = []
    for stmt in loop.body:
        for call in _calls(stmt):
            func = call.func
            if not (isinstance(func, cst.Attribute) and func.attr.value in _TRANSFERS):
                continue
            receiver = func.value
            if isinstance(receiver, cst.Name) and receiver.value in rows:
                found.append(Transfer(call, receiver.value, rows[receiver.value], func.attr.value, stmt,
                                      _rebinds(stmt, call)))
            elif dom.index is not None and isinstance(receiver, cst.Subscript) and len(receiver.slice) == 1 \
                    and isinstance(receiver.slice[0].slice, cst.Index) \
                    and code(receiver.slice[0].slice.value) == dom.index and dotted(receiver.value) is not None \
                    and dotted(receiver.value) in dom.arrays:
                array = dotted(receiver.value)
                found.append(Transfer(call, array, array, func.attr.value, stmt, _rebinds(stmt, call), True))
    return found


def _calls(node: cst.CSTNode) -> list[cst.Call]:
    out: list[cst.Call] = []

    class _V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            out.append(n)

    traverse.visit(node, _V())
    return out


def _rebinds(stmt: cst.BaseStatement, call: cst.Call) -> str | None:
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        small = stmt.body[0]
        if isinstance(small, cst.Assign) and small.value is call and len(small.targets) == 1 \
                and isinstance(small.targets[0].target, cst.Name):
            return small.targets[0].target.value
    return None


def _check(loop: Loop, tr: Transfer, facts: dict, loop_names: set[str]) -> None:
    dom = loop.domain
    what = code(tr.call)
    # a DataLoader, a list of tensors: only a tensor moves as a whole
    fact = facts.get(tr.array) if "." not in tr.array else None
    if fact is None or fact.kind != "tensor":
        raise HoistError(f"cannot tell `{tr.array}` is a tensor (a DataLoader or a list of tensors has no `.to`): "
                         "annotate it `torch.Tensor`")
    # two transfers of one row, or `x.numpy()` beside `x.cuda()`: the row is needed as it was
    if tr.indexed:
        uses = _count_array(loop.body, tr.array)
    elif tr.rebinds == tr.row:
        # x = x.to(device): later uses of `x` are the moved row; earlier ones the original
        before = loop.body[:loop.body.index(tr.statement)]
        uses = _count(before, tr.row) + _count([_only(tr.statement).value], tr.row)
    else:
        uses = _count(loop.body, tr.row)
    if uses != 1:
        raise HoistError(f"`{tr.row}` is used besides `{what}`: the loop still needs the row where it was")
    # the row read after the loop would now be the moved one
    if not tr.indexed and tr.row in loop.used_after and tr.row != tr.rebinds:
        raise HoistError(f"`{tr.row}` is used after the loop")
    # if c: y = x.cuda() -- moving every row up front may raise where the loop would not
    if not _unconditional(tr):
        raise HoistError(f"`{what}` does not run on every iteration")
    # x.to(devices[i]): the target changes per row
    args = [a.value for a in tr.call.args]
    if any(names_in(a) & loop_names for a in args):
        raise HoistError(f"the arguments of `{what}` change per iteration")
    if any(not _cheap(a) for a in args):
        raise HoistError(f"the arguments of `{what}` would be evaluated once instead of per row")
    # channels_last needs a 4-d tensor: rows and the whole tensor differ in rank
    if any(a.keyword is not None and a.keyword.value == "memory_format" for a in tr.call.args):
        raise HoistError(f"`{what}` with memory_format")
    # data[j] = ...: a copy moved before the loop would miss writes the loop makes
    written = {w.array for w in loop.writes} | {a.target for a in loop.appends}
    if tr.array in written or any(f"`{tr.array}`" in e or f"`{tr.array}." in e for e in loop.side_effects):
        raise HoistError(f"the loop changes `{tr.array}` while walking it")
    if tr.rebinds is not None and tr.rebinds != tr.row:
        # y read before `y = x.cuda()` comes from the previous row
        before = loop.body[:loop.body.index(tr.statement)]
        if any(tr.rebinds in names_in(s) for s in before):
            raise HoistError(f"`{tr.rebinds}` is read before it is bound in the loop")
        # `for y, x in zip(...)`: the row would be bound twice
        if tr.rebinds in dom.names:
            raise HoistError(f"`{tr.rebinds}` is already a loop variable")


def _only(stmt: cst.BaseStatement) -> cst.BaseSmallStatement:
    assert isinstance(stmt, cst.SimpleStatementLine)
    return stmt.body[0]


def _count(statements, name: str) -> int:
    n = 0
    for stmt in statements:
        n += _occurrences(stmt, lambda node: isinstance(node, cst.Name) and node.value == name)
    return n


def _count_array(statements, array: str) -> int:
    n = 0
    for stmt in statements:
        n += _occurrences(stmt, lambda node: isinstance(node, (cst.Name, cst.Attribute)) and dotted(node) == array)
    return n


def _occurrences(node: cst.CSTNode, pred) -> int:
    count = 0

    class _V(cst.CSTVisitor):
        def on_visit(self, n) -> bool:
            nonlocal count
            if pred(n):
                count += 1
                return False
            return True

    traverse.visit(node, _V())
    return count


def _unconditional(tr: Transfer) -> bool:
    """The transfer runs whenever its top-level statement does: no branch, short-circuit,
    comprehension or lambda between them."""
    stmt = tr.statement
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    blocked = False
    path: list[cst.CSTNode] = []

    class _V(cst.CSTVisitor):
        def on_visit(self, n) -> bool:
            nonlocal blocked
            if n is tr.call:
                blocked = any(isinstance(p, (cst.IfExp, cst.BooleanOperation, cst.Lambda, cst.ListComp,
                                             cst.GeneratorExp, cst.SetComp, cst.DictComp)) for p in path)
                return False
            path.append(n)
            return True

        def on_leave(self, n) -> None:
            if path and path[-1] is n:
                path.pop()

    traverse.visit(stmt, _V())
    return not blocked


def _cheap(node: cst.BaseExpression) -> bool:
    """Names, attributes, literals, `torch.device("cuda", 0)`: the same once or n times."""
    if isinstance(node, (cst.Name, cst.Attribute, cst.Integer, cst.SimpleString)):
        return True
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "device":
        return all(_cheap(a.value) for a in node.args)
    return False


# --------------------------------------------------------------------------- rewrite


class _Rename(cst.CSTTransformer):
    def __init__(self, mapping: dict[int, cst.BaseExpression]) -> None:
        self.mapping = mapping

    def on_leave(self, original, updated):
        return self.mapping.get(id(original), updated)


def _rewrite(loop: Loop, ctx: PatternContext, transfers: list[Transfer]) -> Rewrite:
    node: cst.For = loop.node
    taken = used_names(loop.function)
    arrays: dict[str, str] = {}  # walked tensor -> moved name
    hoisted: list[str] = []
    seen: set[str] = set()
    for tr in transfers:
        if tr.array in seen:
            raise HoistError(f"`{tr.array}` is moved twice")
        seen.add(tr.array)
        name = _fresh(tr.array, tr.method, taken)
        taken.add(name)
        arrays[tr.array] = name
        args = code(tr.call.with_changes(func=tr.call.func.with_changes(value=cst.parse_expression(tr.array))))
        hoisted.append(f"{name} = {args}")

    header: dict[int, cst.BaseExpression] = {}
    body: dict[int, cst.BaseExpression] = {}
    removed: list[cst.BaseStatement] = []
    # the iterable: each moved tensor by its new name
    for arg in _iter_arrays(node.iter):
        text = dotted(arg)
        if text in arrays:
            header[id(arg)] = cst.Name(arrays[text])
    for tr in transfers:
        if tr.indexed:
            # data[i].to(device) -> data_dev[i]
            receiver = tr.call.func.value
            body[id(tr.call)] = receiver.with_changes(value=cst.Name(arrays[tr.array]))
        elif tr.rebinds is not None:
            # for x in data: y = x.to(device) -> for y in data_dev
            for target in _target_names(node.target):
                if target.value == tr.row:
                    header[id(target)] = cst.Name(tr.rebinds)
            removed.append(tr.statement)
        else:
            body[id(tr.call)] = cst.Name(tr.row)

    new_body = [s for s in node.body.body if s not in removed]
    if not new_body:
        new_body = [cst.SimpleStatementLine([cst.Pass()])]
    new_body = [s.visit(_Rename(body)) if body else s for s in new_body]
    new_for = node.with_changes(
        target=node.target.visit(_Rename(header)),
        iter=node.iter.visit(_Rename(header)),
        body=node.body.with_changes(body=new_body),
        leading_lines=(),
    )
    text = "\n".join([*hoisted, cst.Module(body=[new_for]).code])
    moved = ", ".join(f"`{a}`" for a in arrays)
    message = f"moves {moved} once before the loop: `{'; '.join(hoisted)}` (it holds all of it there at once)"
    return Rewrite(HoistTransfer.NAME, loop, (Edit(loop.node, text),), message, SAFE, (), ctx.imports)


def _iter_arrays(iterable: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(iterable, cst.Call):
        return [a.value for a in iterable.args if isinstance(a.value, (cst.Name, cst.Attribute))]
    return [iterable]


def _target_names(target: cst.BaseExpression) -> list[cst.Name]:
    if isinstance(target, cst.Name):
        return [target]
    if isinstance(target, (cst.Tuple, cst.List)):
        out: list[cst.Name] = []
        for el in target.elements:
            out += _target_names(el.value)
        return out
    return []


def _fresh(array: str, method: str, taken: set[str]) -> str:
    base = array.split(".")[-1]
    for suffix in ("_cpu", "_gpu", "_cuda", "_dev", "_device"):
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
            break
    return fresh_name(f"{base}{_SUFFIX[method]}", taken, first=2, sep="")
