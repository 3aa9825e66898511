"""Parameter sweeps: a loop over a Python list of numbers or tuples becomes one broadcast
expression over a new leading dimension; a loss summed over measurements becomes one
batched loss and one reduction."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import libcst as cst

from loopvec.analysis.bindings import function_bindings
from loopvec.analysis.facts import FUNCTIONAL_UNARY, MATH_FNS, NUMBER_KINDS, UNARY_DTYPES, ZERO_ARG_FLOAT_CASTS, \
    ZERO_ARG_INT_CASTS, Fact, float_dtype, function_facts, infer, literal_number
from loopvec.analysis.loops import Loop, flatten_subscript
from loopvec.analysis.module import ModuleInfo, code, contains, fresh_name, names_in, only, target_names, used_names
from loopvec.guards import body_problem, collected_list
from loopvec.lift import as_operand
from loopvec.rewrite import SAFE, Decline, Edit, PatternContext, Rewrite


class Sweep:
    """Parameter sweeps and losses summed over measurements (the catalogue's "Telescope
    Sampling Loop" and "Loss Computation Over Measurements").

    What it rewrites:
        A loop (or a comprehension fed to `torch.stack/tensor`) over a Python list of
        numbers or of fixed-size tuples of numbers (centers, radii, thresholds) whose body
        builds one tensor per parameter from loop-invariant tensors — collected with
        `append` and `torch.stack/tensor`, or summed with `total += ...`. The parameters
        become a float64/int64 tensor (exactly the Python values) and the body one
        expression over a new leading dimension. Also a loss summed over the rows of
        tensors (`for mask, target in zip(masks, targets): total += F.mse_loss(...)`),
        with the loss's `reduction=` honoured.

    Example:
        measurements = []
        for center in centers:
            mask = ((yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= r ** 2).float()
            measurements.append(image * mask)
        measurements = torch.stack(measurements)

    Use instead:
        centers_t = torch.tensor(centers, dtype=torch.float64)
        mask = ((yy - centers_t[:, 0, None, None].to(yy.device, torch.result_type(yy, 1.0))) ** 2
                + ...).float()
        measurements = image * mask
        (a Python float meets a tensor in the tensor's dtype — float32 for an int64 grid,
        its own dtype for a float64 one — so each parameter column is moved and cast to
        `torch.result_type(tensor, 1.0)` where it meets one, which rounds it exactly as the
        loop did; arithmetic among parameters stays float64 on the CPU, as in Python.)

        total = 0
        for mask, target in zip(masks, targets):
            total += F.mse_loss(prediction * mask, target)
        becomes
        total = F.mse_loss(prediction * masks[:, None], targets, reduction="none").mean(dim=(1, 2, 3)).sum() \
            if len(masks) else 0

    When it declines:
        the list's element types are unknown (annotate `list[tuple[float, float]]`, or
        hint it), ints and floats mixed in one slot, a tensor whose rank is unknown meets a
        parameter (hint `# loopvec: shapes yy=[h,w]`), calls it does not know (a
        `telescope.create_mask(...)`, an opaque `criterion`), iterating a generator,
        break/return, side effects, names bound in the loop used after it.
        Assumes the list holds the annotated Python types (an int where a float is
        annotated computes in another dtype), and that float16/bfloat16 tensors are not
        among the swept operands (their Python-scalar kernels round differently).
    """

    NAME = "sweep"
    DESCRIPTION = "loops over a list of parameters (or summing a loss over rows) -> one broadcast expression"
    SAFETY = SAFE
    ORDER = 5

    def match(self, loop: Loop, ctx: PatternContext) -> Rewrite | Decline:
        problem = _loop_problem(loop)
        if problem:
            return Decline(self.NAME, problem)
        try:
            return _Matcher(loop, ctx).run()
        except SweepError as exc:
            return Decline(self.NAME, str(exc))


class SweepError(Exception):
    """The loop is not a sweep this pattern can rewrite exactly; the message says why."""


def _loop_problem(loop: Loop) -> str | None:
    # a loop at module level or in a lambda: nothing to name facts after
    if loop.function is None:
        return "not inside a function"
    # break/return, side effects, out = out * c (a value flowing from one parameter to the next)
    return body_problem(loop)


# --------------------------------------------------------------------------- facts


_BINARY_FNS = {"maximum", "minimum", "fmax", "fmin", "atan2", "arctan2", "hypot", "logaddexp"}
_REDUCTIONS = {"sum": "sum", "mean": "mean", "amax": "amax", "amin": "amin", "max": "amax", "min": "amin",
               "all": "all", "any": "any"}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class V:
    """One value of the loop body, lifted over the sweep.

    kind:
      p  a per-parameter Python number: `node` is its column, a 1-d tensor over the sweep
         (float64 for floats, int64 for ints — Python's own precision)
      b  a per-parameter tensor: `node` has the sweep as a new leading dimension
      n  a loop-invariant Python number
      t  a loop-invariant tensor
      u  a loop-invariant value the function's text says nothing about
    """

    node: cst.BaseExpression
    kind: str
    num: str | None = None  # p/n: float | int
    rank: int | None = None  # b/t: rank of one parameter's tensor
    dtype: str | None = None  # b: its dtype as code, when known
    floating: bool = False  # b/t: floating or complex (a Python float keeps the dtype)
    nonbool: bool = False  # b/t: not bool (a Python int keeps the dtype)
    device: str | None = None  # b: the device of one parameter's tensor, as code, when known

    @property
    def code(self) -> str:
        return code(self.node)

    @property
    def batched(self) -> bool:
        return self.kind in ("p", "b")


def _expr(text: str) -> cst.BaseExpression:
    return cst.parse_expression(text)


_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float)


def _fit(original: cst.BaseExpression, new: cst.BaseExpression) -> cst.BaseExpression:
    """`new` in the place of `original`, parenthesised unless it binds at least as tightly."""
    if isinstance(new, _ATOMS) or new.lpar:
        return new
    if original.lpar:
        return new.with_changes(lpar=original.lpar, rpar=original.rpar)
    if type(new) is type(original) and type(getattr(new, "operator", None)) is type(
            getattr(original, "operator", None)) and not isinstance(new, cst.Comparison):
        return new
    return new.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _nones(n: int) -> str:
    return "".join(", None" for _ in range(n))


def _pad(v: V, n: int) -> cst.BaseExpression:
    """`v` with `n` unit dimensions after the sweep dimension."""
    if n <= 0:
        return v.node
    node = v.node
    if v.kind == "p" and isinstance(node, cst.Subscript) and node.slice and not node.lpar:
        # centers_t[:, 0] -> centers_t[:, 0, None, None]
        return _expr(f"{code(node)[:-1]}{_nones(n)}]")
    return _expr(f"{as_operand(code(node))}[:{_nones(n)}]")


@dataclass
class _Sources:
    """Where per-parameter values come from: a Python list, or the rows of tensors."""

    numbers: dict[str, V] = field(default_factory=dict)  # a name bound to one parameter
    tuples: dict[str, tuple[V, ...]] = field(default_factory=dict)  # a name bound to a parameter tuple
    rows: dict[str, V] = field(default_factory=dict)  # an element name -> its array, batched
    index: str | None = None  # the integer loop variable of a range loop over arrays
    arrays: dict[str, V] = field(default_factory=dict)  # array -> batched, for `array[index]`


class _Lifter:
    """Lifts loop-body expressions over the sweep; SweepError for anything it cannot
    lift exactly."""

    def __init__(self, info: ModuleInfo, torch: str, facts: dict[str, Fact | None], sources: _Sources,
                 loop_names: set[str], fresh) -> None:
        self.info = info
        self.fresh = fresh
        self.pending: list[str] = []  # statements a lifted expression needs before it
        self.assumptions: list[str] = []
        self.torch = torch
        self.facts = facts
        self.sources = sources
        self.loop_names = set(loop_names)
        self.temps: dict[str, V] = {}

    # ------------------------------------------------------------------ entry points
    def lift(self, node: cst.BaseExpression) -> V:
        if not (names_in(node) & self.loop_names):
            return self._invariant(node)
        if isinstance(node, cst.Name):
            return self._name(node)
        if isinstance(node, cst.Subscript):
            return self._subscript(node)
        if isinstance(node, cst.UnaryOperation):
            return self._unary(node)
        if isinstance(node, cst.BinaryOperation):
            return self._binary(node)
        if isinstance(node, cst.Comparison):
            return self._comparison(node)
        if isinstance(node, cst.Call):
            return self._call(node)
        raise SweepError(f"cannot lift `{code(node)}` over the sweep")

    def _invariant(self, node: cst.BaseExpression) -> V:
        fact = infer(node, self.facts, self.info)
        if fact is None:
            return V(node, "u")
        if fact.kind == "tensor":
            return V(node, "t", rank=fact.rank, floating=fact.floating)
        if fact.kind in NUMBER_KINDS:
            return V(node, "n", num=fact.kind)
        if fact.kind == "bool":
            return V(node, "n", num="int")
        return V(node, "u")

    def _name(self, node: cst.Name) -> V:
        name = node.value
        if name in self.temps:
            return self.temps[name]
        src = self.sources
        if name in src.numbers:
            return src.numbers[name]
        if name in src.rows:
            return src.rows[name]
        if name in src.tuples:
            raise SweepError(f"`{name}` is used as a whole tuple: only its items `{name}[k]` are lifted")
        raise SweepError(f"`{name}` is bound in the loop in a way the sweep does not lift")

    def _subscript(self, node: cst.Subscript) -> V:
        src = self.sources
        head = node.value
        if isinstance(head, cst.Name) and head.value in src.tuples and len(node.slice) == 1:
            sl = node.slice[0].slice
            if isinstance(sl, cst.Index) and isinstance(sl.value, cst.Integer):
                k = int(sl.value.evaluated_value)
                items = src.tuples[head.value]
                if 0 <= k < len(items):
                    return items[k]
            raise SweepError(f"`{code(node)}` is not a fixed item of the parameter tuple")
        flat = flatten_subscript(node)
        if src.index is not None and flat is not None:
            base, parts = flat
            if len(parts) == 1 and isinstance(parts[0], cst.Index) and code(parts[0].value) == src.index:
                if base not in src.arrays:
                    src.arrays[base] = self._rows_of(base)
                return src.arrays[base]
        raise SweepError(f"`{code(node)}` indexes with a loop variable")

    def _rows_of(self, array: str) -> V:
        """`array` batched over its rows: the loop's `array[i]` for every i."""
        fact = self.facts.get(array) if "." not in array else None
        if fact is None or fact.kind != "tensor" or fact.rank is None or fact.rank < 1:
            raise SweepError(f"the rank of `{array}` is unknown: add a `# loopvec: shapes` hint")
        if self.sources.arrays:
            first = next(iter(self.sources.arrays))
            if array != first:
                self.assumptions.append(f"len({array}) == len({first})")
        return V(_expr(array), "b", rank=fact.rank - 1, dtype=f"{array}.dtype", floating=fact.floating,
                 device=f"{array}.device")

    # ------------------------------------------------------------------ operators
    def _unary(self, node: cst.UnaryOperation) -> V:
        inner = self.lift(node.expression)
        op = node.operator
        if isinstance(op, cst.Not):
            raise SweepError(f"`{code(node)}`: `not` per parameter")
        if isinstance(op, cst.BitInvert) and inner.kind == "p":
            raise SweepError(f"`{code(node)}`: `~` on a Python number")
        new = node.with_changes(expression=_fit(node.expression, inner.node))
        if inner.kind == "b" and isinstance(op, cst.Minus) and not inner.nonbool and not inner.floating:
            return replace(inner, node=new, nonbool=True)
        return replace(inner, node=new)

    def _binary(self, node: cst.BinaryOperation) -> V:
        op = node.operator
        if isinstance(op, cst.MatrixMultiply):
            raise SweepError(f"`@` in `{code(node)}`")
        left, right = self.lift(node.left), self.lift(node.right)
        return self.combine(node, left, right, op)

    def _comparison(self, node: cst.Comparison) -> V:
        if len(node.comparisons) != 1:
            raise SweepError(f"chained comparison `{code(node)}`")
        target = node.comparisons[0]
        if isinstance(target.operator, (cst.In, cst.NotIn, cst.Is, cst.IsNot)):
            raise SweepError(f"`{code(node)}` uses in/is")
        left, right = self.lift(node.left), self.lift(target.comparator)
        return self.combine(node, left, right, target.operator)

    def combine(self, node: cst.CSTNode, left: V, right: V, op) -> V:
        """`left op right` where one side at least varies with the parameter."""
        compare = isinstance(node, cst.Comparison)
        kinds = {left.kind, right.kind}
        if "u" in kinds:
            unknown = left if left.kind == "u" else right
            raise SweepError(f"cannot tell whether `{unknown.code}` is a tensor or a number, or its rank: "
                             "annotate it or add a `# loopvec: shapes` hint")
        if kinds <= {"p", "n"}:
            return self._python_numbers(node, left, right, op, compare)
        if "p" in kinds:
            p, other = (left, right) if left.kind == "p" else (right, left)
            if other.kind == "n":
                raise SweepError("internal: a number meets a number")  # handled above
            if other.kind == "p":
                raise SweepError("internal")
            device, cast, other = self._cast_for(p, other)
            # the parameters live on the CPU in float64: each use moves and casts its column
            new_p = _expr(f"{as_operand(code(_pad(p, other.rank)))}.to({device}, {cast})")
            new_left, new_right = (new_p, other.node) if left.kind == "p" else (other.node, new_p)
            out = self._rebuild(node, new_left, new_right, compare)
            if compare:
                return V(out, "b", rank=other.rank, dtype=f"{self.torch}.bool", device=device)
            return V(out, "b", rank=other.rank, dtype=cast, floating=p.num == "float" or other.floating,
                     nonbool=True, device=device)
        # a tensor per parameter meets a tensor or a number
        if "n" in kinds:
            b, n = (left, right) if left.kind == "b" else (right, left)
            out = self._rebuild(node, left.node, right.node, compare)
            if compare:
                return V(out, "b", rank=b.rank, dtype=f"{self.torch}.bool", device=b.device)
            if n.num == "float":
                dtype = b.dtype if b.floating else (f"{self.torch}.get_default_dtype()" if b.nonbool else None)
                return V(out, "b", rank=b.rank, dtype=dtype, floating=True, nonbool=True, device=b.device)
            return V(out, "b", rank=b.rank, dtype=b.dtype if b.nonbool else None, floating=b.floating,
                     nonbool=True, device=b.device)
        return self._tensors(node, left, right, compare)

    def _python_numbers(self, node, left: V, right: V, op, compare: bool) -> V:
        """Arithmetic among Python numbers, one per parameter: float64/int64 columns."""
        if compare:
            raise SweepError(f"`{code(node)}` compares Python numbers per parameter")
        nums = {left.num, right.num}
        if isinstance(op, (cst.FloorDivide, cst.Modulo)) and "float" in nums:
            # Python's float // and % round differently from torch's near multiples
            raise SweepError(f"`{code(node)}`: float `//`/`%` per parameter")
        if isinstance(op, cst.Power):
            if not (right.kind == "n" and literal_number(right.node) is not None
                    and float(code(right.node)) == int(float(code(right.node))) and float(code(right.node)) >= 0):
                # (-8.0) ** (1/3) is complex in Python, nan in torch; 2 ** -1 is a float
                raise SweepError(f"`{code(node)}`: a power per parameter other than a whole constant")
        elif not isinstance(op, (cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo)):
            raise SweepError(f"`{code(node)}`: operator on Python numbers per parameter")
        num = "float" if "float" in nums or isinstance(op, cst.Divide) else "int"
        lnode, rnode = left.node, right.node
        if num == "float":
            # an int column meeting a Python float (or divided) would compute in float32
            if left.kind == "p" and left.num == "int" and right.kind != "p":
                lnode = _expr(f"{as_operand(left.code)}.double()")
            if right.kind == "p" and right.num == "int" and left.kind != "p":
                rnode = _expr(f"{as_operand(right.code)}.double()")
            if isinstance(op, cst.Divide) and left.num == "int" and right.num == "int" and left.kind == "p" \
                    and right.kind == "p":
                lnode = _expr(f"{as_operand(left.code)}.double()")
        out = node.with_changes(left=_fit(node.left, lnode), right=_fit(node.right, rnode))
        return V(out, "p", num=num)

    def _cast_for(self, p: V, other: V) -> tuple[str, str, V]:
        """The device of `other` and the dtype a Python number of `p`'s kind takes when it
        meets `other` in torch (`torch.result_type(other, 1.0)`), as code; and `other` —
        bound to a temporary first when naming it twice would compute it twice."""
        t = self.torch
        probe = "1.0" if p.num == "float" else "1"
        if other.rank is None:
            raise SweepError(f"the rank of `{other.code}` is unknown: add a `# loopvec: shapes` hint")
        # a per-parameter tensor whose dtype is known: cast the number alike
        if other.kind == "b" and other.device and other.dtype and (
                (p.num == "float" and other.floating) or (p.num == "int" and other.nonbool)):
            return other.device, other.dtype, other
        cheap = isinstance(other.node, (cst.Name, cst.Attribute))
        if not cheap:
            name = self.fresh("part")
            self.pending.append(f"{name} = {other.code}")
            other = replace(other, node=cst.Name(name))
        return f"{other.code}.device", f"{t}.result_type({other.code}, {probe})", other

    def _tensors(self, node, left: V, right: V, compare: bool) -> V:
        """Two tensors, at least one per parameter."""
        if left.rank is None or right.rank is None:
            unknown = left if left.rank is None else right
            raise SweepError(f"the rank of `{unknown.code}` is unknown: add a `# loopvec: shapes` hint")
        for a, b in ((left, right), (right, left)):
            # a 0-d tensor per parameter ranks below a dimensioned tensor in type promotion;
            # stacked, it is dimensioned itself and may promote differently
            if a.kind == "b" and a.rank == 0 and b.rank > 0:
                raise SweepError(f"`{code(node)}` mixes a 0-d tensor per parameter with a larger tensor")
            if a.kind == "b" and a.rank == 0 and b.kind == "t" and b.rank == 0:
                raise SweepError(f"`{code(node)}` mixes 0-d tensors")
        rank = max(left.rank, right.rank)
        lnode = _pad(left, rank - left.rank) if left.kind == "b" else left.node
        rnode = _pad(right, rank - right.rank) if right.kind == "b" else right.node
        out = self._rebuild(node, lnode, rnode, compare)
        device = left.device if left.kind == "b" else right.device
        if compare:
            return V(out, "b", rank=rank, dtype=f"{self.torch}.bool", device=device)
        dtype = left.dtype if left.kind == right.kind == "b" and left.dtype == right.dtype else None
        return V(out, "b", rank=rank, dtype=dtype, floating=left.floating or right.floating,
                 nonbool=left.nonbool or right.nonbool, device=device)

    def _rebuild(self, node, lnode, rnode, compare: bool) -> cst.BaseExpression:
        if compare:
            target = node.comparisons[0]
            return node.with_changes(left=_fit(node.left, lnode),
                                     comparisons=[target.with_changes(comparator=_fit(target.comparator, rnode))])
        if isinstance(node, cst.BinaryOperation):
            return node.with_changes(left=_fit(node.left, lnode), right=_fit(node.right, rnode))
        raise SweepError("internal: not an operator")

    # ------------------------------------------------------------------ calls
    def _call(self, node: cst.Call) -> V:
        info = self.info
        if any(a.star for a in node.args):
            raise SweepError(f"starred arguments in `{code(node)}`")
        qual = info.qualname(node.func)
        if qual is not None:
            module, _, name = qual.rpartition(".")
            if module == "math":
                return self._math(node, name)
            if module in ("torch", "torch.special") or (module == "torch.nn.functional" and name in FUNCTIONAL_UNARY):
                return self._torch_fn(node, module, name)
            raise SweepError(f"unknown call `{code(node.func)}`")
        builtin = info.builtin_name(node.func)
        if builtin is not None and builtin not in self.loop_names:
            return self._builtin(node, builtin)
        if isinstance(node.func, cst.Attribute):
            return self._method(node)
        raise SweepError(f"unknown call `{code(node.func)}`")

    def _args(self, node: cst.Call) -> tuple[list[V], dict[str, V]]:
        pos, kw = [], {}
        for a in node.args:
            v = self.lift(a.value)
            if a.keyword is None:
                pos.append(v)
            else:
                kw[a.keyword.value] = v
        return pos, kw

    def _math(self, node: cst.Call, name: str) -> V:
        pos, kw = self._args(node)
        if kw or name not in MATH_FNS or not pos:
            raise SweepError(f"`math.{name}` per parameter")
        if any(v.kind not in ("p", "n") for v in pos):
            raise SweepError(f"`math.{name}` of a tensor per parameter")
        args = []
        for v, a in zip(pos, node.args):
            if v.kind == "p" and v.num == "int":
                args.append(a.with_changes(value=_expr(f"{as_operand(v.code)}.double()")))
            else:
                args.append(a.with_changes(value=v.node))
        if not any(v.kind == "p" for v in pos):
            raise SweepError("internal: invariant math call")
        if len(pos) == 2 and any(v.kind == "n" for v in pos):
            # torch.atan2 wants two tensors: broadcast the constant into a float64 0-d tensor
            args = [a.with_changes(value=_expr(f"{self.torch}.tensor({v.code}, dtype={self.torch}.float64)"))
                    if v.kind == "n" else a for v, a in zip(pos, args)]
        func = _expr(f"{self.torch}.{MATH_FNS[name]}")
        return V(node.with_changes(func=func, args=args), "p", num="float")

    def _builtin(self, node: cst.Call, name: str) -> V:
        pos, kw = self._args(node)
        if kw or len(pos) != 1:
            raise SweepError(f"builtin `{name}(...)` per parameter")
        v = pos[0]
        if name == "abs":
            if v.kind == "p":
                return V(_expr(f"{as_operand(v.code)}.abs()"), "p", num=v.num)
            if v.kind == "b":
                return replace(v, node=_expr(f"{as_operand(v.code)}.abs()"))
        if name == "float" and v.kind == "p":
            return V(_expr(f"{as_operand(v.code)}.double()") if v.num == "int" else v.node, "p", num="float")
        raise SweepError(f"builtin `{name}(...)` per parameter")

    def _torch_fn(self, node: cst.Call, module: str, name: str) -> V:
        pos, kw = self._args(node)
        if any(v.kind == "p" for v in [*pos, *kw.values()]):
            raise SweepError(f"`{code(node.func)}` of a Python number per parameter")
        if module == "torch" and name in _REDUCTIONS and len(pos) == 1:
            return self._reduce(node, pos[0], _REDUCTIONS[name], kw, node.func, method=False)
        unary = UNARY_DTYPES.get(name) or ("float" if module == "torch.special" and name in ("expit", "erf", "erfc")
                                         else None)
        if module == "torch.nn.functional":
            unary = "keep" if name == "relu" else "float"
            if "inplace" in kw:
                raise SweepError(f"`inplace=` in `{code(node.func)}`")
        if unary is not None and len(pos) == 1 and pos[0].kind == "b" and all(v.kind == "n" for v in kw.values()):
            return self._elementwise(node, pos[0], unary, [a.with_changes(value=pos[0].node) if a.keyword is None
                                                          else a for a in node.args])
        if module == "torch" and name in _BINARY_FNS and len(pos) == 2 and not kw:
            a, b = pos
            if {a.kind, b.kind} - {"b", "t"}:
                raise SweepError(f"`{code(node.func)}` of a non-tensor")
            if a.rank is None or b.rank is None:
                raise SweepError(f"the rank of an argument of `{code(node.func)}` is unknown")
            for x, y in ((a, b), (b, a)):
                if x.kind == "b" and x.rank == 0 and (y.rank > 0 or y.kind == "t"):
                    raise SweepError(f"`{code(node)}` mixes a 0-d tensor per parameter with another tensor")
            rank = max(a.rank, b.rank)
            args = [node.args[0].with_changes(value=_pad(a, rank - a.rank) if a.kind == "b" else a.node),
                    node.args[1].with_changes(value=_pad(b, rank - b.rank) if b.kind == "b" else b.node)]
            return V(node.with_changes(args=args), "b", rank=rank, floating=True, nonbool=True,
                     device=a.device if a.kind == "b" else b.device)
        raise SweepError(f"unknown call `{code(node.func)}`")

    def _elementwise(self, node: cst.Call, v: V, how: str, args) -> V:
        new = node.with_changes(args=args)
        if how == "keep":
            return replace(v, node=new)
        return replace(v, node=new, dtype=v.dtype if v.floating else None, floating=True, nonbool=True)

    def _method(self, node: cst.Call) -> V:
        func = node.func
        assert isinstance(func, cst.Attribute)
        name = func.attr.value
        obj = self.lift(func.value)
        if obj.kind == "p":
            raise SweepError(f"method `.{name}()` on a Python number per parameter")
        if obj.kind != "b":
            raise SweepError(f"unknown call `{code(func)}`")
        pos, kw = self._args(node)
        if any(x.kind in ("p", "b") for x in [*pos, *kw.values()]):
            raise SweepError(f"`.{name}()` with per-parameter arguments")
        new_func = func.with_changes(value=_fit(func.value, obj.node) if not isinstance(obj.node, _ATOMS)
                                     else obj.node)
        if isinstance(obj.node, (cst.BinaryOperation, cst.Comparison, cst.UnaryOperation)) and not obj.node.lpar:
            new_func = func.with_changes(value=obj.node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()]))
        t = self.torch
        if not pos and not kw and name in ZERO_ARG_FLOAT_CASTS:
            return V(node.with_changes(func=new_func), "b", rank=obj.rank, dtype=f"{t}.{ZERO_ARG_FLOAT_CASTS[name]}",
                     floating=True, nonbool=True, device=obj.device)
        if not pos and not kw and name in ZERO_ARG_INT_CASTS:
            return V(node.with_changes(func=new_func), "b", rank=obj.rank, dtype=f"{t}.{ZERO_ARG_INT_CASTS[name]}",
                     nonbool=True, device=obj.device)
        if not pos and not kw and name == "bool":
            return V(node.with_changes(func=new_func), "b", rank=obj.rank, dtype=f"{t}.bool", device=obj.device)
        if name == "to" and len(pos) == 1 and not kw:
            arg = node.args[0].value
            floating = float_dtype(arg, self.info)
            if floating is None and isinstance(arg, cst.Attribute) and arg.attr.value == "dtype" \
                    and pos[0].kind in ("t", "u") and isinstance(arg.value, cst.Name):
                # .to(x.dtype): a dtype, not a device (x.device would be)
                return V(node.with_changes(func=new_func), "b", rank=obj.rank, dtype=code(arg), device=obj.device)
            if floating is None:
                raise SweepError(f"`.to({code(arg)})` per parameter: only a dtype is lifted")
            return V(node.with_changes(func=new_func), "b", rank=obj.rank, dtype=code(node.args[0].value),
                     floating=floating, nonbool=code(node.args[0].value) != f"{t}.bool", device=obj.device)
        if name in _REDUCTIONS:
            return self._reduce(node, obj, _REDUCTIONS[name], kw, new_func, method=True, pos=pos)
        if name in UNARY_DTYPES and not pos and not kw:
            return self._elementwise(node.with_changes(func=new_func), obj, UNARY_DTYPES[name], node.args)
        if name in ("clamp", "clip", "clamp_min", "clamp_max") and all(x.kind == "n" for x in [*pos, *kw.values()]):
            # an int tensor clamped to a float bound becomes float
            return replace(obj, node=node.with_changes(func=new_func), dtype=obj.dtype if obj.floating else None)
        if name == "pow" and len(pos) == 1 and not kw and pos[0].kind == "n":
            return replace(obj, node=node.with_changes(func=new_func), nonbool=True,
                           floating=obj.floating or pos[0].num == "float",
                           dtype=obj.dtype if obj.floating else None)
        raise SweepError(f"unknown method `.{name}()`")

    def _reduce(self, node: cst.Call, v: V, how: str, kw: dict, func, method: bool, pos=()) -> V:
        """A whole-tensor reduction of one parameter's tensor: over every dimension but the sweep."""
        if v.kind != "b":
            raise SweepError(f"cannot lift `{code(node)}`")
        if pos or kw:
            raise SweepError(f"`{code(node)}` reduces along chosen dimensions")
        if v.rank is None:
            raise SweepError(f"the rank of `{v.code}` is unknown where it is reduced")
        if v.rank == 0:
            raise SweepError(f"`{code(node)}` reduces a 0-d tensor")
        dims = "1" if v.rank == 1 else "(" + ", ".join(str(k) for k in range(1, v.rank + 1)) + ")"
        operand = as_operand(v.code)
        new = _expr(f"{operand}.{how}(dim={dims})" if method else f"{self.torch}.{how}({v.code}, dim={dims})")
        t = self.torch
        if how in ("all", "any"):
            return V(new, "b", rank=0, dtype=f"{t}.bool", device=v.device)
        if how == "sum":
            dtype = v.dtype if v.floating else (f"{t}.int64" if not v.floating and v.dtype in (
                f"{t}.bool", f"{t}.int64", f"{t}.int32", f"{t}.int16", f"{t}.int8", f"{t}.uint8") else None)
            return V(new, "b", rank=0, dtype=dtype, floating=v.floating, nonbool=True, device=v.device)
        return V(new, "b", rank=0, dtype=v.dtype, floating=v.floating, nonbool=v.nonbool, device=v.device)

    # ------------------------------------------------------------------ statements
    def lift_temps(self, statements) -> list[str]:
        """`name = expr` statements of the body, lifted in order."""
        out: list[str] = []
        for stmt in statements:
            small = only(stmt)
            if not (isinstance(small, cst.Assign) and len(small.targets) == 1
                    and isinstance(small.targets[0].target, cst.Name)):
                raise SweepError(f"statement `{code(stmt)}` in the loop body")
            name = small.targets[0].target.value
            value = self.lift(small.value)
            if not value.batched:
                raise SweepError(f"`{name}` does not depend on the parameter")
            self.temps[name] = replace(value, node=cst.Name(name))
            out += self.flush()
            out.append(f"{name} = {value.code}")
        return out

    def flush(self) -> list[str]:
        out, self.pending = self.pending, []
        return out


