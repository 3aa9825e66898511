"""Lift a loop-body expression over one element into the same expression over the array.

`x[i] ** 2 + 3 * x[i]` over `for i in range(len(x))` lifts to `x ** 2 + 3 * x`;
`math.sin(v)` over `for v in x` lifts to `torch.sin(x.double())` (math works on Python
floats, which are float64). The tables below are the source counterpart of vmap's
batching rules: how each operator, torch function, tensor method, builtin and `math.*`
function batches. Anything not in a table raises `LiftError` — never guess.

Every lifted value has a *kind*, the Python type one iteration produced:
  tensor  a torch tensor (0-d or more) — batched values keep the element's dtype rules
  float   a Python float (computed in float64) — lifted as a float64 tensor
  int     a Python int — lifted as an int64 tensor
  bool    a Python bool — lifted as a bool tensor
  const   a numeric literal, the same in every iteration
  invariant  any other loop-invariant value (a parameter, a module constant)
Kinds matter because they decide dtypes: `float(x) * 2` is float64 per element even when
`x` is float32, and mixing a per-element Python number with a tensor promotes differently
once batched, so that mix declines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import libcst as cst

from .analysis.domain import Domain
from .analysis.loops import flatten_subscript
from . import exprs
from .analysis.module import ModuleInfo, code, number_value
from .dtypes import CAST_METHODS


class LiftError(Exception):
    """The expression cannot be lifted; the message says why (shown as the decline reason)."""


@dataclass(frozen=True)
class Lifted:
    node: cst.BaseExpression
    batched: bool
    kind: str  # tensor | float | int | bool | const | invariant
    fresh: bool = True  # a new tensor, not a view of an input (else a copy is needed)

    @property
    def code(self) -> str:
        # parenthesised by precedence: a tree composed without parentheses keeps its meaning
        return exprs.render(self.node)


# --------------------------------------------------------------------------- tables

UNARY = {
    "abs", "absolute", "acos", "arccos", "acosh", "asin", "arcsin", "asinh", "atan", "arctan",
    "atanh", "ceil", "cos", "cosh", "deg2rad", "rad2deg", "erf", "erfc", "erfinv", "exp", "exp2",
    "expm1", "fix", "floor", "frac", "lgamma", "digamma", "log", "log10", "log1p", "log2",
    "logit", "i0", "isnan", "isinf", "isfinite", "isposinf", "isneginf", "isreal", "nan_to_num",
    "neg", "negative", "positive", "reciprocal", "round", "rsqrt", "sigmoid", "sign", "sgn",
    "signbit", "sin", "sinc", "sinh", "sqrt", "square", "tan", "tanh", "trunc", "relu",
    "logical_not", "bitwise_not", "conj", "angle", "real", "imag",
}
_BINARY = {
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "floor_divide",
    "pow", "float_power", "maximum", "minimum", "fmax", "fmin", "atan2", "arctan2", "remainder",
    "fmod", "hypot", "logaddexp", "logaddexp2", "copysign", "nextafter", "xlogy", "heaviside",
    "eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal",
    "not_equal", "logical_and", "logical_or", "logical_xor", "bitwise_and", "bitwise_or",
    "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift", "isclose",
}
_TERNARY = {"where", "lerp", "addcmul", "addcdiv", "clamp", "clip"}
_TORCH_ELEMENTWISE = UNARY | _BINARY | _TERNARY
_SPECIAL = {"expit", "logit", "erf", "erfc", "erfinv", "expm1", "exp2", "log1p", "sinc", "xlogy",
            "i0", "i0e", "i1", "i1e", "ndtr", "ndtri", "log_ndtr", "entr", "round", "xlog1py"}
FUNCTIONAL = {
    "relu", "relu6", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus", "softsign",
    "leaky_relu", "hardtanh", "hardswish", "hardsigmoid", "hardshrink", "softshrink",
    "tanhshrink", "threshold", "logsigmoid", "sigmoid", "tanh",
}
# methods that keep elementwise semantics; argument positions may be batched
_METHODS = (UNARY | _BINARY | {"where", "lerp", "addcmul", "addcdiv", "clamp", "clip",
            "clamp_min", "clamp_max"}) - {"real", "imag"}
_CASTS = set(CAST_METHODS) | {"to", "type"}
_IDENTITY_METHODS = {"clone": True, "detach": False, "contiguous": False}
_MATH = {
    "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan",
    "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "asinh": "asinh", "acosh": "acosh",
    "atanh": "atanh", "exp": "exp", "expm1": "expm1", "log1p": "log1p", "log2": "log2",
    "log10": "log10", "sqrt": "sqrt", "fabs": "abs", "erf": "erf", "erfc": "erfc",
    "lgamma": "lgamma", "atan2": "atan2", "hypot": "hypot", "copysign": "copysign",
    "fmod": "fmod", "pow": "pow", "degrees": "rad2deg", "radians": "deg2rad",
}
# math functions that return int for floats: floor/ceil/trunc -> Python int
_MATH_TO_INT = {"floor": "floor", "ceil": "ceil", "trunc": "trunc"}
_FLOAT_OPS = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.Power, cst.FloorDivide, cst.Modulo)
_INT_OPS = (cst.Add, cst.Subtract, cst.Multiply, cst.FloorDivide, cst.Modulo,
            cst.BitAnd, cst.BitOr, cst.BitXor, cst.LeftShift, cst.RightShift)


# --------------------------------------------------------------------------- ops with dim arguments
# How a per-item call of an op that takes dims (`softmax(v, dim=0)`, `v.sum()`, `fft2(img)`,
# `conv2d(x[i:i+1], w)`) becomes one call on the stacked array: which parameters are dims,
# what an absent dim means, which ranks the item must have. `batched_op` applies these
# rules (it knows ranks the lifter does not); `reduction` reads its row reductions here.


def literal_dim(node: cst.BaseExpression) -> int | None:
    """`2` -> 2, `-1` -> -1; None for anything that is not an integer literal."""
    value = number_value(node)
    return value if isinstance(value, int) else None


def literal_dims(node: cst.BaseExpression) -> tuple[int, ...] | None:
    """The dims an int or a tuple/list of ints names; None when any is not a literal."""
    one = literal_dim(node)
    if one is not None:
        return (one,)
    if isinstance(node, (cst.Tuple, cst.List)):
        out = []
        for el in node.elements:
            if isinstance(el, cst.StarredElement):
                return None
            d = literal_dim(el.value)
            if d is None:
                return None
            out.append(d)
        return tuple(out)
    return None


def shift_dims(node: cst.BaseExpression) -> cst.BaseExpression:
    """The same dims on the stacked array: `0` -> `1`, `(0, -1)` -> `(1, -1)`, `-2` -> `-2`."""
    if literal_dims(node) is None:
        # dim=k: k + 1 is right only when k >= 0, which the source does not say
        raise LiftError(f"dim `{code(node)}` is not an integer literal")
    if isinstance(node, (cst.Tuple, cst.List)):
        return node.with_changes(elements=[el.with_changes(value=shift_dims(el.value)) for el in node.elements])
    d = literal_dim(node)
    return node if d is not None and d < 0 else cst.Integer(str(d + 1))


def dims_code(dims: tuple[int, ...]) -> str:
    return f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(map(str, dims)) + ")"


LAST = "last"  # an absent dim means trailing dims: the same on the stacked array
ALL = "all"  # an absent dim means every dim of the item (fftn, fftshift)
REDUCE_ALL = "reduce-all"  # an absent dim reduces the whole item (sum(), max())
REQUIRED = "required"  # an absent dim is an error, or a deprecated implicit choice: decline


@dataclass(frozen=True)
class Op:
    """How one torch function (or tensor method) batches.

    `params` are the positional parameters after the input; `dims` maps each dim
    parameter to what its absence means (LAST, ALL, REDUCE_ALL, REQUIRED, or the
    non-negative default, which the stacked call must state shifted).
    `item` / `b1` say when a per-item input (`f(x[i])`) or a batch of one
    (`f(x[i].unsqueeze(0))`, then `torch.cat`) may become `f(x)`:
      "any"   for any rank (the op works on trailing dims),
      "lo1"   when each item has at least one dim,
      "exact" when each item has exactly `spatial + 1` dims (conv: a 2-D item would be
              an unbatched single-channel input, a different computation),
      None    never (interpolate treats dim 0 as the batch: an item is not a batch).
    """

    params: tuple[str, ...] = ()
    kwonly: tuple[str, ...] = ()
    dims: tuple[tuple[str, object], ...] = ()
    min_rank: int = 0  # the per-item call raises on items of lower rank
    item: str | None = "any"
    b1: str | None = None
    spatial: int = 0
    out: str = "same"  # same | reduce | minus1 | minus2 | none
    fresh: bool = True  # False: may return a view of its input (transpose, diagonal)
    empty_dims_ok: bool = False  # `dim=()` transforms nothing, like a 0-d item (fftn, ifftn)
    forbid: tuple[str, ...] = ()  # parameters that change the result's structure
    rename: str | None = None  # reduce-all spelling when the name differs (max() -> amax)


def _op(**kw) -> Op:
    kw["dims"] = tuple(kw.get("dims", {}).items())
    return Op(**kw)


DIM_FUNCTIONS: dict[str, Op] = {}
DIM_METHODS: dict[str, Op] = {}

for _name in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft"):
    DIM_FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("n", "dim", "norm"), dims={"dim": LAST}, min_rank=1)
for _name in ("fft2", "ifft2", "rfft2", "irfft2", "hfft2", "ihfft2"):
    DIM_FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("s", "dim", "norm"), dims={"dim": LAST}, min_rank=1)
for _name in ("fftn", "ifftn"):
    DIM_FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("s", "dim", "norm"), dims={"dim": ALL}, empty_dims_ok=True)
for _name in ("rfftn", "irfftn", "hfftn", "ihfftn"):
    DIM_FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("s", "dim", "norm"), dims={"dim": ALL}, min_rank=1)
for _name in ("fftshift", "ifftshift"):
    DIM_FUNCTIONS[f"torch.fft.{_name}"] = _op(params=("dim",), dims={"dim": ALL}, min_rank=1)

# linear algebra on the trailing matrix dims: any leading dims are a batch already.
# Not det/logdet/slogdet: on a non-finite matrix the batched kernel's answer depends on
# the batch's memory layout (nan per matrix, -inf in a strided batch).
for _name, _params, _kwonly, _out in (
    ("inv", (), (), "same"), ("matrix_exp", (), (), "same"),
    ("cholesky", (), ("upper",), "same"), ("eigvalsh", ("UPLO",), (), "minus1"), ("svdvals", (), ("driver",), "minus1"),
    ("pinv", (), ("atol", "rtol", "hermitian"), "same"), ("matrix_power", ("n",), (), "same"),
    ("matrix_rank", (), ("atol", "rtol", "hermitian"), "minus2"), ("cond", ("p",), (), "minus2"),
):
    DIM_FUNCTIONS[f"torch.linalg.{_name}"] = _op(params=_params, kwonly=_kwonly, min_rank=2, out=_out)
DIM_FUNCTIONS["torch.linalg.matrix_norm"] = _op(params=("ord", "dim", "keepdim"), kwonly=("dtype",),
                                            dims={"dim": LAST}, min_rank=2, out="none")
DIM_FUNCTIONS["torch.linalg.vector_norm"] = _op(params=("ord", "dim", "keepdim"), kwonly=("dtype",),
                                            dims={"dim": REDUCE_ALL}, out="reduce")
# linalg.norm without dim is a vector or a matrix norm depending on the rank: only with dim
DIM_FUNCTIONS["torch.linalg.norm"] = _op(params=("ord", "dim", "keepdim"), kwonly=("dtype",),
                                     dims={"dim": REQUIRED}, out="reduce")
DIM_FUNCTIONS["torch.linalg.diagonal"] = _op(kwonly=("offset", "dim1", "dim2"),
                                         dims={"dim1": LAST, "dim2": LAST}, min_rank=2, out="minus1",
                                         fresh=False)
for _name, _out in (("inverse", "same"), ("matrix_exp", "same")):
    DIM_FUNCTIONS[f"torch.{_name}"] = _op(min_rank=2, out=_out)
    DIM_METHODS[_name] = DIM_FUNCTIONS[f"torch.{_name}"]

# softmax and friends: the dim is required (F.softmax's implicit dim depends on the rank)
for _qual in ("torch.softmax", "torch.log_softmax", "torch.special.softmax", "torch.special.log_softmax"):
    DIM_FUNCTIONS[_qual] = _op(params=("dim", "dtype"), dims={"dim": REQUIRED})
for _name in ("softmax", "log_softmax", "softmin"):
    DIM_FUNCTIONS[f"torch.nn.functional.{_name}"] = _op(params=("dim", "_stacklevel", "dtype"), dims={"dim": REQUIRED})
for _name in ("softmax", "log_softmax"):
    DIM_METHODS[_name] = _op(params=("dim",), kwonly=("dtype",), dims={"dim": REQUIRED})
DIM_FUNCTIONS["torch.nn.functional.normalize"] = _op(params=("p", "dim", "eps"), dims={"dim": 1})
DIM_FUNCTIONS["torch.nn.functional.glu"] = _op(params=("dim",), dims={"dim": LAST}, min_rank=1)

# scans and reorderings along a dim
for _name in ("cumsum", "cumprod", "logcumsumexp"):
    DIM_FUNCTIONS[f"torch.{_name}"] = _op(params=("dim",), kwonly=("dtype",), dims={"dim": REQUIRED})
    DIM_METHODS[_name] = DIM_FUNCTIONS[f"torch.{_name}"]
DIM_FUNCTIONS["torch.flip"] = _op(params=("dims",), dims={"dims": REQUIRED})
DIM_METHODS["flip"] = DIM_FUNCTIONS["torch.flip"]
DIM_FUNCTIONS["torch.roll"] = _op(params=("shifts", "dims"), dims={"dims": REQUIRED})
DIM_METHODS["roll"] = DIM_FUNCTIONS["torch.roll"]
DIM_FUNCTIONS["torch.argsort"] = _op(params=("dim", "descending"), kwonly=("stable",), dims={"dim": LAST})
DIM_METHODS["argsort"] = DIM_FUNCTIONS["torch.argsort"]
DIM_FUNCTIONS["torch.diff"] = _op(params=("n", "dim"), dims={"dim": LAST}, min_rank=1, forbid=("prepend", "append"),
                              out="none")
DIM_METHODS["diff"] = DIM_FUNCTIONS["torch.diff"]
for _name in ("transpose", "swapaxes", "swapdims"):
    _pair = ("axis0", "axis1") if _name == "swapaxes" else ("dim0", "dim1")
    DIM_FUNCTIONS[f"torch.{_name}"] = _op(params=_pair, dims={_pair[0]: REQUIRED, _pair[1]: REQUIRED}, fresh=False)
    DIM_METHODS[_name] = DIM_FUNCTIONS[f"torch.{_name}"]
for _name in ("movedim", "moveaxis"):
    DIM_FUNCTIONS[f"torch.{_name}"] = _op(params=("source", "destination"),
                                      dims={"source": REQUIRED, "destination": REQUIRED}, fresh=False)
    DIM_METHODS[_name] = DIM_FUNCTIONS[f"torch.{_name}"]
DIM_FUNCTIONS["torch.diagonal"] = _op(params=("offset", "dim1", "dim2"), dims={"dim1": 0, "dim2": 1}, min_rank=2,
                                  out="minus1", fresh=False)
DIM_METHODS["diagonal"] = DIM_FUNCTIONS["torch.diagonal"]
DIM_FUNCTIONS["torch.unsqueeze"] = _op(params=("dim",), dims={"dim": REQUIRED}, out="plus1", fresh=False)
DIM_METHODS["unsqueeze"] = DIM_FUNCTIONS["torch.unsqueeze"]
# squeeze() without a dim would squeeze the batch dimension too when there is one row
DIM_FUNCTIONS["torch.squeeze"] = _op(params=("dim",), dims={"dim": REQUIRED}, out="none", fresh=False)
DIM_METHODS["squeeze"] = DIM_FUNCTIONS["torch.squeeze"]
DIM_FUNCTIONS["torch.flatten"] = _op(params=("start_dim", "end_dim"), dims={"start_dim": 0, "end_dim": LAST},
                                 out="none", fresh=False)
DIM_METHODS["flatten"] = DIM_FUNCTIONS["torch.flatten"]

# reductions: with a dim they shift; without one they reduce the whole item
for _name in ("sum", "mean", "nansum", "nanmean", "amax", "amin", "logsumexp", "count_nonzero", "any", "all",
              "argmax", "argmin", "std", "var", "prod"):
    _default = REQUIRED if _name == "logsumexp" else REDUCE_ALL
    _params = ("dim",) if _name in ("count_nonzero",) else ("dim", "keepdim")
    _kwonly = {"sum": ("dtype",), "mean": ("dtype",), "nansum": ("dtype",), "nanmean": ("dtype",),
               "prod": ("dtype",), "std": ("correction", "unbiased"), "var": ("correction", "unbiased")}
    _op_entry = _op(params=_params, kwonly=_kwonly.get(_name, ()), dims={"dim": _default}, out="reduce")
    DIM_FUNCTIONS[f"torch.{_name}"] = _op_entry
    DIM_METHODS[_name] = _op_entry
# max()/min() without arguments reduce the item; with a dim they return (values, indices)
for _name in ("max", "min"):
    DIM_METHODS[_name] = _op(dims={"dim": REDUCE_ALL}, out="reduce", rename=f"a{_name}")
    DIM_FUNCTIONS[f"torch.{_name}"] = DIM_METHODS[_name]
DIM_METHODS["norm"] = _op(params=("p", "dim", "keepdim"), kwonly=("dtype",), dims={"dim": REDUCE_ALL}, out="reduce")

# layers that take a batch first: pooling and conv see `x[i].unsqueeze(0)` as a batch of one
_F = "torch.nn.functional."
for _k in (1, 2, 3):
    DIM_FUNCTIONS[f"{_F}conv{_k}d"] = _op(params=("weight", "bias", "stride", "padding", "dilation", "groups"),
                                     item="exact", b1="exact", spatial=_k, out="same")
    DIM_FUNCTIONS[f"{_F}conv_transpose{_k}d"] = _op(
        params=("weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
        item="exact", b1="exact", spatial=_k, out="same")
    # each channel pools on its own: a 2-D item in a batch of one is one channel, the same
    DIM_FUNCTIONS[f"{_F}max_pool{_k}d"] = _op(
        params=("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
        item="exact", b1="any", spatial=_k, out="same", forbid=("return_indices",))
    DIM_FUNCTIONS[f"{_F}avg_pool{_k}d"] = _op(
        params=("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
        + (("divisor_override",) if _k > 1 else ()), item="exact", b1="any", spatial=_k, out="same")
    DIM_FUNCTIONS[f"{_F}adaptive_avg_pool{_k}d"] = _op(params=("output_size",), item="exact", b1="any", spatial=_k)
    DIM_FUNCTIONS[f"{_F}adaptive_max_pool{_k}d"] = _op(params=("output_size", "return_indices"), item="exact",
                                                  b1="any", spatial=_k, forbid=("return_indices",))
DIM_FUNCTIONS[f"{_F}interpolate"] = _op(
    params=("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"),
    item=None, b1="any")
DIM_FUNCTIONS[f"{_F}group_norm"] = _op(params=("num_groups", "weight", "bias", "eps"), item=None, b1="any")
DIM_FUNCTIONS[f"{_F}linear"] = _op(params=("weight", "bias"), min_rank=1, item="any", b1="lo1")
DIM_FUNCTIONS[f"{_F}layer_norm"] = _op(params=("normalized_shape", "weight", "bias", "eps"), min_rank=1)

# reductions that take a tuple of dims (the others reduce a flattened item)
TUPLE_DIMS = {"sum", "mean", "nansum", "nanmean", "amax", "amin", "std", "var", "count_nonzero", "any", "all",
               "vector_norm"}
# matrix products: exact only for some ranks of their operands (see `_matmul`)
MATMUL = {"torch.matmul", "torch.mm", "torch.bmm", "torch.mv"}

# `row.sum()` of each row of `X` is `X.sum(1)`: a reduction over the whole item, by its
# batched name (`max` -> `amax`); None when the op needs a dim (logsumexp)
ROW_REDUCTIONS = {name: (op.rename or name) if dict(op.dims)["dim"] == REDUCE_ALL else None
                  for name, op in DIM_METHODS.items() if op.out == "reduce"}
# row reductions whose `dtype=` carries over (norm's is not proved by a verified fixture)
ROW_REDUCTION_DTYPE = {name for name in ROW_REDUCTIONS if "dtype" in DIM_METHODS[name].kwonly} - {"norm"}


# --------------------------------------------------------------------------- scope


@dataclass
class LiftScope:
    """What the lifter knows about one loop.

    `elements` maps per-iteration names to whole-array expressions (`v` -> `x`),
    `temps` holds body temporaries already lifted, `loop_names` every name the loop binds
    (a reference to one the scope cannot lift declines), and `assumptions` collects what a
    rewrite relies on beyond the verified inputs (e.g. two arrays of equal length).

    `calls` is a pattern's own batching rule, tried before the tables for every call --
    and for `x[k]` and `a @ b`, which call `__getitem__` and `__matmul__`: it returns the
    lifted value, None to leave the node to the tables, or raises LiftError. `reduction`
    lifts row reductions with it (`row.sum()` -> `X.sum(1)`), `batched_op` the ops whose
    dims shift (`softmax(v, 0)` -> `softmax(V, 1)`) and batches of one. It is asked once
    per node: the answer is kept (by identity) for the lifetime of the scope.
    """

    info: ModuleInfo
    torch: str
    domain: Domain
    loop_names: set[str]
    elements: dict[str, Lifted] = field(default_factory=dict)
    temps: dict[str, Lifted] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    walked: list[str] = field(default_factory=list)  # arrays read one row per iteration
    calls: Callable[[cst.BaseExpression, LiftScope], Lifted | None] | None = None
    _answers: dict[int, tuple[cst.CSTNode, Lifted | None]] = field(default_factory=dict, repr=False)

    def use_calls(self, calls: Callable[[cst.BaseExpression, LiftScope], Lifted | None] | None) -> None:
        """Install the pattern's rule (None removes it); a previous rule's answers are forgotten."""
        self.calls = calls
        self._answers.clear()

    def rule(self, node: cst.BaseExpression) -> Lifted | None:
        """What `calls` says about `node` (asked once per node)."""
        if self.calls is None:
            return None
        kept = self._answers.get(id(node))
        if kept is not None and kept[0] is node:
            return kept[1]
        out = self.calls(node, self)
        self._answers[id(node)] = (node, out)  # the node is kept alive, so its id stays its own
        return out

    def walk(self, array: str) -> None:
        """`x[i] * w[i]` with x [n, d] and w [n]: per row `w[i]` is 0-d and scales the row;
        batched, `w` would align with `d`. Two walked arrays must have the same rank."""
        if array in self.walked:
            return
        self.walked.append(array)
        if len(self.walked) > 1:
            self.assumptions.append(f"`{self.walked[0]}` and `{array}` have the same number of dimensions")

    @classmethod
    def for_loop(cls, info: ModuleInfo, torch: str, domain: Domain, loop_names: set[str]) -> LiftScope:
        scope = cls(info, torch, domain, set(loop_names) | set(domain.names))
        for name, array in domain.elements:
            scope.elements[name] = Lifted(cst.parse_expression(array), True, "tensor", fresh=False)
        if len(domain.arrays) > 1:
            # zip(x, y) stops at the shorter one; the whole-array form needs equal lengths
            first = domain.arrays[0]
            scope.assumptions += [f"len({a}) == len({first})" for a in domain.arrays[1:]]
        return scope

    def expr(self, text: str) -> cst.BaseExpression:
        return cst.parse_expression(text)

    def torch_fn(self, name: str) -> cst.BaseExpression:
        return cst.parse_expression(f"{self.torch}.{name}")


def _tensorish(kind: str) -> bool:
    return kind in ("tensor", "const", "invariant")


def paren(node: cst.BaseExpression) -> cst.BaseExpression:
    """`node` ready to be an operand or a method's receiver: parenthesised unless an atom."""
    if isinstance(node, (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float)):
        return node
    if node.lpar:
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


_ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float, cst.Imaginary,
          cst.SimpleString)


def _fit(original: cst.BaseExpression, new: cst.BaseExpression) -> cst.BaseExpression:
    """`new` in the place of `original`: parenthesised only if its precedence may differ."""
    if isinstance(new, _ATOMS) or new.lpar:
        return new
    if type(new) is type(original) and not isinstance(new, (cst.Comparison, cst.BooleanOperation)):
        same_op = type(getattr(new, "operator", None)) is type(getattr(original, "operator", None))
        if same_op:
            return new
    if isinstance(new, cst.Comparison) and isinstance(original, cst.Comparison):
        return new
    return paren(new)


def call(func: cst.BaseExpression, *args: cst.BaseExpression, **kwargs: cst.BaseExpression) -> cst.Call:
    return exprs.call(func, *args, **kwargs)


def method(obj: cst.BaseExpression, name: str, *args: cst.BaseExpression, **kwargs) -> cst.Call:
    return exprs.method(obj, name, *args, **kwargs)


# --------------------------------------------------------------------------- the lifter


def combine_kinds(a: Lifted, b: Lifted, what: str) -> str:
    """The kind of `a op b`, or LiftError when batching would change dtype promotion."""
    ka, kb = a.kind, b.kind
    if ka in ("const", "invariant") and kb in ("const", "invariant"):
        return "invariant"
    if ka in ("const", "invariant"):
        return kb
    if kb in ("const", "invariant"):
        return ka
    if ka == kb:
        return ka
    if {ka, kb} <= {"float", "int", "bool"}:
        return "float" if "float" in (ka, kb) else "int"
    # 0-d tensor * Python int keeps the tensor's dtype; a batched int64 tensor would promote it
    raise LiftError(f"{what} mixes a per-element Python number with a tensor")


