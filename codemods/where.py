"""Conditional maps: each element takes one of several branches -> `torch.where`."""

from __future__ import annotations

import itertools
import re
import struct
from dataclasses import dataclass, field, replace

import libcst as cst

from loopvec.analysis.loops import Access, Loop, flatten_subscript, names_in
from loopvec.analysis.module import code
from loopvec.assemble import collect, store
from loopvec.guards import map_loop_problem, used_after_problem
from loopvec.lift import LiftError, LiftScope, Lifted, as_operand, call, lift, method
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite


class Where:
    """Conditional map loops (the catalogue's Pattern 3 and "Complex Control Flow").

    What it rewrites:
        A map loop (or a comprehension fed to `torch.tensor/stack/cat`) whose value per
        element is chosen by conditions on that element: `if/elif/else` branches that each
        append once to the same list, branches that assign a temporary used afterwards,
        conditional expressions (`a if c else b`), and conditional stores into a
        preallocated, cloned or argument tensor (`if c: out[i] = a`, with or without
        `else`). Branches may compute with different functions.

    Example:
        result = []
        for x in data:
            if x > threshold:
                result.append(x * 2)
            else:
                result.append(x * 3)
        result = torch.tensor(result)

    Use instead:
        result = torch.where(data > threshold, data * 2, data * 3) if len(data) else torch.tensor([])
        (`if/elif/else` nests the `where`s; a branch that is undefined where it is not
        taken -- `y // d` under `d != 0`, `torch.log(x)` under `x > 0` -- runs on a safe
        stand-in there: `y // torch.where(d != 0, d, torch.ones_like(d))`. `if c: out[i] = a`
        becomes `out[keep] = a_on_kept.to(out.dtype)` in place, with `keep = c`; so do
        stores whose branches cannot share one `where` (different dtypes, or a condition
        on an array whose rank may differ from the values'), since masks line up by the
        leading dimension and `out[i] = v` casts each value on its own.)

    When it declines:
        break/return, side effects, random numbers, partial or strided ranges, iterating
        a Python list, a loop variable used after the loop, a condition that does not
        depend on the element, a condition that reads the output being built, a path
        that appends twice or to another list, an `if` without `else` around an append
        (a filter: see `boolean_mask`), appended branches whose dtypes may differ (`x * 2`
        vs `x / 2` is int64 vs float32 for an integer input, and `torch.tensor` of the list
        takes its dtype from the branches that ran; a hint such as
        `# loopvec: shapes data=[n]:float32` settles it), a Python number beside a tensor
        in a collected list, calls the lifting table does not know, ragged results.
    """

    NAME = "where"
    DESCRIPTION = "conditional maps (if/else appends, a if c else b, if c: out[i] = a) -> torch.where"
    SAFETY = SAFE
    ORDER = 5  # before elementwise: a conditional body is ours, with the dtype checks it needs

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        problem = map_loop_problem(loop)
        if problem:
            return Decline(self.NAME, problem)
        try:
            if loop.kind == "comprehension":
                return self._comprehension(loop, ctx)
            return self._for(loop, ctx)
        except LiftError as exc:
            return Decline(self.NAME, str(exc))

    # ------------------------------------------------------------------ comprehension
    def _comprehension(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        # [x for x in data if x > 0]: a filter changes the length (see boolean_mask)
        if loop.conditions:
            return Decline(self.NAME, "comprehension with an `if` filter (see boolean_mask)")
        scope = LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names))
        lifter = CondLifter(ctx, loop, scope)
        # no conditional expression: a plain map (see elementwise)
        if not lifter.has_condition(loop.element):
            return Decline(self.NAME, "no condition in the element")
        value = lifter.top_value(loop.element, (), "collect")
        new = collect(loop.collector, value.lifted, scope)
        return Rewrite(self.NAME, loop, (Edit(loop.collector.call, as_operand(new)),),
                       f"becomes `{new}`", SAFE, tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    # ------------------------------------------------------------------ for loops
    def _for(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        # total += x if x > 0 else 0: a reduction (see `reduction`)
        if loop.accumulators:
            return Decline(self.NAME, "accumulates into a name (a reduction)")
        problem = used_after_problem(loop, set())
        if problem:
            return Decline(self.NAME, problem)
        # out.append(x) and out2[i] = y: one loop, two outputs
        outputs = {a.target for a in loop.appends} | {w.array for w in loop.writes}
        if len(outputs) != 1:
            return Decline(self.NAME, "not exactly one output (one list or one tensor)")
        output = outputs.pop()
        # `if len(out) < k`, `out[i - 1]`, `out.sum()`: the condition reads what is being built
        problem = output_read_problem(loop, output)
        if problem:
            return Decline(self.NAME, problem)
        scope = LiftScope.for_loop(ctx.info, ctx.torch, loop.domain, set(loop.domain.names) | set(loop.assigned))
        lifter = CondLifter(ctx, loop, scope)
        # no if-statement and no `a if c else b`: a plain map (see elementwise)
        if not any(isinstance(s, cst.If) for s in loop.body) and not lifter.has_condition(loop.node.body):
            return Decline(self.NAME, "no condition in the body")
        walker = _Walker(lifter, loop)
        try:
            state = walker.run(loop.body, _State({}, None), (), top=True)
        except LiftError as exc:
            raise LiftError(lifter.explain(exc)) from None
        effect = state.effect
        if effect is None:
            return Decline(self.NAME, "no path appends or stores")
        if effect.kind == "append":
            return self._appended(loop, ctx, scope, walker, effect)
        return self._stored(loop, ctx, scope, walker, effect)

    def _appended(self, loop, ctx, scope, walker, effect) -> Rewrite | Decline:
        init = loop.setup.get(effect.target)
        # `out` filled before the loop, or read between: the list is more than this loop's
        if init is None or init.kind != "list" or init.interleaved:
            return Decline(self.NAME, f"`{effect.target}` is not an empty list right before the loop")
        finish = loop.finish.get(effect.target)
        if finish is None:
            return Decline(self.NAME, f"`{effect.target}` is not turned into a tensor with torch.stack/tensor/cat")
        if finish.list_used_later:
            return Decline(self.NAME, f"the list `{effect.target}` is used after it is stacked")
        # `if c: out.append(x)` with no else: fewer elements than iterations (see boolean_mask)
        if effect.full is None:
            return Decline(self.NAME, effect.reason or "appends on some paths only: a filter (see boolean_mask)")
        problem = between_problem(loop, finish, {line.split(" = ")[0] for line in walker.lines})
        if problem:
            return Decline(self.NAME, problem)
        new = collect(finish, effect.full.lifted, scope)
        final = f"{finish.target} = {new}" if finish.target else f"return {new}"
        edits = (
            Edit(init.statement, None),
            Edit(loop.node, "\n".join(walker.lines) or None),
            Edit(finish.statement, final),
        )
        return Rewrite(self.NAME, loop, edits, f"becomes `{final}`", SAFE,
                       tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    def _stored(self, loop, ctx, scope, walker, effect) -> Rewrite | Decline:
        write = effect.write
        out = write.array
        init = loop.setup.get(out)
        if write.array in scope.loop_names:
            return Decline(self.NAME, f"`{out}` is bound in the loop")
        lines = list(walker.lines)
        if effect.full is not None:
            stored = store(init, write, effect.full.lifted, scope, loop)
            lines.append(stored.statement)
            edits = [Edit(loop.node, "\n".join(lines))]
            if stored.drop_init:
                edits.insert(0, Edit(init.statement, None))
            return Rewrite(self.NAME, loop, tuple(edits), f"becomes `{stored.statement}`", SAFE,
                           tuple(dict.fromkeys(scope.assumptions)), ctx.imports)
        # some paths keep out[i] as it was: write only where a branch stored, in place
        if init is None or init.kind not in ("like", "alloc", "clone", "param"):
            return Decline(self.NAME, f"`{out}` is not a tensor allocated, cloned or passed in before the loop")
        # a second masked store would see the first one's writes through the condition
        if len(effect.leaves) > 1 and any(r.array == out for r in loop.reads):
            return Decline(self.NAME, f"conditions or values read `{out}` while several branches store into it")
        dom = loop.domain
        covers = out in dom.arrays or (init.kind in ("like", "clone") and init.ref in dom.arrays) or (
            bool(dom.arrays) and f"len({out}) == len({dom.arrays[0]})" in scope.assumptions)
        target = out if covers else f"{out}[:{dom.extent}]"
        taken: set[str] = set()
        named: dict[str, cst.Name] = {}
        for leaf in effect.leaves:
            lines += self._masked_store(loop, ctx, scope, walker.l, leaf, out, init, target, taken, named)
        last = lines[-1].replace("\n    ", " ")
        return Rewrite(self.NAME, loop, (Edit(loop.node, "\n".join(lines)),), f"becomes `{last}`", SAFE,
                       tuple(dict.fromkeys(scope.assumptions)), ctx.imports)

    def _masked_store(self, loop, ctx, scope, lifter, leaf, out: str, init, target: str, taken: set[str],
                      named) -> list[str]:
        """`out[keep] = value computed on the kept elements only` for one storing path."""
        pred = Lifted(leaf.pred.node.visit(_Rename(named)), True, "bool")
        problem = lifter.one_per_element(leaf.info, "each condition")
        if problem:
            scope.assumptions.append(problem)
        if not leaf.val.lifted.batched:
            value = leaf.val.literal
            rhs = leaf.val.lifted.code
            if value is _NOT and not _python_scalar_param(loop, leaf.node):
                # out[keep] = row raises for a row of another dtype; out[i] = row casts it
                rhs = f"{ctx.torch}.as_tensor({rhs}, dtype={out}.dtype, device={out}.device)"
            statement = cst.parse_statement(f"{target}[{MASK}] = {rhs}\n")
            if isinstance(value, int) and -128 <= value <= 127 or isinstance(value, float) and 0 <= value <= 127:
                lines, (statement,) = name_mask(loop, [statement], pred, taken)
                return [*lines, code(statement)]
            # out[keep] = low raises for a uint8 `out` and low = -0.25 even where nothing is
            # kept; the loop raises only when it stores: store only when something is kept
            lines, (statement,) = name_mask(loop, [statement], pred, taken, extra_uses=1)
            keep = lines[0].split(" = ")[0] if lines else code(_paren(pred.node))
            return [*lines, f"if {keep}.any():\n    {code(statement)}"]
        saved = lifter.snapshot()
        lifter.restore(leaf.saved)
        masked = CondLifter(ctx, loop, scope, mask=cst.Name(MASK))
        masked.sigs, masked.full_temps, masked.leaves = dict(lifter.sigs), set(lifter.full_temps), lifter.leaves
        try:
            value = masked.top_value(leaf.node, (), "store")
            rhs = value.lifted.node
        except LiftError:
            # computed on every element (guarded where the path does not hold), then masked
            value = leaf.val
            rhs = cst.Subscript(value=_paren(leaf.val.lifted.node),
                                slice=[cst.SubscriptElement(cst.Index(cst.Name(MASK)))])
        finally:
            lifter.restore(saved)
        # out[keep] = v raises unless v has out's dtype (out[i] = v casts): cast unless it has
        same = init is not None and init.kind in ("like", "clone") and init.ref is not None \
            and not _has_dtype_keyword(init) and value.sig == ("sym", "id", frozenset({init.ref}))
        rhs_code = code(rhs) if same else f"{code(_paren(rhs))}.to({out}.dtype)"
        statement = cst.parse_statement(f"{target}[{MASK}] = {rhs_code}\n")
        lines, (statement,) = name_mask(loop, [statement], pred, taken)
        if lines:
            named[code(leaf.pred.node)] = cst.Name(lines[0].split(" = ")[0])
        return [*lines, code(statement)]


def _has_dtype_keyword(init) -> bool:
    value = init.value
    return isinstance(value, cst.Call) and any(a.keyword is not None and a.keyword.value == "dtype"
                                               for a in value.args)


def _python_scalar_param(loop: Loop, node: cst.BaseExpression) -> bool:
    """`node` is a parameter annotated `float`, `int` or `bool`: a Python number."""
    fn = loop.function
    if fn is None or not isinstance(node, cst.Name):
        return False
    for p in (*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params):
        if p.name.value == node.value and p.annotation is not None:
            return code(p.annotation.annotation) in ("float", "int", "bool")
    return False


# =========================================================================== shared machinery
# The pieces below are shared with `boolean_mask`: lifting conditions (truthiness, `not`,
# short-circuit `and`/`or`), branches guarded where they are not taken, masked lifting
# (`x` -> `data[keep]`), and the dtype signatures that decide whether two branches may
# be merged into one tensor.


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

    class _V(cst.CSTVisitor):
        def visit_Attribute(self, node: cst.Attribute) -> bool:
            node.value.visit(self)
            return False

        def visit_Arg(self, node: cst.Arg) -> bool:
            node.value.visit(self)
            return False

        def visit_Name(self, node: cst.Name) -> None:
            if node.value == output and id(node) not in allowed:
                found.append(node.value)

    body = loop.node.body if loop.kind == "for" else loop.node
    body.visit(_V())
    if found:
        return f"the body reads `{output}`, the output being built"
    return None


def between_problem(loop: Loop, finish, emitted: set[str]) -> str | None:
    """Temporaries emitted where the loop was are read again by the new finish statement:
    no statement in between may touch them (`t = ...` there would change what it reads)."""
    block = loop.block
    try:
        end = next(k for k, st in enumerate(block) if st is finish.statement)
    except StopIteration:
        return "the stacking statement is not in the loop's block"
    for stmt in block[loop.block_index + 1:end]:
        touched = sorted(emitted & {n.value for n in _walk(stmt) if isinstance(n, cst.Name)})
        if touched:
            return f"`{touched[0]}` is used between the loop and `{code(finish.call.func)}`"
    return None


def adjacent(loop: Loop, finish) -> bool:
    """The finish statement comes right after the loop (a named mask cannot be rebound between)."""
    block = loop.block
    k = loop.block_index + 1
    return 0 < k < len(block) and block[k] is finish.statement


def fresh_name(loop: Loop, taken: set[str], bases=("keep", "mask", "selected")) -> str:
    """A name the function does not use, for a mask computed once and used several times."""
    used = set(taken)
    fn = loop.function
    if fn is not None:
        # every name in the body, nested functions included (a closure may read a global `keep`)
        used |= {n.value for n in _walk(fn.body) if isinstance(n, cst.Name)}
        used |= {p.name.value for p in (*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params)}
        for star in (fn.params.star_arg, fn.params.star_kwarg):
            if isinstance(star, cst.Param):
                used.add(star.name.value)
    for k in range(100):
        for base in bases:
            name = base if k == 0 else f"{base}_{k}"
            if name not in used:
                taken.add(name)
                return name
    raise LiftError("no free name for the mask")


def _count_mask(node: cst.CSTNode) -> int:
    return sum(1 for n in _walk(node) if isinstance(n, cst.Name) and n.value == MASK)


def _walk(node: cst.CSTNode):
    yield node
    for child in node.children:
        yield from _walk(child)


class _Substitute(cst.CSTTransformer):
    def __init__(self, new: cst.BaseExpression) -> None:
        self.new = new

    def leave_Name(self, original_node, updated_node):
        return self.new if original_node.value == MASK else updated_node

    def leave_Attribute(self, original_node, updated_node):
        # `keep.any()` with an inlined mask needs `(data > 0).any()`
        if isinstance(original_node.value, cst.Name) and original_node.value.value == MASK:
            return updated_node.with_changes(value=_paren(self.new))
        return updated_node


class _Rename(cst.CSTTransformer):
    """Sub-conditions that already have a name (`~keep` for the else branch of `keep`)."""

    def __init__(self, named: dict[str, cst.Name]) -> None:
        self.named = named

    def on_leave(self, original_node, updated_node):
        if self.named and isinstance(original_node, cst.BaseExpression):
            name = self.named.get(code(original_node.with_changes(lpar=[], rpar=[])) if original_node.lpar
                                  else code(original_node))
            if name is not None:
                return name
        return updated_node


def _cheap(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.BitInvert):
        node = node.expression
    return isinstance(node, cst.Name)


def name_mask(loop: Loop, nodes: list, pred: Lifted, taken: set[str], may_name: bool = True, extra_uses: int = 0):
    """Put the mask into `nodes` (code holding MASK placeholders): inline when it is used
    once or is a name already, else computed once as `keep = <mask>` before them.
    Returns the statements to put first and the nodes."""
    uses = sum(_count_mask(n) for n in nodes) + extra_uses
    if uses <= 1 or _cheap(pred.node) or not may_name:
        return [], [n.visit(_Substitute(pred.node)) for n in nodes]
    name = fresh_name(loop, taken)
    return [f"{name} = {code(pred.node)}"], [n.visit(_Substitute(cst.Name(name))) for n in nodes]


def declared_specs(loop: Loop, info) -> dict:
    """What the function declares about its tensor parameters: the `# loopvec: shapes` hint
    on the def line (`x=[n]:float32`), else an annotation (`Float[Tensor, "n"]`)."""
    from loopvec.verify.specs import SpecError, TensorSpec, parse_annotation, parse_hint_comment, parse_spec

    fn = loop.function
    if fn is None:
        return {}
    out: dict = {}
    params = [*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params]
    for p in params:
        if p.annotation is not None:
            text = code(p.annotation.annotation)
            spec = parse_annotation(text)
            if isinstance(spec, TensorSpec):
                # jaxtyping's "*batch" and "..." stand for any number of dims: no rank
                out[p.name.value] = replace(spec, dims=None) if "*" in text or "..." in text else spec
    try:
        first = info.position(fn).start.line
        last = info.position(fn.body.body[0]).start.line - 1 if isinstance(fn.body, cst.IndentedBlock) else first
    except KeyError:
        return out
    for line in info.source.splitlines()[first - 1:max(first, last)]:
        for name, text in parse_hint_comment(line).items():
            try:
                spec = parse_spec(text)
            except SpecError:
                continue
            if isinstance(spec, TensorSpec):
                out[name] = spec
            else:
                out.pop(name, None)
    return out


def declared_dtypes(specs: dict) -> dict[str, tuple[str, ...]]:
    return {name: tuple(spec.dtypes) for name, spec in specs.items() if spec.dtypes}


def declared_ranks(specs: dict) -> dict[str, int]:
    return {name: len(spec.dims) for name, spec in specs.items() if spec.dims is not None}


# --------------------------------------------------------------------------- dtype signatures
# A signature says what dtype a per-element value has, as a function of the inputs'
# dtypes. Two branches may be merged into one `torch.where` only when their signatures
# are equal: `x * 2` and `x * 3` always agree; `x * 2` and `x / 2` do not (int64 vs
# float32 for an integer `x`), and `torch.tensor(list)` would take its dtype from the
# branches that actually ran.
#   ("py", "int"|"float"|"bool"|"complex")    a Python number
#   ("dt", dtype)                               a fixed dtype ("float32", "bool", "default")
#   ("sym", mode, frozenset(arrays))            the arrays' promoted dtype, then mode:
#        "id" as is, "int" bool -> int64, "float" non-floating -> the default float dtype
#   ("op", key)                                 anything else; equal only if the same structure
Sig = tuple

PY_INT, PY_FLOAT, PY_BOOL = ("py", "int"), ("py", "float"), ("py", "bool")
DT_BOOL = ("dt", "bool")
_MODES = {"id": 0, "int": 1, "float": 2}
_FLOATING = {"float16", "bfloat16", "float32", "float64", "complex64", "complex128", "default"}
_INTS = ["uint8", "int8", "int16", "int32", "int64"]
_FLOATS = ["float16", "bfloat16", "float32", "float64"]
_ARITH = (cst.Add, cst.Subtract, cst.Multiply, cst.FloorDivide, cst.Modulo, cst.Power, cst.BitAnd,
          cst.BitOr, cst.BitXor, cst.LeftShift, cst.RightShift)

# torch functions (and tensor methods) whose result is floating for any input
_FLOATIFY = {
    "sin", "cos", "tan", "asin", "acos", "atan", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "asinh", "acosh", "atanh", "arcsinh", "arccosh", "arctanh", "exp", "exp2", "expm1",
    "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "sigmoid", "erf", "erfc", "erfinv",
    "lgamma", "digamma", "reciprocal", "logit", "sinc", "i0", "expit", "ndtr", "ndtri",
    "log_ndtr", "entr", "i0e", "i1", "i1e", "logsigmoid", "softplus", "gelu", "silu", "mish",
    "elu", "selu", "celu", "softsign", "tanhshrink",
}
# ... whose result keeps the input's dtype
_KEEP = {"abs", "absolute", "neg", "negative", "positive", "floor", "ceil", "round", "trunc",
         "fix", "sign", "relu", "clone", "detach", "contiguous", "frac", "nan_to_num", "conj",
         "square", "relu6", "hardtanh", "leaky_relu", "hardshrink", "softshrink", "threshold"}
# ... whose result is bool
_PREDICATES = {"isnan", "isinf", "isfinite", "isposinf", "isneginf", "signbit", "isreal",
               "logical_not", "logical_and", "logical_or", "logical_xor", "eq", "ne", "lt", "le",
               "gt", "ge", "greater", "greater_equal", "less", "less_equal", "not_equal", "isclose"}
# binary functions that promote like `+` / like `/`
_PROMOTE2 = {"add": cst.Add, "sub": cst.Subtract, "subtract": cst.Subtract, "mul": cst.Multiply,
             "multiply": cst.Multiply, "maximum": cst.Add, "minimum": cst.Add, "fmax": cst.Add,
             "fmin": cst.Add, "remainder": cst.Modulo, "fmod": cst.Modulo, "floor_divide": cst.FloorDivide,
             "div": cst.Divide, "divide": cst.Divide, "true_divide": cst.Divide, "atan2": cst.Divide,
             "arctan2": cst.Divide, "hypot": cst.Divide, "logaddexp": cst.Divide, "xlogy": cst.Divide,
             "copysign": cst.Divide, "pow": cst.Power, "float_power": None}
_CAST_METHODS = {"float": "float32", "double": "float64", "half": "float16", "bfloat16": "bfloat16",
                 "long": "int64", "int": "int32", "short": "int16", "byte": "uint8", "char": "int8",
                 "bool": "bool", "cfloat": "complex64", "cdouble": "complex128"}
_DTYPE_NAMES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "int64": "int64",
    "long": "int64", "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "bool": "bool", "complex64": "complex64",
    "complex128": "complex128",
}


def _opaque(*parts) -> Sig:
    return ("op", repr(parts))


def _floatify(sig: Sig) -> Sig:
    kind = sig[0]
    if kind == "sym":
        return ("sym", "float", sig[2])
    if kind == "dt":
        return sig if sig[1] in _FLOATING else ("dt", "default")
    if kind == "py":
        return PY_FLOAT if sig[1] != "complex" else sig
    return _opaque("floatify", sig)


def _promote_dt(a: str, b: str) -> str | None:
    """torch.promote_types for the dtypes a signature can name; None when unsure."""
    if a == b:
        return a
    if a == "bool":
        return b
    if b == "bool":
        return a
    if a in _INTS and b in _INTS:
        if {a, b} == {"uint8", "int8"}:
            return "int16"
        if "uint8" in (a, b):
            other = b if a == "uint8" else a
            return other if other != "int8" else "int16"
        return max(a, b, key=_INTS.index)
    if a in _INTS and b in _FLOATS:
        return b
    if b in _INTS and a in _FLOATS:
        return a
    if a in _FLOATS and b in _FLOATS:
        if {a, b} == {"float16", "bfloat16"}:
            return "float32"
        return max(a, b, key=_FLOATS.index)
    return None


def binop_sig(op: cst.BaseBinaryOp, a: Sig | None, b: Sig | None) -> Sig | None:
    """The signature of `a op b`, by torch's promotion rules (Python numbers are weak)."""
    if a is None or b is None:
        return None
    divide = isinstance(op, cst.Divide)
    if not divide and not isinstance(op, _ARITH):
        return None
    ka, kb = a[0], b[0]
    if ka == "py" and kb == "py":
        if divide:
            return PY_FLOAT if "complex" not in (a[1], b[1]) else ("py", "complex")
        for k in ("complex", "float", "int"):
            if k in (a[1], b[1]):
                return ("py", k)
        return PY_BOOL if isinstance(op, (cst.BitAnd, cst.BitOr, cst.BitXor)) else PY_INT
    if kb == "py" and ka != "py":
        a, b, ka, kb = b, a, kb, ka
    if ka == "py":  # a Python number with a tensor b: the tensor's dtype wins within its category
        if a[1] == "complex":
            return _opaque(type(op).__name__, a, b)
        if divide or a[1] == "float":
            return _floatify(b)
        if a[1] == "bool":
            return b
        if kb == "sym":
            return ("sym", max(b[1], "int", key=_MODES.get), b[2])
        if kb == "dt":
            return ("dt", "int64") if b[1] == "bool" else b
        return _opaque(type(op).__name__, a, b)
    if ka == "sym" and kb == "sym":
        if a[2] == b[2]:
            mode = "float" if divide else max(a[1], b[1], key=_MODES.get)
            return ("sym", mode, a[2])
        if a[1] == b[1] == "id":
            return ("sym", "float" if divide else "id", a[2] | b[2])
    if ka == "dt" and kb == "dt":
        promoted = _promote_dt(a[1], b[1])
        if promoted is not None:
            return _floatify(("dt", promoted)) if divide else ("dt", promoted)
    return _opaque(type(op).__name__, a, b)


def _concrete(sig: Sig, dtypes: dict[str, str]) -> str | None:
    """The dtype `sig` names when each array has the dtype `dtypes` gives it."""
    if sig[0] == "dt":
        return sig[1]
    if sig[0] != "sym":
        return None
    out = None
    for leaf in sorted(sig[2]):
        out = dtypes[leaf] if out is None else _promote_dt(out, dtypes[leaf])
        if out is None:
            return None
    if sig[1] == "int" and out == "bool":
        return "int64"
    if sig[1] == "float" and out not in _FLOATING:
        return "default"
    return out


def literal(node: cst.BaseExpression):
    """The Python value of a numeric or bool literal (`-1` included), else _NOT."""
    if isinstance(node, (cst.Integer, cst.Float)):
        return node.evaluated_value
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus) and isinstance(
            node.expression, (cst.Integer, cst.Float)) and not node.lpar:
        return -node.expression.evaluated_value
    if isinstance(node, cst.Name) and node.value in ("True", "False"):
        return node.value == "True"
    return _NOT


_NOT = object()
_PLACEHOLDERS = itertools.count()
MASK = "__lvmask"  # stands for the mask until it is known whether it gets a name of its own


def _portable_literal(value) -> bool:
    return isinstance(value, (bool, int)) or _exact_in_half(value)


def _exact_in_half(value: float) -> bool:
    """`value` is exactly representable in float16 and bfloat16."""
    try:
        half = struct.unpack("<e", struct.pack("<e", value))[0]
    except (OverflowError, struct.error):
        return False
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    as_float32 = struct.unpack("<f", struct.pack("<f", value))[0]
    return half == value and as_float32 == value and bits & 0xFFFF == 0


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Val:
    """A lifted per-element value with its dtype signature and source text."""

    lifted: Lifted
    sig: Sig | None
    src: str
    literal: object = _NOT
    info: tuple = (frozenset(), False)  # (arrays read per element, reads a sub-part of an element)


def _paren(node: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float)) or node.lpar:
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _operand(node: cst.BaseExpression) -> cst.BaseExpression:
    # `~a & b` needs no parentheses: `~` binds tighter than `&` and `|`
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.BitInvert):
        return node
    return _paren(node)


