"""The fallback for pure maps over the leading dimension: `torch.vmap` of the loop body."""

from __future__ import annotations

import libcst as cst

from loopvec import exprs
from loopvec.analysis.loops import Loop, flatten_subscript, names_in
from loopvec.analysis.module import ModuleInfo, code, only
from loopvec.assemble import collect, store
from loopvec.lift import Lifted, LiftError, LiftScope
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite

from ._map_shape import MapShape, map_loop
from loopvec.analysis import traverse

# Python values out of a tensor: under vmap there is no single value to hand out
_TO_PYTHON_METHODS = {"item", "tolist", "numpy", "data_ptr", "__bool__", "__float__", "__int__", "__index__"}
_TO_PYTHON_BUILTINS = {"float", "int", "bool", "complex", "list", "tuple", "iter", "next", "sorted", "sum", "any",
                       "all", "max", "min", "round", "hash", "id", "repr", "str", "format"}
# results whose shape depends on the values: vmap needs one shape for every row
_DATA_SHAPED = {"torch.nonzero", "torch.unique", "torch.unique_consecutive", "torch.masked_select",
                "torch.argwhere", "torch.bincount", "torch.histc", "torch.tensor", "torch.as_tensor",
                "torch.from_numpy", "torch.repeat_interleave"}
# random without a torch.rand* name: vmap refuses randomness by default
_RANDOM = {"torch.nn.functional.dropout", "torch.nn.functional.dropout1d", "torch.nn.functional.dropout2d",
           "torch.nn.functional.dropout3d", "torch.nn.functional.alpha_dropout",
           "torch.nn.functional.feature_alpha_dropout", "torch.nn.functional.gumbel_softmax",
           "torch.nn.functional.rrelu"}
_DATA_SHAPED_METHODS = {"nonzero", "unique", "unique_consecutive", "masked_select", "argwhere", "bincount",
                        "repeat_interleave", "masked_fill_", "index_put_"}
# methods whose result may share memory with the tensor they are called on
_VIEW_METHODS = {
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze", "transpose", "t",
    "permute", "movedim", "moveaxis", "swapaxes", "swapdims", "narrow", "select", "expand", "expand_as", "detach",
    "contiguous", "to", "type", "type_as", "float", "double", "half", "bfloat16", "int", "long", "short", "byte",
    "char", "bool", "cpu", "cuda", "diagonal", "real", "imag", "as_strided", "unfold", "split", "chunk", "unbind",
    "tensor_split", "view_as_real", "view_as_complex", "conj", "resolve_conj", "resolve_neg", "align_to", "refine_names",
    "rename", "requires_grad_", "positive", "adjoint", "ravel", "broadcast_to", "hsplit", "vsplit", "dsplit",
    "unsafe_split", "split_with_sizes", "indices", "values", "as_subclass",
}
_VIEW_FUNCTIONS = {f"torch.{n}" for n in _VIEW_METHODS} | {"torch.atleast_1d", "torch.atleast_2d",
                                                          "torch.atleast_3d", "torch.broadcast_to",
                                                          "torch.nn.functional.dropout", "torch.nn.functional.pad"}