# --------------------------------------------------------------------------- losses

_LOSSES = {
    "mse_loss": set(), "l1_loss": set(), "smooth_l1_loss": {"beta"}, "huber_loss": {"delta"},
    "binary_cross_entropy": set(), "binary_cross_entropy_with_logits": set(), "soft_margin_loss": set(),
}
_LOSS_MODULES = {
    "MSELoss": "mse_loss", "L1Loss": "l1_loss", "SmoothL1Loss": "smooth_l1_loss", "HuberLoss": "huber_loss",
    "BCELoss": "binary_cross_entropy", "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
    "SoftMarginLoss": "soft_margin_loss",
}


@dataclass(frozen=True)
class LossCall:
    function: str  # mse_loss, ...
    input: cst.BaseExpression
    target: cst.BaseExpression
    reduction: str
    extra: tuple[tuple[str, str], ...]  # beta=..., delta=... as code


def _reduction_of(kwargs: dict[str, cst.BaseExpression], allowed: set[str], what: str) -> tuple[str, tuple]:
    unknown = set(kwargs) - {"reduction"} - allowed
    if unknown:
        # weight=, pos_weight=, size_average=: per-element weights or legacy reductions
        raise SweepError(f"`{what}` with `{sorted(unknown)[0]}=`")
    reduction = "mean"
    if "reduction" in kwargs:
        r = kwargs["reduction"]
        if not isinstance(r, cst.SimpleString):
            raise SweepError(f"`{what}` with a reduction that is not a string literal")
        reduction = r.evaluated_value
        if reduction not in ("mean", "sum", "none"):
            raise SweepError(f"`{what}` with reduction={reduction!r}")
    return reduction, tuple((k, code(v)) for k, v in kwargs.items() if k != "reduction")