def _op(left: cst.BaseExpression, op: type, right: cst.BaseExpression) -> cst.BinaryOperation:
    return cst.BinaryOperation(left=_operand(left), operator=op(
        whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")),
        right=_operand(right))


def negate(pred: Lifted) -> Lifted:
    # `~(x > t)`, not `x <= t`: for NaN both comparisons are False
    return Lifted(cst.UnaryOperation(cst.BitInvert(), _paren(pred.node)), True, "bool")


def conjoin(preds) -> Lifted | None:
    out = None
    for p in preds:
        out = p if out is None else Lifted(_op(out.node, cst.BitAnd, p.node), True, "bool")
    return out


# functions undefined (an exception, or an infinite derivative) somewhere, and a point
# where they are fine: a branch not taken computes on that point instead
_PARTIAL = {"log": 1, "log2": 1, "log10": 1, "log1p": 0, "sqrt": 1, "rsqrt": 1, "reciprocal": 1,
            "acos": 0, "arccos": 0, "asin": 0, "arcsin": 0, "atanh": 0, "arctanh": 0, "acosh": 2,
            "arccosh": 2, "lgamma": 1, "digamma": 1, "erfinv": 0, "logit": 0.5}
# functions whose second argument is a divisor; the integer ones raise on zero
_DIVISORS = {"div": False, "divide": False, "true_divide": False, "floor_divide": True,
             "remainder": True, "fmod": True, "xlogy": False}


class CondLifter:
    """Lifts conditions and branch values of one loop.

    `mask`, when given, is the whole-array mask the values are computed under (boolean
    masking): every per-element leaf `x` becomes `data[mask]`, so values are computed on
    the selected elements only.
    """

    def __init__(self, ctx: PatternContext, loop: Loop, scope: LiftScope, mask: cst.BaseExpression | None = None):
        self.info = ctx.info
        self.torch = ctx.torch
        self.loop = loop
        self.dom = loop.domain
        self.scope = scope
        self.mask = mask
        self.sigs: dict[str, Sig | None] = {}
        self.full_temps: set[str] = set()  # temps whose lifted value is a whole-array (unmasked) expression
        self.unmerged: dict[str, str] = {}  # temps whose branches could not be merged, and why
        specs = declared_specs(loop, ctx.info)
        self.declared = declared_dtypes(specs)
        self.ranks = declared_ranks(specs)
        self.sources: dict[str, str] = {}  # placeholder -> the source it stands for, for messages
        self.leaves: dict[str, tuple] = {}  # temp -> leaf info of its value
        self.pred_info: dict[int, tuple] = {}  # id(predicate) -> leaf info of its condition
        self.depth = 1  # loop levels one element takes off an array (2 for a walk over 2-D entries)

    # ---------------------------------------------------------------- helpers
    def explain(self, exc: LiftError) -> str:
        """A read of a temporary that branches could not merge: say why they could not."""
        message = str(exc)
        for name, why in self.unmerged.items():
            if f"`{name}` is bound in the loop" in message:
                return f"`{name}`: {why}"
        return message

    def batched(self, node: cst.CSTNode) -> bool:
        return bool(names_in(node) & self.scope.loop_names)

    def has_condition(self, node: cst.CSTNode) -> bool:
        found = []

        class _V(cst.CSTVisitor):
            def visit_IfExp(_self, n) -> None:
                if self.batched(n.test):
                    found.append(n)

        node.visit(_V())
        return bool(found)

    def unplaceholder(self, message: str) -> str:
        """A lifting error in the user's words: placeholders back to the source they replaced."""
        for _ in range(10):
            new = re.sub(r"__lv\d+", lambda m: self.sources.get(m.group(0), m.group(0)), message)
            if new == message:
                break
            message = new
        return message

    def snapshot(self) -> tuple:
        return dict(self.scope.temps), dict(self.sigs), set(self.full_temps)

    def restore(self, saved: tuple) -> None:
        for mine, theirs in zip((self.scope.temps, self.sigs, self.full_temps), saved):
            mine.clear()
            mine.update(theirs)

    def placeholder(self, lifted: Lifted, src: str = "...") -> cst.Name:
        name = f"__lv{next(_PLACEHOLDERS)}"
        self.sources[name] = src
        self.scope.temps[name] = lifted
        self.scope.loop_names.add(name)
        return cst.Name(name)

    def fn(self, name: str) -> cst.BaseExpression:
        return self.scope.torch_fn(name)

    def where(self, test: Lifted, a: Lifted, b: Lifted | cst.BaseExpression) -> cst.Call:
        other = b.node if isinstance(b, Lifted) else b
        return call(self.fn("where"), test.node, a.node, other)

    # ---------------------------------------------------------------- values
    def value(self, node: cst.BaseExpression, path: tuple = ()) -> Val:
        prepared = _Prepare(self, path).prepare(node)
        try:
            lifted = lift(prepared, self.scope)
        except LiftError as exc:
            raise LiftError(self.unplaceholder(str(exc))) from None
        return Val(lifted, self.sig(node), code(node), literal(node), self.leaf_info(node))

    def top_value(self, node: cst.BaseExpression, path: tuple, context: str) -> Val:
        """The value appended or stored: a top-level `a if c else b` merges under `context` rules."""
        if isinstance(node, cst.IfExp) and self.batched(node.test):
            test = self.predicate(node.test, path)
            a = self.top_value(node.body, (*path, test), context)
            b = self.top_value(node.orelse, (*path, self.neg(test)), context)
            return self.merge(test, a, b, context)
        return self.value(node, path)

    # ---------------------------------------------------------------- ranks
    def leaf_info(self, node: cst.CSTNode) -> tuple:
        """The arrays a per-element expression reads, and whether it reads part of an element
        (`row[0]`, `x[i, 0]`): what decides whether its per-element rank may differ from another's."""
        leaves: set[str] = set()
        sub = False
        lifter = self

        class _V(cst.CSTVisitor):
            def visit_Attribute(self, n: cst.Attribute) -> bool:
                n.value.visit(self)
                return False

            def visit_Arg(self, n: cst.Arg) -> bool:
                n.value.visit(self)
                return False

            def visit_Name(self, n: cst.Name) -> None:
                nonlocal sub
                name = n.value
                if name in lifter.leaves:
                    leaves.update(lifter.leaves[name][0])
                    sub = sub or lifter.leaves[name][1]
                elif name in lifter.scope.elements and name not in lifter.scope.temps:
                    leaves.add(code(lifter.scope.elements[name].node))
                elif name == lifter.dom.index:
                    leaves.add(f"`{name}`")

            def visit_Subscript(self, n: cst.Subscript) -> bool:
                nonlocal sub
                if not lifter.batched(n):
                    return False
                flat = flatten_subscript(n)
                if flat is None:
                    return True
                base, parts = flat
                head = base.split(".")[0]
                first = parts[0]
                if head in lifter.scope.elements or head in lifter.leaves:
                    cst.Name(head).visit(self)
                    sub = True
                elif (isinstance(first, cst.Index) and isinstance(first.value, cst.Name)
                      and first.value.value == lifter.dom.index):
                    leaves.add(base)
                    sub = sub or len(parts) > 1
                else:
                    return True
                for p in parts:
                    p.visit(self)
                return False

        node.visit(_V())
        return frozenset(leaves), sub

    def same_rank(self, test_info: tuple, *vals: Val) -> tuple[str | None, int]:
        """How `torch.where(test, a, b)` lines each condition up with its element's value:
        (None, 0) when it does as written, (None, k) when the condition needs k trailing
        dims (a 1-D `m` selecting rows of a declared 2-D `x`: `m[:, None]`), or (the
        assumption it needs, 0) when the ranks are unknown."""
        leaves, sub = test_info
        if not sub and all(not v.info[1] and v.info[0] in (frozenset(), leaves) for v in vals):
            return None, 0
        value_leaves = {leaf for v in vals for leaf in v.info[0]}
        if not sub and not any(v.info[1] for v in vals):
            cond_rank = self._element_rank(leaves)
            value_rank = self._element_rank(value_leaves)
            if cond_rank is not None and value_rank is not None and value_rank >= cond_rank:
                return None, value_rank - cond_rank
        names = sorted(leaves | value_leaves)
        return f"{' and '.join(names)} have one rank: one condition per element value", 0

    def one_per_element(self, info: tuple, what: str) -> str | None:
        """None when a condition is provably one value per element (declared 1-D arrays, the
        index); else the assumption that it is: a mask line up by the leading dimension only
        when it has exactly one dimension (a [n, 1] mask would select single entries)."""
        leaves, sub = info
        if not sub and self._element_rank(leaves) == 0:
            return None
        return f"{what} is one value per element"

    def _element_rank(self, leaves) -> int | None:
        """The rank of one element of these arrays, from declared shapes; None if unknown."""
        ranks = set()
        for leaf in leaves:
            if leaf.startswith("`"):
                ranks.add(0)  # the loop index: one Python int per element
            elif leaf in self.ranks and self.ranks[leaf] >= self.depth:
                ranks.add(self.ranks[leaf] - self.depth)
            else:
                return None
        return max(ranks) if ranks else 0

    def align(self, test: Lifted, k: int) -> Lifted:
        if not k:
            return test
        parts = [cst.SubscriptElement(cst.Slice(lower=None, upper=None))] + [
            cst.SubscriptElement(cst.Index(cst.Name("None"))) for _ in range(k)]
        parts = [p.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                 if j < len(parts) - 1 else p for j, p in enumerate(parts)]
        return Lifted(cst.Subscript(value=_paren(test.node), slice=parts), True, test.kind)

    def neg(self, pred: Lifted) -> Lifted:
        out = negate(pred)
        self.pred_info[id(out)] = self.pred_info.get(id(pred), (frozenset(), True))
        return out

    def path_info(self, path: tuple) -> tuple:
        infos = [self.pred_info.get(id(p), (frozenset(), True)) for p in path]
        return frozenset().union(*(i[0] for i in infos)), any(i[1] for i in infos)

    def merge(self, test: Lifted, a: Val, b: Val, context: str) -> Val:
        """`a` where `test` else `b`, or LiftError when no single `torch.where` equals the loop.

        context: "inner" (a value used further), "collect" (appended to a list) or
        "store" (`out[i] = ...`, which casts each value to `out`'s dtype on its own).
        """
        src = f"{a.src} if ... else {b.src}"
        test_info = self.pred_info.get(id(test), (frozenset(), True))
        info = (test_info[0] | a.info[0] | b.info[0], test_info[1] or a.info[1] or b.info[1])
        rank, k = self.same_rank(test_info, a, b)
        if rank is not None:
            # stores fall back to masked stores, which line up by the leading dimension
            if context == "store":
                raise LiftError(f"`torch.where` needs {rank}")
            self.scope.assumptions.append(rank)
        node = self.where(self.align(test, k), a.lifted, b.lifted)
        lits = (a.literal, b.literal)
        if context != "collect" and _NOT not in lits and not all(_portable_literal(v) for v in lits):
            # where(c, 0.1, 0.7) is float32: 0.1 would be rounded before it is stored or used
            raise LiftError(f"branches `{a.src}` and `{b.src}` are Python numbers that torch.where "
                            "would round to the default dtype")
        if a.sig is not None and (a.sig == b.sig or self.same_declared(a.sig, b.sig)):
            kinds = {a.lifted.kind, b.lifted.kind} - {"const", "invariant"}
            if len(kinds) > 1:
                raise LiftError(f"branches `{a.src}` and `{b.src}` mix a Python number and a tensor")
            kind = kinds.pop() if kinds else {"py": {"int": "int", "float": "float", "bool": "bool"}.get(
                a.sig[1], "tensor")}.get(a.sig[0], "tensor")
            return Val(Lifted(node, True, kind), a.sig, src, info=info)
        if context == "store":
            ok = self._store_exempt(a, b) or self._store_exempt(b, a)
            if ok is not None:
                return Val(Lifted(node, True, "tensor"), ok, src, info=info)
        python = [v.sig is not None and v.sig[0] == "py" for v in (a, b)]
        if context == "collect" and all(python):
            raise LiftError(f"branches `{a.src}` and `{b.src}` are Python numbers of different types: "
                            "torch.tensor's dtype would depend on which branches ran")
        if context == "collect" and any(python):
            raise LiftError(f"branches `{a.src}` and `{b.src}`: a list mixing a Python number and "
                            "tensors takes its dtype from the branches that ran")
        raise LiftError(f"branches `{a.src}` and `{b.src}` may differ in dtype (e.g. for integer "
                        "inputs): the result's dtype would depend on which branches ran")

    def same_declared(self, a: Sig | None, b: Sig | None) -> bool:
        """`a` and `b` name the same dtype for every dtype the parameters declare."""
        if a is None or b is None or a[0] != b[0] and "py" in (a[0], b[0]):
            return False
        leaves = sorted({leaf for s in (a, b) if s[0] == "sym" for leaf in s[2]})
        if not leaves or any(leaf not in self.declared for leaf in leaves):
            return False
        for choice in itertools.product(*(self.declared[leaf] for leaf in leaves)):
            dtypes = dict(zip(leaves, choice))
            ca, cb = _concrete(a, dtypes), _concrete(b, dtypes)
            if ca is None or ca != cb:
                return False
        self.scope.assumptions += [f"{leaf} is {' or '.join(self.declared[leaf])} as declared" for leaf in leaves]
        return True

    def _store_exempt(self, lit: Val, other: Val) -> Sig | None:
        """`out[i] = c if ... else v` casts each value to out's dtype: a constant that every dtype
        holds exactly may stand beside a tensor (where() gives it the tensor's dtype)."""
        value = lit.literal
        if value is _NOT:
            return None
        if other.literal is not _NOT:
            both = (value, other.literal)
            if all(isinstance(v, (bool, int)) for v in both):
                return PY_INT
            if all(isinstance(v, bool) or isinstance(v, int) and abs(v) <= 2048 or isinstance(v, float)
                   and _exact_in_half(v) for v in both):
                return PY_FLOAT
            return None
        if not (other.lifted.batched and other.lifted.kind == "tensor"):
            return None
        if isinstance(value, bool) or isinstance(value, int) and 0 <= value <= 127:
            return other.sig
        floating = other.sig is not None and (other.sig[0] == "sym" and other.sig[1] == "float"
                                              or other.sig[0] == "dt" and other.sig[1] in _FLOATING)
        if isinstance(value, float) and floating and _exact_in_half(value):
            return other.sig
        return None

    # ---------------------------------------------------------------- conditions
    def predicate(self, node: cst.BaseExpression, path: tuple = ()) -> Lifted:
        """A bool tensor: True where the per-element condition `node` is truthy."""
        if not self.batched(node):
            raise LiftError(f"condition `{code(node)}` does not depend on the loop")
        out = self._predicate(node, path)
        self.pred_info[id(out)] = self.leaf_info(node)
        return out

    def _predicate(self, node: cst.BaseExpression, path: tuple) -> Lifted:
        if isinstance(node, cst.BooleanOperation):
            left = self.predicate(node.left, path)
            conj = isinstance(node.operator, cst.And)
            # `d != 0 and x // d > 1`: the right side runs only where the left allows it
            right = self.predicate(node.right, (*path, left if conj else self.neg(left)))
            op = cst.BitAnd if conj else cst.BitOr
            kind = "tensor" if "tensor" in (left.kind, right.kind) else "bool"
            return Lifted(_op(left.node, op, right.node), True, kind)
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
            return negate(self.predicate(node.expression, path))
        val = self.value(node, path)
        if val.sig == DT_BOOL or val.lifted.kind == "bool":
            return val.lifted
        # `if m:` on a uint8/float mask is `m != 0` (NaN is truthy): .bool() says exactly that
        return Lifted(method(val.lifted.node, "bool"), True, "bool")

    # ---------------------------------------------------------------- guards
    def guarded(self, node: cst.BaseExpression, path: tuple, safe, like: bool = False) -> cst.Name:
        """`node` where the path holds, a harmless stand-in elsewhere."""
        val = self.value(node, path)
        if like and val.lifted.kind == "tensor":
            # where(c, d, 1) would turn a bool divisor into int64 and change `//`'s dtype
            stand_in = call(self.fn("ones_like"), val.lifted.node)
        else:
            stand_in = cst.parse_expression(repr(safe))
        rank, k = self.same_rank(self.path_info(path), val)
        if rank is not None:
            self.scope.assumptions.append(rank)
        cond = self.align(conjoin(path), k)
        return self.placeholder(Lifted(self.where(cond, val.lifted, stand_in), True, val.lifted.kind), code(node))

    def ifexp(self, node: cst.IfExp, path: tuple) -> Lifted:
        test = self.predicate(node.test, path)
        a = self.value(node.body, (*path, test))
        b = self.value(node.orelse, (*path, self.neg(test)))
        return self.merge(test, a, b, "inner").lifted

    # ---------------------------------------------------------------- masked leaves
    def whole(self, base: str) -> cst.BaseExpression:
        dom = self.dom
        if base in dom.arrays:
            return cst.parse_expression(base)
        if dom.arrays:
            self.scope.assumptions.append(f"len({base}) == len({dom.arrays[0]})")
            return cst.parse_expression(base)
        return cst.parse_expression(f"{base}[:{dom.extent}]")

    def masked(self, node: cst.BaseExpression) -> cst.Subscript:
        return cst.Subscript(value=_paren(node), slice=[cst.SubscriptElement(cst.Index(self.mask))])

    def masked_leaf(self, node: cst.CSTNode) -> cst.BaseExpression | None:
        scope = self.scope
        if isinstance(node, cst.Name):
            name = node.value
            if name in self.full_temps:
                kind = scope.temps[name].kind
                return self.placeholder(Lifted(self.masked(scope.temps[name].node), True, kind), name)
            if name in scope.temps:
                return None
            if name in scope.elements:
                return self.placeholder(Lifted(self.masked(scope.elements[name].node), True, "tensor"), name)
            if name == self.dom.index:
                arange = call(self.fn("arange"), cst.parse_expression(self.dom.extent))
                return self.placeholder(Lifted(self.masked(arange), True, "int"), name)
            return None
        if isinstance(node, cst.Subscript) and self.dom.index is not None and isinstance(
                node.value, (cst.Name, cst.Attribute)):
            first = node.slice[0].slice
            if not (isinstance(first, cst.Index) and isinstance(first.value, cst.Name)
                    and first.value.value == self.dom.index):
                return None
            flat = flatten_subscript(node)
            if flat is None or flat[0].split(".")[0] in scope.loop_names:
                return None
            rest = list(node.slice[1:])
            if any(self.batched(el) for el in rest):
                return None
            leaf = self.placeholder(Lifted(self.masked(self.whole(flat[0])), True, "tensor"),
                                    f"{code(node.value)}[{self.dom.index}]")
            if not rest:
                return leaf
            rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return cst.Subscript(value=leaf, slice=rest)
        return None

    # ---------------------------------------------------------------- signatures
    def sig(self, node: cst.BaseExpression) -> Sig | None:
        lit = literal(node)
        if lit is not _NOT:
            return PY_BOOL if isinstance(lit, bool) else PY_INT if isinstance(lit, int) else PY_FLOAT
        if isinstance(node, cst.Imaginary):
            return ("py", "complex")
        if not self.batched(node):
            return _opaque("invariant", code(node))
        if isinstance(node, cst.Name):
            name = node.value
            if name in self.sigs:
                return self.sigs[name]
            if name in self.scope.elements:
                return ("sym", "id", frozenset({code(self.scope.elements[name].node)}))
            if name == self.dom.index:
                return PY_INT
            return None
        if isinstance(node, cst.Subscript):
            flat = flatten_subscript(node)
            if flat is None:
                return None
            base = flat[0]
            first = flat[1][0]
            head = base.split(".")[0]
            if head in self.sigs or head in self.scope.elements:
                if "." in base:
                    return None
                return self.sig(cst.Name(head))  # indexing keeps the dtype
            if (self.dom.index is not None and isinstance(first, cst.Index) and isinstance(first.value, cst.Name)
                    and first.value.value == self.dom.index and head not in self.scope.loop_names):
                return ("sym", "id", frozenset({base}))
            return None
        if isinstance(node, cst.UnaryOperation):
            if isinstance(node.operator, cst.Not):
                return DT_BOOL
            inner = self.sig(node.expression)
            # -x raises for a bool x, so on every input the loop accepts it is x's dtype:
            # the same as x * 2 (bool -> int64), which lets `x * 2` and `-x` merge
            if isinstance(node.operator, cst.Minus) and inner is not None and inner[0] == "sym":
                return ("sym", max(inner[1], "int", key=_MODES.get), inner[2])
            return inner
        if isinstance(node, cst.BinaryOperation):
            return binop_sig(node.operator, self.sig(node.left), self.sig(node.right))
        if isinstance(node, (cst.Comparison, cst.BooleanOperation)):
            return DT_BOOL
        if isinstance(node, cst.IfExp):
            a, b = self.sig(node.body), self.sig(node.orelse)
            return a if a == b else None
        if isinstance(node, cst.Call):
            return self._call_sig(node)
        return None

    def _call_sig(self, node: cst.Call) -> Sig | None:
        args = [a.value for a in node.args if a.keyword is None]
        kwargs = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
        qual = self.info.qualname(node.func)
        if qual is not None:
            module, _, name = qual.rpartition(".")
            if module == "math":
                return PY_INT if name in ("floor", "ceil", "trunc") else PY_FLOAT
            if module in ("torch", "torch.special", "torch.nn.functional"):
                return self._fn_sig(name, [self.sig(a) for a in args], kwargs, args)
            return None
        builtin = self.info.builtin_name(node.func)
        if builtin is not None and builtin not in self.scope.loop_names:
            if builtin == "float":
                return PY_FLOAT
            if builtin == "int":
                return PY_INT
            if builtin == "bool":
                return PY_BOOL
            if builtin in ("abs", "round") and len(args) == 1:
                return self.sig(args[0])
            if builtin in ("max", "min") and len(args) == 2:
                a, b = self.sig(args[0]), self.sig(args[1])
                return a if a == b else None
            if builtin == "pow" and len(args) == 2:
                return binop_sig(cst.Power(), self.sig(args[0]), self.sig(args[1]))
            return None
        if isinstance(node.func, cst.Attribute):
            name = node.func.attr.value
            obj = self.sig(node.func.value)
            if name in _CAST_METHODS and not args:
                return ("dt", _CAST_METHODS[name])
            if name in ("to", "type"):
                target = args[0] if args else kwargs.get("dtype")
                dotted = code(target) if target is not None else ""
                mod, _, last = dotted.rpartition(".")
                if target is not None and self.info.qualname(target) == f"torch.{last}" and last in _DTYPE_NAMES:
                    return ("dt", _DTYPE_NAMES[last])
                return _opaque("to", obj, code(node))
            return self._fn_sig(name, [obj, *[self.sig(a) for a in args]], kwargs, [node.func.value, *args])
        return None

    def _fn_sig(self, name: str, sigs: list, kwargs: dict, args: list) -> Sig | None:
        if not sigs or any(s is None for s in sigs):
            return None
        if name in _PREDICATES:
            return DT_BOOL
        if name in _FLOATIFY and len(sigs) == 1 and not kwargs:
            return _floatify(sigs[0])
        if name in _KEEP and all(s[0] == "py" and s[1] == "int" for s in sigs[1:]) and not kwargs:
            return sigs[0]
        if name in ("clamp", "clip") and all(s[0] == "py" and s[1] == "int" for s in sigs[1:]):
            if all(literal(v) is not _NOT and isinstance(literal(v), int) for v in kwargs.values()):
                return sigs[0]
        if name == "where" and len(sigs) == 3:
            return sigs[1] if sigs[1] == sigs[2] else None
        if name in _PROMOTE2 and len(sigs) == 2 and not kwargs and _PROMOTE2[name] is not None:
            return binop_sig(_PROMOTE2[name](), sigs[0], sigs[1])
        return _opaque(name, *sigs, *sorted((k, code(v)) for k, v in kwargs.items()))


class _Prepare(cst.CSTTransformer):
    """Replaces the parts `lift` must not see as they are with placeholders:
    conditional expressions and `and`/`or`/`not` (lifted here, with short-circuit guards),
    divisors and partial functions' arguments under a condition (guarded), and, when
    masking, every per-element leaf (`x` -> `data[keep]`)."""

    def __init__(self, lifter: CondLifter, path: tuple) -> None:
        self.l = lifter
        self.path = path
        self.repl: dict[int, cst.CSTNode] = {}
        self.skip: set[int] = set()

    def prepare(self, node: cst.BaseExpression) -> cst.BaseExpression:
        if not self.l.batched(node):
            return node
        return node.visit(self)

    def on_visit(self, node: cst.CSTNode) -> bool:
        l = self.l
        if id(node) in self.skip or id(node) in self.repl:
            return False
        if isinstance(node, (cst.Lambda, cst.BaseComp)):
            return False
        if isinstance(node, cst.Attribute):
            self.skip.add(id(node.attr))
        if isinstance(node, cst.Arg) and node.keyword is not None:
            self.skip.add(id(node.keyword))
        if not isinstance(node, cst.BaseExpression) or not l.batched(node):
            return True
        if isinstance(node, cst.IfExp):
            self.repl[id(node)] = l.placeholder(l.ifexp(node, self.path), code(node))
            return False
        if isinstance(node, cst.BooleanOperation) or (
                isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not)):
            self.repl[id(node)] = l.placeholder(l.predicate(node, self.path), code(node))
            return False
        if l.mask is not None:
            leaf = l.masked_leaf(node)
            if leaf is not None:
                self.repl[id(node)] = leaf
                return False
        if self.path:
            self._guard(node)
        return True

    def _guard(self, node: cst.BaseExpression) -> None:
        l = self.l
        child, safe, like = None, 1, False
        if isinstance(node, cst.BinaryOperation):
            if isinstance(node.operator, (cst.Divide, cst.FloorDivide, cst.Modulo)) and l.batched(node.right):
                child, like = node.right, not isinstance(node.operator, cst.Divide)
            elif isinstance(node.operator, cst.Power) and l.batched(node.left):
                exp = literal(node.right)
                # x ** 2 is defined everywhere; x ** 0.5 and x ** y are not
                if not (isinstance(exp, int) and not isinstance(exp, bool) and exp >= 0):
                    child = node.left
        elif isinstance(node, cst.Call):
            args = [a for a in node.args if a.keyword is None]
            qual = l.info.qualname(node.func)
            name = qual.rpartition(".")[2] if qual else None
            if qual is not None and qual.rpartition(".")[0] in ("torch", "torch.special", "math"):
                if name in _PARTIAL and args and l.batched(args[0].value):
                    child, safe = args[0].value, _PARTIAL[name]
                elif name in _DIVISORS and len(args) >= 2 and l.batched(args[1].value):
                    rounding = any(a.keyword is not None and a.keyword.value == "rounding_mode" for a in node.args)
                    child, like = args[1].value, _DIVISORS[name] or rounding
            elif qual is None and isinstance(node.func, cst.Attribute) and l.batched(node.func.value):
                name = node.func.attr.value
                if name in _PARTIAL:
                    child, safe = node.func.value, _PARTIAL[name]
                elif name in _DIVISORS and args and l.batched(args[0].value):
                    rounding = any(a.keyword is not None and a.keyword.value == "rounding_mode" for a in node.args)
                    child, like = args[0].value, _DIVISORS[name] or rounding
        if child is not None and id(child) not in self.repl:
            self.repl[id(child)] = l.guarded(child, self.path, safe, like)
            self.skip.add(id(child))

    def on_leave(self, original_node, updated_node):
        return self.repl.get(id(original_node), updated_node)