class _Unvmappable(cst.CSTVisitor):
    """The first thing in a body that vmap cannot run, as a decline reason."""

    def __init__(self, info: ModuleInfo, loop_names: set[str]) -> None:
        self.info = info
        self.loop_names = loop_names
        self.problem: str | None = None

    def _depends(self, node: cst.CSTNode) -> bool:
        return bool(names_in(node) & self.loop_names)

    def _found(self, text: str) -> None:
        if self.problem is None:
            self.problem = text

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        qual = self.info.qualname(func) or ""
        builtin = self.info.builtin_name(func)
        if isinstance(func, cst.Attribute) and func.attr.value in _TO_PYTHON_METHODS and self._depends(func.value):
            self._found(f"`.{func.attr.value}()` of a per-item tensor (vmap has no single value to return)")
        elif builtin in _TO_PYTHON_BUILTINS and builtin not in self.info.imports and self._depends(node):
            self._found(f"`{builtin}(...)` of a per-item tensor turns it into a Python value")
        elif qual in _DATA_SHAPED and self._depends(node):
            self._found(f"`{code(func)}` of per-item values: its shape depends on the data")
        elif isinstance(func, cst.Attribute) and func.attr.value in _DATA_SHAPED_METHODS and self._depends(func.value):
            self._found(f"`.{func.attr.value}()` of a per-item tensor: its shape depends on the data")
        elif qual in _RANDOM:
            self._found(f"`{code(func)}` draws random numbers")
        elif qual == "torch.where" and len(node.args) == 1:
            self._found("one-argument `torch.where`: its shape depends on the data")

    def visit_IfExp(self, node: cst.IfExp) -> None:
        if self._depends(node.test):
            self._found(f"`... if {code(node.test)} else ...` branches on a per-item value")

    def visit_If(self, node: cst.If) -> None:
        if self._depends(node.test):
            self._found(f"`if {code(node.test)}:` branches on a per-item value")

    def visit_While(self, node: cst.While) -> None:
        self._found("`while` in the body")

    def visit_BooleanOperation(self, node: cst.BooleanOperation) -> None:
        if self._depends(node):
            self._found(f"`{code(node)}`: `and`/`or` take the truth value of a per-item tensor")

    def visit_UnaryOperation(self, node: cst.UnaryOperation) -> None:
        if isinstance(node.operator, cst.Not) and self._depends(node):
            self._found(f"`{code(node)}`: `not` takes the truth value of a per-item tensor")

    def visit_Comparison(self, node: cst.Comparison) -> None:
        if len(node.comparisons) > 1 and self._depends(node):
            self._found(f"`{code(node)}`: a chained comparison takes the truth value of a per-item tensor")
        if any(isinstance(t.operator, (cst.In, cst.NotIn, cst.Is, cst.IsNot)) for t in node.comparisons) \
                and self._depends(node):
            self._found(f"`{code(node)}` on a per-item value")

    def visit_Subscript(self, node: cst.Subscript) -> None:
        # v[v > 0]: a boolean mask selects a data-dependent number of elements
        for el in node.slice:
            sl = el.slice
            if isinstance(sl, cst.Index) and isinstance(sl.value, cst.Comparison) and self._depends(sl.value):
                self._found(f"`{code(node)}`: a boolean mask's result has a data-dependent shape")


class _Freshness:
    """Whether a value shares no memory with the function's inputs. `torch.stack` copies;
    vmap hands back whatever the body returns, so a view of an input needs a `.clone()`.
    Views of values computed in the body are fine."""

    def __init__(self, info: ModuleInfo, helpers: dict[str, cst.FunctionDef], rows: set[str], depth: int = 0):
        self.info = info
        self.helpers = helpers
        self.rows = rows  # the parameters: input rows
        self.temps: dict[str, bool] = {}
        self.depth = depth

    def assign(self, name: str, value: cst.BaseExpression) -> None:
        self.temps[name] = self.fresh(value)

    def fresh(self, node: cst.BaseExpression) -> bool:
        if isinstance(node, (cst.BinaryOperation, cst.Comparison)):
            return True
        if isinstance(node, cst.UnaryOperation):
            # +x is torch.positive(x): x itself
            return isinstance(node.operator, (cst.Minus, cst.BitInvert))
        if isinstance(node, cst.Name):
            return self.temps.get(node.value, False)
        if isinstance(node, cst.Subscript):
            return self.fresh(node.value)
        if isinstance(node, cst.Attribute):
            return node.attr.value in ("T", "mT", "H", "mH", "real", "imag") and self.fresh(node.value)
        if not isinstance(node, cst.Call):
            return False
        qual = self.info.qualname(node.func)
        if qual is not None:
            if not qual.startswith("torch."):
                return False
            # torch.Tensor.view(v, ...) is v.view(...)
            if qual in _VIEW_FUNCTIONS or qual.startswith("torch.Tensor.") and qual.rsplit(".", 1)[-1] in _VIEW_METHODS:
                return bool(node.args) and self.fresh(node.args[0].value)
            return True
        if isinstance(node.func, cst.Name):
            helper = self.helpers.get(node.func.value)
            return helper is not None and self.depth < 3 and self._returns_fresh(helper)
        if isinstance(node.func, cst.Attribute):
            name = node.func.attr.value
            receiver = node.func.value
            if name in _VIEW_METHODS or name.endswith("_"):
                return self.fresh(receiver)
            # a method of a tensor (a row, or a value computed here) makes a new tensor; a
            # method of some other object (`model.forward`) is unknown
            known = isinstance(receiver, cst.Name) and (receiver.value in self.rows or receiver.value in self.temps)
            return known or self.fresh(receiver)
        return False

    def _returns_fresh(self, fn: cst.FunctionDef) -> bool:
        """Every `return` of a module-level helper gives a fresh value."""
        if not isinstance(fn.body, cst.IndentedBlock):
            return False
        inner = _Freshness(self.info, self.helpers, {p.name.value for p in fn.params.params}, self.depth + 1)
        returns = 0
        for stmt in fn.body.body:
            small = only(stmt)
            if isinstance(small, cst.Assign) and len(small.targets) == 1 \
                    and isinstance(small.targets[0].target, cst.Name):
                inner.assign(small.targets[0].target.value, small.value)
            elif isinstance(small, cst.Return) and small.value is not None:
                returns += 1
                if not inner.fresh(small.value):
                    return False
            elif not isinstance(small, (cst.Expr, cst.Pass)):
                return False  # branches and loops: more than one way out, not followed here
        return returns > 0