def loss_call(node: cst.BaseExpression, info: ModuleInfo, criteria: dict[str, cst.Call]) -> LossCall | None:
    """`F.mse_loss(a, b, reduction=...)`, `nn.MSELoss(...)(a, b)` or `criterion(a, b)` with
    `criterion = nn.MSELoss(...)` bound in the function: the loss it computes."""
    if not isinstance(node, cst.Call):
        return None
    args = [a for a in node.args if a.keyword is None]
    kwargs = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
    if any(a.star for a in node.args):
        return None
    qual = info.qualname(node.func) or ""
    module, _, name = qual.rpartition(".")
    if module == "torch.nn.functional" and name in _LOSSES:
        if len(args) != 2:
            raise SweepError(f"`{code(node.func)}` with {len(args)} positional arguments")
        reduction, extra = _reduction_of(kwargs, _LOSSES[name], code(node.func))
        return LossCall(name, args[0].value, args[1].value, reduction, extra)
    constructor = None
    if isinstance(node.func, cst.Call):
        constructor = node.func
    elif isinstance(node.func, cst.Name) and node.func.value in criteria:
        constructor = criteria[node.func.value]
    if constructor is None:
        return None
    cls = (info.qualname(constructor.func) or "").rpartition(".")[2]
    if cls not in _LOSS_MODULES or kwargs or len(args) != 2:
        return None
    ctor_kwargs = {a.keyword.value: a.value for a in constructor.args if a.keyword is not None}
    if any(a.keyword is None for a in constructor.args):
        raise SweepError(f"`{code(constructor)}` with positional arguments")
    function = _LOSS_MODULES[cls]
    reduction, extra = _reduction_of(ctor_kwargs, _LOSSES[function], code(constructor.func))
    return LossCall(function, args[0].value, args[1].value, reduction, extra)