# --------------------------------------------------------------------------- the body walker


@dataclass(frozen=True)
class _Leaf:
    """One path that appends or stores: its condition, value, source and the temps it saw."""

    pred: Lifted | None
    val: Val
    node: cst.BaseExpression
    saved: tuple
    info: tuple = (frozenset(), True)  # leaf info of the conditions on the path


@dataclass
class _Effect:
    kind: str  # append | store
    target: str
    write: Access | None
    full: Val | None  # the value on every path, merged; None if some path skips it
    leaves: list = field(default_factory=list)  # one _Leaf per path that appends or stores
    reason: str | None = None  # why `full` is None


@dataclass
class _State:
    env: dict  # temp name -> Val (None: not defined on every path)
    effect: _Effect | None


class _Walker:
    """Walks a loop body path by path; straight-line temporaries at the top become
    whole-array statements (`lines`), branch temporaries are merged with `torch.where`."""

    def __init__(self, lifter: CondLifter, loop: Loop) -> None:
        self.l = lifter
        self.loop = loop
        self.lines: list[str] = []

    def run(self, stmts, state: _State, path: tuple, top: bool) -> _State:
        for stmt in stmts:
            if isinstance(stmt, cst.If):
                state = self._if(stmt, state, path, top)
                continue
            if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
                raise LiftError("compound statement in the loop body")
            small = stmt.body[0]
            if isinstance(small, cst.Pass):
                continue
            if isinstance(small, cst.Assign) and len(small.targets) == 1:
                target = small.targets[0].target
                if isinstance(target, cst.Name):
                    self._bind(target.value, self.l.value(small.value, path), state, top)
                    continue
                if isinstance(target, cst.Subscript):
                    state = self._store(target, small.value, state, path)
                    continue
            if isinstance(small, cst.Expr):
                app = next((a for a in self.loop.appends if a.statement is small), None)
                if app is not None:
                    self._effect(state, "append", app, app.value, path)
                    continue
            raise LiftError(f"statement `{code(small)}` in the loop body")
        return state

    def _store(self, target: cst.Subscript, value: cst.BaseExpression, state: _State, path: tuple) -> _State:
        """`out[i] = a if c else b` is `if c: out[i] = a else: out[i] = b`: when the branches
        cannot share one `torch.where`, each still gets a masked store of its own."""
        if isinstance(value, cst.IfExp) and self.l.batched(value.test):
            test = self.l.predicate(value.test, path)
            branches = []
            for branch, pred in ((value.body, test), (value.orelse, self.l.neg(test))):
                saved = self.l.snapshot()
                inner = self._store(target, branch, _State(dict(state.env), state.effect), (*path, pred))
                self.l.restore(saved)
                branches.append(inner)
            return self._merge(test, state, *branches)
        self._effect(state, "store", self._write(target), value, path)
        return state

    def _write(self, target: cst.Subscript) -> Access:
        write = next(w for w in self.loop.writes if w.node is target)
        dom = self.loop.domain
        # out[2*i] = ..., out[i, j] = ...: not one row per iteration
        if dom.index is None or write.index != (dom.index,):
            raise LiftError(f"`{code(target)}` is not written at the loop index")
        return write

    def _effect(self, state: _State, kind: str, what, value: cst.BaseExpression, path: tuple) -> None:
        # out.append(a); out.append(b): two elements per iteration
        if state.effect is not None:
            raise LiftError("a path appends or stores more than once")
        val = self.l.top_value(value, path, "collect" if kind == "append" else "store")
        target = what.target if kind == "append" else what.array
        write = what if kind == "store" else None
        state.effect = _Effect(kind, target, write, val, [_Leaf(conjoin(path), val, value, self.l.snapshot(),
                                                                          self.l.path_info(path))])

    def _bind(self, name: str, val: Val, state: _State, top: bool) -> None:
        scope = self.l.scope
        self.l.full_temps.discard(name)
        self.l.unmerged.pop(name, None)
        self.l.leaves[name] = val.info
        if top and val.lifted.batched:
            self.lines.append(f"{name} = {val.lifted.code}")
            lifted = Lifted(cst.Name(name), True, val.lifted.kind, fresh=val.lifted.fresh)
            val = Val(lifted, val.sig, name, info=val.info)
        if val.lifted.batched:
            self.l.full_temps.add(name)
        scope.temps[name] = val.lifted
        self.l.sigs[name] = val.sig
        state.env[name] = val

    def _branch(self, stmts, state: _State, path: tuple) -> _State:
        scope = self.l.scope
        saved = self.l.snapshot()
        out = self.run(stmts, _State(dict(state.env), state.effect), path, top=False)
        self.l.restore(saved)
        return out

    def _if(self, stmt: cst.If, state: _State, path: tuple, top: bool) -> _State:
        test = self.l.predicate(stmt.test, path)
        then = self._branch(stmt.body.body, state, (*path, test))
        orelse = stmt.orelse
        rest = [] if orelse is None else [orelse] if isinstance(orelse, cst.If) else list(orelse.body.body)
        other = self._branch(rest, state, (*path, self.l.neg(test)))
        return self._merge(test, state, then, other)

    def _merge(self, test: Lifted, before: _State, a: _State, b: _State) -> _State:
        scope = self.l.scope
        env = dict(before.env)
        for name in set(a.env) | set(b.env):
            va, vb = a.env.get(name), b.env.get(name)
            if va is before.env.get(name) and vb is before.env.get(name):
                continue
            merged = None
            if va is not None and vb is not None:
                try:
                    merged = va if va is vb else self.l.merge(test, va, vb, "inner")
                except LiftError as exc:
                    self.l.unmerged[name] = str(exc)
            env[name] = merged
            self.l.full_temps.discard(name)
            if merged is None:
                # read later, it would be the value of an earlier iteration on some path
                scope.temps.pop(name, None)
                self.l.sigs.pop(name, None)
            else:
                scope.temps[name] = merged.lifted
                self.l.sigs[name] = merged.sig
                self.l.leaves[name] = merged.info
                self.l.full_temps.add(name)
        return _State(env, self._merge_effect(test, before.effect, a.effect, b.effect))

    def _merge_effect(self, test: Lifted, before, a: _Effect | None, b: _Effect | None) -> _Effect | None:
        if before is not None and (a is not before or b is not before):
            raise LiftError("a path appends or stores more than once")
        if a is None and b is None:
            return None
        if a is not None and b is not None:
            if (a.kind, a.target) != (b.kind, b.target):
                raise LiftError(f"branches write different outputs (`{a.target}`, `{b.target}`)")
            leaves = a.leaves + b.leaves
            full, reason = None, a.reason or b.reason
            if a.full is not None and b.full is not None:
                context = "collect" if a.kind == "append" else "store"
                try:
                    full = self.l.merge(test, a.full, b.full, context)
                except LiftError as exc:
                    if a.kind == "append":
                        raise
                    reason = str(exc)
            return _Effect(a.kind, a.target, a.write or b.write, full, leaves, reason)
        one = a if a is not None else b
        if one.kind == "append":
            raise LiftError("appends on some paths only: a filter (see boolean_mask)")
        return _Effect(one.kind, one.target, one.write, None, one.leaves, "stores on some paths only")