class _Rows(cst.CSTTransformer):
    """`a[i]` -> `a_row`, `a[i, j]` / `a[i][j]` -> `a_row[j]` for the loop index `i`."""

    def __init__(self, index: str, loop_names: set[str], names: dict[str, str], taken: set[str]) -> None:
        self.index = index
        self.loop_names = loop_names
        self.names = names  # array -> parameter name
        self.taken = taken

    def leave_Subscript(self, original: cst.Subscript, updated: cst.Subscript) -> cst.BaseExpression:
        flat = flatten_subscript(original)
        if flat is None:
            return updated
        base, parts = flat
        first = parts[0]
        if not (isinstance(first, cst.Index) and isinstance(first.value, cst.Name)
                and first.value.value == self.index):
            return updated
        if base.split(".")[0] in self.loop_names:
            return updated
        if any(self.index in names_in(p) for p in parts[1:]):
            return updated
        if base not in self.names:
            self.names[base] = _free(base.rsplit(".", 1)[-1] + "_row", self.taken)
        row = cst.Name(self.names[base])
        if len(parts) == 1:
            return row
        return cst.Subscript(value=row, slice=[
            cst.SubscriptElement(p, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                                 if k < len(parts) - 2 else cst.MaybeSentinel.DEFAULT)
            for k, p in enumerate(parts[1:])])


def _free(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}{k}", k + 1
    taken.add(out)
    return out


def _all_names(node: cst.CSTNode) -> set[str]:
    found: set[str] = set()

    class _V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            found.add(n.value)

    traverse.visit(node, _V())
    return found


def _passes_params(value: cst.BaseExpression, params: list[str], loop_names: set[str]) -> bool:
    """`f(a, b)` with exactly the map's parameters, in order, and `f` not bound in the loop."""
    return (isinstance(value, cst.Call) and isinstance(value.func, (cst.Name, cst.Attribute))
            and not (names_in(value.func) & (loop_names | set(params)))
            and [code(a.value) for a in value.args] == params
            and all(a.keyword is None and not a.star for a in value.args))


def _helpers(info: ModuleInfo) -> dict[str, cst.FunctionDef]:
    """Module-level functions of the whole file (the engine may show patterns one function)."""
    from .batch_call import _whole_file

    return _whole_file(info.source).functions