def _criteria(loop: Loop, info: ModuleInfo, statement: cst.CSTNode) -> dict[str, cst.Call]:
    """`criterion = nn.MSELoss(...)` bound once in the function, before the loop."""
    out: dict[str, cst.Call] = {}
    for name, value in function_bindings(loop.function).values.items():
        if isinstance(value, cst.Call):
            cls = info.qualname(value.func) or ""
            if cls.startswith("torch.nn.") and cls.rpartition(".")[2] in _LOSS_MODULES:
                out[name] = value
    return out


# --------------------------------------------------------------------------- matching


class _Matcher:
    def __init__(self, loop: Loop, ctx: PatternContext) -> None:
        self.loop = loop
        self.ctx = ctx
        self.info = ctx.info
        self.t = ctx.torch
        self.statement = self._statement()
        self.facts = function_facts(loop, self.info, self.statement)
        self.function_names = used_names(loop.function)
        self.tables: list[tuple[str, str, str, int]] = []  # (variable, list, dtype, tuple width or 0)
        self.assumptions: list[str] = []

    def _statement(self) -> cst.BaseStatement:
        loop = self.loop
        if loop.kind == "for":
            return loop.node
        for stmt in loop.block:
            if contains(stmt, loop.node):
                if not isinstance(stmt, cst.SimpleStatementLine):
                    raise SweepError("the comprehension sits in a compound statement")
                return stmt
        raise SweepError("internal: the comprehension's statement is not in its block")

    # ------------------------------------------------------------------ what the loop walks
    def _header(self) -> tuple[cst.BaseExpression, cst.BaseExpression]:
        node = self.loop.node
        if isinstance(node, cst.For):
            return node.target, node.iter
        comp = node.for_in
        if comp.inner_for_in is not None or comp.ifs or comp.asynchronous is not None:
            raise SweepError("comprehension with several `for`s or a condition")
        return comp.target, comp.iter

    def _parameter_list(self, target, iterable) -> tuple[_Sources, str, Fact] | None:
        """For `for c in centers` over a Python list of numbers or tuples: the sources."""
        if not isinstance(iterable, cst.Name):
            # (c for c in ...), range(...), centers[1:]: not a whole list of known items
            return None
        fact = self.facts.get(iterable.value)
        if fact is None or fact.kind != "list":
            return None
        name = iterable.value
        if not fact.items:
            raise SweepError(f"the items of `{name}` are not all numbers of one kind per slot "
                             "(annotate e.g. `list[tuple[float, float]]`)")
        column, table = self._table(name, fact)
        sources = _Sources()
        if not fact.tuple_:
            if not isinstance(target, cst.Name):
                raise SweepError("unpacks a number")
            sources.numbers[target.value] = V(_expr(column(0)), "p", num=fact.items[0])
            return sources, name, fact
        items = tuple(V(_expr(column(k)), "p", num=kind) for k, kind in enumerate(fact.items))
        if isinstance(target, cst.Name):
            sources.tuples[target.value] = items
        elif isinstance(target, (cst.Tuple, cst.List)) and all(isinstance(e.value, cst.Name) for e in target.elements):
            if len(target.elements) != len(items):
                raise SweepError(f"unpacks {len(target.elements)} names from tuples of {len(items)}")
            for e, v in zip(target.elements, items):
                sources.numbers[e.value.value] = v
        else:
            raise SweepError("unusual loop target")
        return sources, name, fact

    def _fresh(self, base: str) -> str:
        return fresh_name(base, self.function_names, first=2, sep="")

    def _table(self, name: str, fact: Fact):
        """The statements that turn the list into tensors, and how to read slot k."""
        kinds = set(fact.items)
        width = len(fact.items) if fact.tuple_ else 0
        if len(kinds) == 1:
            dtype = "float64" if kinds == {"float"} else "int64"
            var = self._fresh(f"{name}_t")
            self.tables.append((var, name, dtype, width))
            return (lambda k: f"{var}[:, {k}]" if fact.tuple_ else var), var
        # ints and floats in separate slots: one exact table per kind
        fvar, ivar = self._fresh(f"{name}_f"), self._fresh(f"{name}_i")
        self.tables += [(fvar, name, "float64", width), (ivar, name, "int64", width)]
        return (lambda k: f"{fvar}[:, {k}]" if fact.items[k] == "float" else f"{ivar}[:, {k}]"), fvar

    def prelude(self, empty_ok: bool) -> list[str]:
        """The parameter tables. `torch.tensor([])` is 1-d: when an empty list must work
        (anything but torch.stack, which raises on it), tuples keep their width."""
        t = self.t
        return [f"{var} = {t}.tensor({name}, dtype={t}.{dtype})" + (f".reshape(-1, {width})" if width and empty_ok
                                                                      else "")
                for var, name, dtype, width in self.tables]

    def _tensor_rows(self) -> tuple[_Sources, str]:
        """For loops over the rows of tensors (zip, enumerate, range(len(x)))."""
        loop = self.loop
        dom = loop.domain
        if dom is None:
            raise SweepError(loop.domain_problem or "iteration the sweep cannot describe")
        if loop.iterable_problem:
            raise SweepError(loop.iterable_problem)
        # range(1, n), enumerate(x, 1): a whole-array rewrite touches rows the loop skips
        if not dom.full:
            raise SweepError("partial or strided range")
        sources = _Sources(index=dom.index)
        for array in dom.arrays:
            fact = self.facts.get(array) if "." not in array and "[" not in array else None
            if fact is None or fact.kind != "tensor" or fact.rank is None or fact.rank < 1:
                raise SweepError(f"the rank of `{array}` is unknown: add a `# loopvec: shapes` hint")
            sources.arrays[array] = V(_expr(array), "b", rank=fact.rank - 1, dtype=f"{array}.dtype",
                                      floating=fact.floating, device=f"{array}.device")
        # range(n) with no array it measures: nothing says which rows exist
        if not dom.arrays:
            raise SweepError(f"`range({dom.extent})` does not measure an array")
        for name, array in dom.elements:
            sources.rows[name] = sources.arrays[array]
        if len(dom.arrays) > 1:
            self.assumptions += [f"len({a}) == len({dom.arrays[0]})" for a in dom.arrays[1:]]
        return sources, dom.extent

    # ------------------------------------------------------------------ the rewrite
    def run(self) -> Rewrite:
        loop = self.loop
        target, iterable = self._header()
        found = self._parameter_list(target, iterable)
        loop_names = set(loop.assigned) | set(target_names(target))
        if loop.kind == "comprehension":
            loop_names = set(target_names(target))
        if found is not None:
            sources, name, fact = found
            extent = f"len({name})"
            if not fact.local:
                # an int where a float is annotated would compute in another dtype
                self.assumptions.append(f"`{name}` holds Python {_describe(fact)} as annotated")
        else:
            if loop.kind == "comprehension" or loop.appends:
                raise SweepError(self._not_a_list(iterable))
            sources, extent = self._tensor_rows()
            loop_names |= set(loop.domain.names)
        lifter = self.lifter = _Lifter(self.info, self.t, self.facts, sources, loop_names, self._fresh)
        if loop.kind == "comprehension":
            return self._comprehension(lifter, extent)
        if loop.accumulators:
            return self._summed(lifter, extent, rows=found is None)
        if found is None:
            raise SweepError(self._not_a_list(iterable))
        return self._collected(lifter, extent, found[2])

    def _not_a_list(self, iterable) -> str:
        if isinstance(iterable, cst.Name):
            return (f"`{iterable.value}` is not known to be a list of numbers or tuples of numbers "
                    "(annotate it, e.g. `list[float]`)")
        return f"iterates over `{code(iterable)}`, not over a list of parameters"

    def _used_after(self, allowed: set[str]) -> None:
        leaked = sorted(self.loop.used_after - allowed)
        # a body temporary read after the loop would now hold every parameter's value
        if leaked:
            raise SweepError(f"`{leaked[0]}` is bound in the loop and used after it")

    def _collect(self, value: V, finish, extent: str, fact: Fact | None) -> str:
        """The expression equal to `torch.stack/tensor([value for each parameter])`."""
        call = finish.call
        t = self.t
        kwargs = {a.keyword.value: a.value for a in call.args[1:] if a.keyword is not None}
        if any(a.keyword is None for a in call.args[1:]):
            raise SweepError(f"`{code(call.func)}` with extra positional arguments")
        if finish.kind == "stack":
            if set(kwargs) - {"dim"} or ("dim" in kwargs and code(kwargs["dim"]) != "0"):
                raise SweepError("torch.stack along a dimension other than 0")
            if value.kind != "b":
                raise SweepError("torch.stack of Python numbers")
            # torch.stack([]) raises, so an empty list need not be matched
            return value.code
        if finish.kind != "tensor":
            raise SweepError(f"the list is finished with torch.{finish.kind}")
        if set(kwargs) - {"dtype"}:
            raise SweepError("torch.tensor with keywords other than dtype")
        if value.kind == "b" and value.rank != 0:
            raise SweepError("torch.tensor of tensors that are not 0-d")
        if value.kind == "b":
            # torch.tensor copies 0-d tensors' values: no grad, on the default device, their dtype
            value = replace(value, node=_expr(f"{as_operand(value.code)}.detach().to({t}.get_default_device())"))
        if "dtype" in kwargs:
            return f"{as_operand(value.code)}.to({code(kwargs['dtype'])})"
        if value.kind == "p" and value.num == "float":
            # Python floats become the default dtype, an empty list too
            return f"{as_operand(value.code)}.to({t}.get_default_dtype())"
        nonempty = extent if extent.startswith("len(") else f"{extent} > 0"
        return f"{value.code} if {nonempty} else {t}.tensor([])"

    def _collected(self, lifter: _Lifter, extent: str, fact: Fact) -> Rewrite:
        loop = self.loop
        if len(loop.appends) != 1 or loop.writes:
            raise SweepError("body is not temporaries followed by one append")
        app = loop.appends[0]
        if not loop.body or only(loop.body[-1]) is not app.statement:
            raise SweepError("the append is not the last statement of the body")
        found = collected_list(loop, app.target)
        if isinstance(found, str):
            raise SweepError(found)
        init, finish = found
        self._used_after(set())
        lines = lifter.lift_temps(loop.body[:-1])
        value = lifter.lift(app.value)
        lines += lifter.flush()
        new = self._collect(value, finish, extent, fact)
        final = f"{finish.target} = {new}" if finish.target else f"return {new}"
        edits = (
            Edit(init.statement, None),
            Edit(loop.node, "\n".join([*self.prelude(finish.kind != "stack"), *lines])),
            Edit(finish.statement, final),
        )
        return self._rewrite(edits, f"becomes `{final}`")

    def _comprehension(self, lifter: _Lifter, extent: str) -> Rewrite:
        loop = self.loop
        value = lifter.lift(loop.element)
        new = self._collect(value, loop.collector, extent, None)
        stmt = self.statement
        small = only(stmt)
        whole = isinstance(small, (cst.Return, cst.Assign)) and small.value is loop.collector.call
        # `return torch.stack([...])` needs no parentheses around what replaces the call
        replaced = stmt.deep_replace(loop.collector.call, _expr(new if whole else as_operand(new)))
        text = code(replaced.with_changes(leading_lines=()))
        lines = [*self.prelude(loop.collector.kind != "stack"), *lifter.flush(), text]
        edits = (Edit(stmt, "\n".join(lines)),)
        return self._rewrite(edits, f"becomes `{new}`")

    def _summed(self, lifter: _Lifter, extent: str, rows: bool) -> Rewrite:
        loop = self.loop
        if len(loop.accumulators) != 1 or loop.appends or loop.writes:
            raise SweepError("body is not temporaries followed by one `total += ...`")
        acc = loop.accumulators[0]
        if acc.op != "AddAssign":
            raise SweepError(f"accumulates with `{acc.op}`")
        if not loop.body or only(loop.body[-1]) is not acc.statement:
            raise SweepError("the accumulation is not the last statement of the body")
        init = loop.setup.get(acc.target)
        # total = 0 right before the loop: the sum starts from a Python number
        if init is None or init.kind != "scalar" or init.interleaved or literal_number(init.value) is None:
            raise SweepError(f"`{acc.target}` does not start from a number literal right before the loop")
        temps = list(loop.body[:-1])
        value_node = acc.value
        criteria = _criteria(loop, self.info, self.statement)
        # loss = criterion(a, b); total += loss
        if isinstance(value_node, cst.Name) and temps and _assigned_name(temps[-1]) == value_node.value:
            loss_node = only(temps[-1]).value
            if loss_call(loss_node, self.info, criteria) is not None:
                temps.pop()
                value_node = loss_node
        self._used_after({acc.target})
        loss = loss_call(value_node, self.info, criteria)
        if loss is None:
            if rows:
                raise SweepError("the summed value is not a known loss (F.mse_loss, nn.L1Loss(), ...): "
                                 "an opaque criterion may not be elementwise")
            lines = lifter.lift_temps(temps)
            value = lifter.lift(value_node)
            lines += lifter.flush()
            if value.kind != "b" or value.rank != 0:
                raise SweepError("the summed value is not a 0-d tensor per parameter")
            total = f"{as_operand(value.code)}.sum()"
        else:
            lines = lifter.lift_temps(temps)
            total = self._loss_total(lifter, loss)
            lines += lifter.flush()
        start = code(init.value)
        nonempty = extent if extent.startswith("len(") else f"{extent} > 0"
        if start in ("0", "0.0"):
            new = f"{total} if {nonempty} else {start}"
        else:
            new = f"{start} + {total} if {nonempty} else {start}"
        final = f"{acc.target} = {new}"
        edits = (
            Edit(init.statement, None),
            Edit(loop.node, "\n".join([*self.prelude(True), *lines, final])),
        )
        return self._rewrite(edits, f"becomes `{final}`")

    def _loss_total(self, lifter: _Lifter, loss: LossCall) -> str:
        a, b = lifter.lift(loss.input), lifter.lift(loss.target)
        if a.kind != "b" or b.kind != "b":
            # one side the same for every item: the batched loss would broadcast it (and warn)
            raise SweepError("the loss's input and target do not both vary per item")
        if a.rank is None or b.rank is None:
            raise SweepError("the rank of a loss argument is unknown: add a `# loopvec: shapes` hint")
        if (a.rank == 0) != (b.rank == 0):
            raise SweepError("the loss mixes a 0-d tensor per item with a larger one")
        rank = max(a.rank, b.rank)
        fn = self._functional(loss.function)
        extra = "".join(f", {k}={v}" for k, v in loss.extra)
        args = f"{code(_pad(a, rank - a.rank))}, {code(_pad(b, rank - b.rank))}"
        if loss.reduction == "sum":
            return f"{fn}({args}, reduction=\"sum\"{extra})"
        batched = f"{fn}({args}, reduction=\"none\"{extra})"
        if loss.reduction == "none":
            return f"{batched}.sum(0)"
        if rank == 0:
            return f"{batched}.sum()"
        dims = "1" if rank == 1 else "(" + ", ".join(str(k) for k in range(1, rank + 1)) + ")"
        return f"{batched}.mean(dim={dims}).sum()"

    def _functional(self, name: str) -> str:
        alias = self.info.alias_for("torch.nn.functional")
        if alias:
            return f"{alias}.{name}"
        nn = self.info.alias_for("torch.nn")
        return f"{nn}.functional.{name}" if nn else f"{self.t}.nn.functional.{name}"

    def _rewrite(self, edits, message: str) -> Rewrite:
        self.assumptions += self.lifter.assumptions
        return Rewrite(Sweep.NAME, self.loop, edits, message, SAFE, tuple(dict.fromkeys(self.assumptions)),
                       self.ctx.imports)


def _assigned_name(stmt: cst.BaseStatement) -> str | None:
    small = only(stmt)
    if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
        return small.targets[0].target.value
    return None


def _describe(fact: Fact) -> str:
    if fact.tuple_:
        return "tuples of (" + ", ".join(fact.items) + ")"
    return f"{fact.items[0]}s"