def lift(node: cst.BaseExpression, scope: LiftScope) -> Lifted:
    if isinstance(node, (cst.Integer, cst.Float, cst.Imaginary)):
        return Lifted(node, False, "const")
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString)):
        return Lifted(node, False, "invariant")
    if isinstance(node, cst.Name):
        return _lift_name(node, scope)
    if isinstance(node, cst.Attribute):
        return _lift_attribute(node, scope)
    if isinstance(node, cst.Subscript):
        return _lift_subscript(node, scope)
    if isinstance(node, cst.UnaryOperation):
        return _lift_unary(node, scope)
    if isinstance(node, cst.BinaryOperation):
        return _lift_binary(node, scope)
    if isinstance(node, cst.Comparison):
        return _lift_comparison(node, scope)
    if isinstance(node, cst.BooleanOperation):
        return _lift_boolean(node, scope)
    if isinstance(node, cst.IfExp):
        return _lift_ifexp(node, scope)
    if isinstance(node, cst.Call):
        return _lift_call(node, scope)
    raise LiftError(f"cannot lift `{code(node)}`")


def _unbatched(node: cst.BaseExpression, scope: LiftScope) -> bool:
    from .analysis.loops import names_in

    return not (names_in(node) & scope.loop_names)


def _lift_name(node: cst.Name, scope: LiftScope) -> Lifted:
    name = node.value
    if name in scope.temps:
        return scope.temps[name]
    if name in scope.elements:
        scope.walk(code(scope.elements[name].node))
        return scope.elements[name]
    if name == scope.domain.index:
        # `x * i`: the index is a Python int; batched it is an int64 arange, which
        # promotes differently against tensors -- only pure-int arithmetic may use it
        return Lifted(call(scope.torch_fn("arange"), scope.expr(scope.domain.extent)), True, "int")
    if name in scope.loop_names:
        raise LiftError(f"`{name}` is bound in the loop in a way loopvec does not lift")
    return Lifted(node, False, "invariant")