class Vmap:
    """Pure maps whose body the lifting table does not know: `torch.vmap` of the body.

    What it rewrites:
        A map loop (append then `torch.stack/cat/tensor`, a comprehension fed to one of
        them, or `out[i] = ...`) over the leading dimension whose body calls something
        no other pattern lifts (a helper function, an op without a table entry). The
        body becomes a lambda (or a local function when it has temporaries) and
        `torch.vmap` maps it; the verifier proves it, so a body vmap cannot run simply
        fails verification.

    Example:
        results = []
        for x in X:
            results.append(helper(x) * 2)
        results = torch.stack(results)

    Use instead:
        results = torch.vmap(lambda x: helper(x) * 2)(X)

    When it declines:
        What vmap cannot run and the source shows: `.item()`, `.tolist()`, `float(v)`
        and other Python values of per-item tensors; `if`/`and`/`or`/`not`/chained
        comparisons on per-item values (data-dependent control flow); results with a
        data-dependent shape (`v[v > 0]`, `nonzero`, `unique`, `torch.tensor(v)`);
        random numbers, in-place writes and other side effects; uses of the loop index
        other than `x[i]`; values that do not depend on the item. It is the last
        pattern tried (highest ORDER).
    """

    NAME = "vmap"
    DESCRIPTION = "pure maps with bodies no table knows -> torch.vmap(body)(X) (proved by the verifier)"
    SAFETY = SAFE
    ORDER = 1000

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        shape = map_loop(loop)
        if isinstance(shape, str):
            return Decline(self.NAME, shape)
        try:
            return self._rewrite(loop, ctx, shape)
        except LiftError as exc:
            return Decline(self.NAME, str(exc))

    def _rewrite(self, loop: Loop, ctx: PatternContext, shape: MapShape) -> Rewrite | Decline:
        dom = loop.domain
        info = ctx.info
        loop_names = set(dom.names) | set(loop.assigned)
        checker = _Unvmappable(info, loop_names)
        for node in [*shape.temps, shape.value]:
            traverse.visit(node, checker)
        if checker.problem:
            return Decline(self.NAME, checker.problem)
        for stmt in shape.temps:
            small = only(stmt)
            # t += 1, t[0] = 0, a compound statement: not a plain chain of temporaries
            if not (isinstance(small, cst.Assign) and all(isinstance(t.target, cst.Name) for t in small.targets)):
                return Decline(self.NAME, f"statement `{code(stmt).splitlines()[0]}` in the loop body")
        taken = _all_names(loop.function) if loop.function is not None else set()
        taken |= set(info.imports)
        params: list[str] = []
        arrays: list[str] = []
        scope = LiftScope.for_loop(info, ctx.torch, dom, loop_names)
        body = list(shape.temps)
        value = shape.value
        if dom.index is not None:
            names: dict[str, str] = {}
            rows = _Rows(dom.index, loop_names - {dom.index}, names, taken)
            body = [s.visit(rows) for s in body]
            value = value.visit(rows)
            for stmt in [*body, value]:
                # i * 2, x[i - 1], w[idx[i]]: the index itself, not a row of an array
                if dom.index in names_in(stmt):
                    return Decline(self.NAME, f"uses the loop index `{dom.index}` other than as `x[{dom.index}]`")
            for base, param in names.items():
                params.append(param)
                arrays.append(self._whole(base, scope))
        for name, array in dom.elements:
            if name in _all_names(value) or any(name in names_in(s) for s in body):
                params.append(name)
                arrays.append(array)
        # torch.stack([W for v in x]): the same value every time is a broadcast, not a map
        if not params:
            return Decline(self.NAME, "the value does not depend on the loop element")
        for stmt in body:
            # a temporary that shadows a parameter or an outer name read in the body
            target = only(stmt).targets[0].target.value
            if target in params:
                return Decline(self.NAME, f"`{target}` is rebound in the body")
        freshness = _Freshness(info, _helpers(info), set(params))
        for stmt in body:
            small = only(stmt)
            freshness.assign(small.targets[0].target.value, small.value)
        fresh = freshness.fresh(value)
        t = ctx.torch
        lines: list[str] = []
        if body:
            fn = _free("_per_item", taken)
            # built as a node: a body statement under a comment keeps its indentation
            local = cst.FunctionDef(
                name=cst.Name(fn),
                params=cst.Parameters([cst.Param(cst.Name(p)) for p in params]),
                body=cst.IndentedBlock([*body, cst.SimpleStatementLine([cst.Return(value)])]))
            lines = [code(local)]
            per_item: cst.BaseExpression = cst.Name(fn)
        elif _passes_params(value, params, loop_names):
            # lambda v: helper(v) is helper
            per_item = value.func
        else:
            per_item = cst.Lambda(params=cst.Parameters([cst.Param(cst.Name(p)) for p in params]), body=value)
        mapped = exprs.call(exprs.call(f"{t}.vmap", per_item), *arrays)
        lifted = Lifted(mapped, True, "tensor", fresh=fresh)
        assumptions = tuple(dict.fromkeys(scope.assumptions))
        if shape.kind == "comprehension":
            if body:
                return Decline(self.NAME, "comprehension with temporaries")
            new = collect(shape.finish, lifted, scope)
            return Rewrite(self.NAME, loop, (Edit(loop.collector.call, new),), f"becomes `{new}`",
                           SAFE, assumptions, ctx.imports)
        if shape.kind == "append":
            new = collect(shape.finish, lifted, scope)
            finish = shape.finish
            final = f"{finish.target} = {new}" if finish.target else f"return {new}"
            edits = (Edit(shape.init.statement, None), Edit(loop.node, "\n".join(lines) or None),
                     Edit(finish.statement, final))
            return Rewrite(self.NAME, loop, edits, f"becomes `{final}`", SAFE, assumptions, ctx.imports)
        write = loop.writes[0]
        if write.array in loop_names:
            return Decline(self.NAME, f"`{write.array}` is bound in the loop")
        stored = store(shape.init, write, lifted, scope, loop)
        edits = [Edit(loop.node, "\n".join([*lines, stored.statement]))]
        if stored.drop_init:
            edits.insert(0, Edit(shape.init.statement, None))
        return Rewrite(self.NAME, loop, tuple(edits), f"becomes `{stored.statement}`", SAFE, assumptions,
                       ctx.imports)

    def _whole(self, base: str, scope: LiftScope) -> str:
        """`x` for `x[i]` over `range(len(x))`; `x[:n]` when the loop walks only `range(n)`."""
        dom = scope.domain
        if base in dom.arrays:
            return base
        if dom.arrays:
            scope.assumptions.append(f"len({base}) == len({dom.arrays[0]})")
            return base
        return f"{base}[:{dom.extent}]"