def _lift_attribute(node: cst.Attribute, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    base = lift(node.value, scope)
    attr = node.attr.value
    if base.kind != "tensor":
        raise LiftError(f"attribute `.{attr}` of a per-element Python number")
    if attr in ("dtype", "device", "is_cuda", "layout"):
        return Lifted(node.with_changes(value=paren(base.node)), False, "invariant")
    if attr in ("real", "imag"):
        return Lifted(node.with_changes(value=paren(base.node)), True, "tensor", fresh=False)
    raise LiftError(f"attribute `.{attr}` of a loop element")


def _index_parts(node: cst.Subscript, scope: LiftScope) -> tuple[str, tuple[cst.BaseSlice, ...]] | None:
    """`x[i][j]` as ("x", (i, j)); None when a pattern's rule lifts an inner `x[i][None]`
    itself: the outer index then applies to what the rule made of it."""
    inner = node.value
    while isinstance(inner, cst.Subscript):
        if scope.rule(inner) is not None:
            return None
        inner = inner.value
    return flatten_subscript(node)


def _lift_subscript(node: cst.Subscript, scope: LiftScope) -> Lifted:
    ruled = scope.rule(node)
    if ruled is not None:
        return ruled
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    dom = scope.domain
    flat = _index_parts(node, scope)
    if flat is not None and dom.index is not None:
        base, parts = flat
        first = parts[0]
        if isinstance(first, cst.Index) and isinstance(first.value, cst.Name) and first.value.value == dom.index:
            if base.split(".")[0] in scope.loop_names:
                raise LiftError(f"`{code(node)}` indexes an array bound in the loop")
            rest = parts[1:]
            for p in rest:
                if not _unbatched(p, scope):
                    raise LiftError(f"`{code(node)}` indexes with more than one loop variable")
            whole = _whole_array(base, scope)
            if not rest:
                return Lifted(whole, True, "tensor", fresh=False)
            sl = [cst.SubscriptElement(cst.Slice(lower=None, upper=None))] + [
                cst.SubscriptElement(p) for p in rest]
            return Lifted(cst.Subscript(value=paren(whole), slice=_commas(sl)), True, "tensor", fresh=False)
        if any(not _unbatched(p, scope) for p in parts):
            # x[i - 1], x[idx[i]], x[j, i]: shifted, gathered or transposed reads
            if not (isinstance(node.value, (cst.Name, cst.Attribute)) and node.value is not None
                    and _lift_head_is_element(node, scope)):
                raise LiftError(f"`{code(node)}` is not a plain `x[i]` read")
    # element[k]: index into each element with a loop-invariant index
    value = lift(node.value, scope)
    if value.kind != "tensor" or not value.batched:
        raise LiftError(f"cannot lift `{code(node)}`")
    for el in node.slice:
        if not _unbatched(el.slice, scope):
            raise LiftError(f"`{code(node)}` indexes a loop element with a loop variable")
    sl = [cst.SubscriptElement(cst.Slice(lower=None, upper=None))] + [
        cst.SubscriptElement(el.slice) for el in node.slice]
    # Ellipsis would swallow the new leading dimension into `...`
    if any(isinstance(el.slice, cst.Index) and isinstance(el.slice.value, cst.Ellipsis) for el in node.slice):
        raise LiftError(f"`{code(node)}` indexes with `...`")
    return Lifted(cst.Subscript(value=paren(value.node), slice=_commas(sl)), True, "tensor", fresh=False)


def _lift_head_is_element(node: cst.Subscript, scope: LiftScope) -> bool:
    head = node.value
    return isinstance(head, cst.Name) and (head.value in scope.elements or head.value in scope.temps)


def _commas(elements: list[cst.SubscriptElement]) -> list[cst.SubscriptElement]:
    return [
        e.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) if i < len(elements) - 1 else e
        for i, e in enumerate(elements)
    ]


def _whole_array(base: str, scope: LiftScope) -> cst.BaseExpression:
    """`x` for `x[i]`; `x[:n]` when the loop walks only a prefix whose length is `n`."""
    dom = scope.domain
    scope.walk(base)
    if base in dom.arrays:
        return scope.expr(base)
    if dom.arrays:
        # range(len(x)) reading y[i] reads y's first len(x) rows; the whole `y` equals them
        # only when the lengths match, which the verifier's inputs assume: say so
        scope.assumptions.append(f"len({base}) == len({dom.arrays[0]})")
        return scope.expr(base)
    if not _never_negative(dom.extent):
        # range(n) with n < 0 runs zero times, but `y[:n]` drops rows from the end
        raise LiftError(f"`range({dom.extent})` may have a negative bound")
    return scope.expr(f"{base}[:{dom.extent}]")


def _never_negative(extent: str) -> bool:
    node = cst.parse_expression(extent)
    if isinstance(node, cst.Integer):
        return True
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "len":
        return True
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "size":
        return True
    return isinstance(node, cst.Subscript) and isinstance(node.value, cst.Attribute) and node.value.attr.value == "shape"


def _lift_unary(node: cst.UnaryOperation, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    inner = lift(node.expression, scope)
    op = node.operator
    if isinstance(op, cst.Not):
        if not is_predicate(node.expression):
            raise LiftError(f"`not` of a non-comparison `{code(node.expression)}`")
        return Lifted(cst.UnaryOperation(cst.BitInvert(), paren(inner.node)), True, "bool")
    if isinstance(op, cst.BitInvert) and inner.kind in ("int", "bool"):
        raise LiftError("`~` on a Python number")
    return Lifted(node.with_changes(expression=_fit(node.expression, inner.node)), True, inner.kind)


def is_predicate(node: cst.BaseExpression) -> bool:
    """A comparison (not in/is), or and/or/not of comparisons: a bool per element."""
    if isinstance(node, cst.Comparison):
        return all(not isinstance(t.operator, (cst.In, cst.NotIn, cst.Is, cst.IsNot)) for t in node.comparisons)
    if isinstance(node, cst.BooleanOperation):
        return is_predicate(node.left) and is_predicate(node.right)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
        return is_predicate(node.expression)
    return False


def _note_invariant_operands(operands: list[Lifted], scope: LiftScope) -> None:
    """`v * w` per element is an outer product when `w` has more dimensions than `v`;
    batched, `x * w` aligns `w` with the trailing dimensions instead. Say so."""
    if not any(o.batched and o.kind == "tensor" for o in operands):
        return
    for o in operands:
        if o.kind == "invariant" and isinstance(o.node, (cst.Name, cst.Attribute, cst.Subscript)):
            scope.assumptions.append(f"`{code(o.node)}` is a number or has no more dimensions than one element")


def _lift_binary(node: cst.BinaryOperation, scope: LiftScope) -> Lifted:
    if isinstance(node.operator, cst.MatrixMultiply):
        ruled = scope.rule(node)
        if ruled is not None:
            return ruled
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    if isinstance(node.operator, cst.MatrixMultiply):
        raise LiftError("`@` inside an elementwise body")
    left, right = lift(node.left, scope), lift(node.right, scope)
    kind = combine_kinds(left, right, f"`{code(node)}`")
    _note_invariant_operands([left, right], scope)
    op = node.operator
    if kind == "float" and not isinstance(op, _FLOAT_OPS):
        raise LiftError(f"operator in `{code(node)}` on Python floats")
    if kind in ("int", "bool"):
        if not isinstance(op, _INT_OPS):
            # int / int is a float64 in Python but float32 for int64 tensors
            raise LiftError(f"`{code(node)}` on Python ints has no exact tensor twin")
        kind = "int"
    if kind == "invariant":
        kind = "tensor"
    return Lifted(node.with_changes(left=_fit(node.left, left.node), right=_fit(node.right, right.node)), True, kind)


def _lift_comparison(node: cst.Comparison, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    for t in node.comparisons:
        if isinstance(t.operator, (cst.In, cst.NotIn, cst.Is, cst.IsNot)):
            raise LiftError(f"`{code(node)}` uses in/is")
    operands = [node.left] + [t.comparator for t in node.comparisons]
    lifted = [lift(o, scope) for o in operands]
    kind = lifted[0]
    for other in lifted[1:]:
        combine_kinds(kind, other, f"`{code(node)}`")
    out_kind = "tensor" if any(x.kind == "tensor" for x in lifted) else "bool"
    parts = []
    for k, t in enumerate(node.comparisons):
        parts.append(cst.Comparison(left=_fit(operands[k], lifted[k].node),
                                    comparisons=[t.with_changes(comparator=_fit(operands[k + 1], lifted[k + 1].node))]))
    # `0 < x < 1` is `(0 < x) and (x < 1)`: batched with `&`
    result: cst.BaseExpression = parts[0]
    for p in parts[1:]:
        result = cst.BinaryOperation(left=paren(result), operator=cst.BitAnd(
            whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")),
            right=paren(p))
    if len(parts) == 1:
        result = result.with_changes(lpar=node.lpar, rpar=node.rpar)
    return Lifted(result, True, out_kind)


def _lift_boolean(node: cst.BooleanOperation, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    # `a and b` returns one of its operands: only on predicates is it `a & b`
    if not (is_predicate(node.left) and is_predicate(node.right)):
        raise LiftError(f"`{code(node)}` combines non-comparisons with and/or")
    left, right = lift(node.left, scope), lift(node.right, scope)
    op = cst.BitAnd if isinstance(node.operator, cst.And) else cst.BitOr
    kind = "tensor" if "tensor" in (left.kind, right.kind) else "bool"
    return Lifted(cst.BinaryOperation(left=paren(left.node), operator=op(
        whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")),
        right=paren(right.node)), True, kind)


def _lift_ifexp(node: cst.IfExp, scope: LiftScope) -> Lifted:
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    test = lift(node.test, scope)
    body, orelse = lift(node.body, scope), lift(node.orelse, scope)
    if not test.batched:
        # the same branch for every element: keep the conditional, lift the branches
        kind = combine_kinds(body, orelse, f"`{code(node)}`")
        return Lifted(node.with_changes(body=body.node, orelse=orelse.node), True, kind)
    if not is_predicate(node.test):
        raise LiftError(f"condition `{code(node.test)}` is not a comparison")
    kinds = {body.kind, orelse.kind} - {"const", "invariant"}
    if kinds != {"tensor"}:
        # a per-element Python number on one branch and a tensor on the other changes dtype
        raise LiftError(f"branches of `{code(node)}` are not both tensors")
    return Lifted(call(scope.torch_fn("where"), test.node, body.node, orelse.node), True, "tensor")


# --------------------------------------------------------------------------- calls


def _lift_args(node: cst.Call, scope: LiftScope, what: str) -> tuple[list[Lifted], dict[str, Lifted]]:
    pos: list[Lifted] = []
    kw: dict[str, Lifted] = {}
    for a in node.args:
        if a.star:
            raise LiftError(f"starred arguments in `{what}`")
        lifted = lift(a.value, scope)
        if a.keyword is None:
            pos.append(lifted)
        else:
            if a.keyword.value == "out":
                raise LiftError(f"`out=` in `{what}`")
            kw[a.keyword.value] = lifted
    return pos, kw


def _rebuild(node: cst.Call, func: cst.BaseExpression, pos: list[Lifted], kw: dict[str, Lifted]) -> cst.Call:
    args = []
    it = iter(pos)
    for a in node.args:
        value = next(it).node if a.keyword is None else kw[a.keyword.value].node
        args.append(a.with_changes(value=value))
    return node.with_changes(func=func, args=args)


def _tensor_result(node: cst.Call, pos, kw, what: str, func: cst.BaseExpression, scope: LiftScope) -> Lifted:
    for x in [*pos, *kw.values()]:
        if x.kind in ("float", "int", "bool"):
            raise LiftError(f"`{what}` on a per-element Python number")
    _note_invariant_operands([*pos, *kw.values()], scope)
    return Lifted(_rebuild(node, func, pos, kw), True, "tensor")


def _lift_call(node: cst.Call, scope: LiftScope) -> Lifted:
    ruled = scope.rule(node)
    if ruled is not None:
        return ruled
    if _unbatched(node, scope):
        return Lifted(node, False, "invariant")
    info = scope.info
    qual = info.qualname(node.func)
    what = code(node.func)
    if qual is not None:
        return _lift_qualified(node, qual, scope)
    builtin = info.builtin_name(node.func)
    if builtin is not None and builtin not in scope.loop_names:
        return _lift_builtin(node, builtin, scope)
    if isinstance(node.func, cst.Attribute):
        return _lift_method(node, scope)
    raise LiftError(f"unknown call `{what}`")


def _lift_qualified(node: cst.Call, qual: str, scope: LiftScope) -> Lifted:
    what = code(node.func)
    module, _, name = qual.rpartition(".")
    pos, kw = _lift_args(node, scope, what)
    if module == "torch" and name in _TORCH_ELEMENTWISE:
        return _tensor_result(node, pos, kw, what, node.func, scope)
    if module == "torch.special" and name in _SPECIAL:
        return _tensor_result(node, pos, kw, what, node.func, scope)
    if module == "torch.nn.functional" and name in FUNCTIONAL:
        if "inplace" in kw:
            raise LiftError(f"`inplace=` in `{what}`")
        return _tensor_result(node, pos, kw, what, node.func, scope)
    if module == "math" and (name in _MATH or name in _MATH_TO_INT):
        # math.* converts its arguments to Python float (float64) and returns a float
        args = []
        for p in pos:
            if p.kind in ("const", "invariant"):
                args.append(p)
            elif p.kind == "float":
                args.append(p)
            else:
                args.append(Lifted(method(p.node, "double"), True, "float"))
        if kw:
            raise LiftError(f"keywords in `{what}`")
        torch_name = _MATH.get(name) or _MATH_TO_INT[name]
        out = call(scope.torch_fn(torch_name), *[a.node for a in args])
        if name in _MATH_TO_INT:
            return Lifted(method(out, "long"), True, "int")
        return Lifted(out, True, "float")
    raise LiftError(f"unknown call `{what}`")


def _lift_builtin(node: cst.Call, name: str, scope: LiftScope) -> Lifted:
    pos, kw = _lift_args(node, scope, name)
    if kw:
        raise LiftError(f"keywords in `{name}(...)`")
    if name == "abs" and len(pos) == 1:
        return Lifted(method(pos[0].node, "abs"), True, pos[0].kind if pos[0].batched else "tensor")
    if name in ("max", "min") and len(pos) == 2:
        a, b = pos
        kind = combine_kinds(a, b, f"`{name}(...)`")
        if kind in ("const", "invariant"):
            kind = "tensor"
        # max(a, b) returns b only when b > a (so max(nan, 1) is nan): the same select
        cmp = cst.GreaterThan() if name == "max" else cst.LessThan()
        test = cst.Comparison(left=paren(b.node), comparisons=[cst.ComparisonTarget(
            operator=cmp.with_changes(whitespace_before=cst.SimpleWhitespace(" "),
                                      whitespace_after=cst.SimpleWhitespace(" ")),
            comparator=paren(a.node))])
        # max(x, 0.0) yields the tensor x or the float 0.0: a list mixing both has no single dtype rule
        if a.kind != b.kind:
            raise LiftError(f"`{name}(...)` mixes a loop element with a constant")
        return Lifted(call(scope.torch_fn("where"), test, b.node, a.node), True, kind)
    if name == "float" and len(pos) == 1:
        return Lifted(method(pos[0].node, "double"), True, "float")
    if name == "int" and len(pos) == 1:
        return Lifted(method(pos[0].node, "long"), True, "int")
    if name == "bool" and len(pos) == 1:
        return Lifted(exprs.compare(pos[0].node, ("!=", "0")), True, "bool")
    if name == "round" and len(pos) in (1, 2) and pos[0].kind == "tensor":
        extra = {"decimals": pos[1].node} if len(pos) == 2 else {}
        return Lifted(call(scope.torch_fn("round"), pos[0].node, **extra), True, "tensor")
    if name == "pow" and len(pos) == 2:
        kind = combine_kinds(pos[0], pos[1], "`pow(...)`")
        return Lifted(cst.BinaryOperation(paren(pos[0].node), cst.Power(), paren(pos[1].node)), True,
                      "tensor" if kind in ("const", "invariant") else kind)
    raise LiftError(f"builtin `{name}(...)` per element")


def _lift_method(node: cst.Call, scope: LiftScope) -> Lifted:
    func = node.func
    assert isinstance(func, cst.Attribute)
    name = func.attr.value
    obj = lift(func.value, scope)
    if obj.kind != "tensor":
        raise LiftError(f"method `.{name}()` on a per-element Python value")
    pos, kw = _lift_args(node, scope, f".{name}")
    new_func = func.with_changes(value=paren(obj.node))
    if name in _IDENTITY_METHODS and not pos and not kw:
        fresh = _IDENTITY_METHODS[name] or obj.fresh
        return Lifted(node.with_changes(func=new_func), obj.batched, "tensor", fresh=fresh)
    if name in _CASTS:
        if any(p.batched for p in [*pos, *kw.values()]):
            raise LiftError(f"`.{name}()` with per-element arguments")
        if name == "to" and not (pos or kw):
            raise LiftError("`.to()` without arguments")
        # x.to(dtype) may return x itself: a copy keeps the output independent
        return Lifted(_rebuild(node, new_func, pos, kw), True, "tensor", fresh=False)
    if name == "item" and not pos and not kw:
        raise LiftError("`.item()` per element (its Python type depends on the dtype): "
                        "use float(x) or keep the tensor")
    if name in _METHODS:
        return _tensor_result(node, pos, kw, f".{name}", new_func, scope)
    raise LiftError(f"unknown method `.{name}()`")


# --------------------------------------------------------------------------- statements


def lift_temps(statements, scope: LiftScope) -> list[str]:
    """Lift `t = expr` statements of a body in order; returns the vectorized statements.

    Each temporary becomes a whole-array temporary of the same name, so later
    statements that use it refer to the batched value.
    """
    out: list[str] = []
    for stmt in statements:
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            raise LiftError("compound statement in the loop body")
        small = stmt.body[0]
        if not (isinstance(small, cst.Assign) and len(small.targets) == 1
                and isinstance(small.targets[0].target, cst.Name)):
            raise LiftError(f"statement `{code(small)}` in the loop body")
        name = small.targets[0].target.value
        value = lift(small.value, scope)
        if not value.batched:
            raise LiftError(f"`{name}` does not depend on the loop")
        scope.temps[name] = Lifted(cst.Name(name), True, value.kind, fresh=value.fresh)
        out.append(f"{name} = {value.code}")
    return out


def as_operand(text: str) -> str:
    """`text` ready to stand where a call stood (`.sum()` may follow): parenthesised unless primary."""
    return exprs.operand(text)
