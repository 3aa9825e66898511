"""What torch functions and tensor methods return, by dtype class.

The rules patterns use to tell whether two values share a dtype (`where`'s branches),
whether a value is certainly floating (`reduction`'s accumulators), and what a sweep's
per-parameter tensors are. Dtypes are names, as `loopvec.verify.specs` spells them
(`"float32"`); nothing here imports torch.
"""

from __future__ import annotations

import libcst as cst

# floating for every input they accept: integer and bool inputs give the default float dtype
FLOATING_FUNCTIONS = frozenset({
    "sin", "cos", "tan", "asin", "acos", "atan", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "asinh", "acosh", "atanh", "arcsinh", "arccosh", "arctanh", "exp", "exp2", "expm1",
    "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "sigmoid", "erf", "erfc", "erfinv",
    "lgamma", "digamma", "reciprocal", "logit", "sinc", "i0", "expit", "ndtr", "ndtri",
    "log_ndtr", "entr", "i0e", "i1", "i1e", "logsigmoid", "softplus", "gelu", "silu", "mish",
    "elu", "selu", "celu", "softsign", "tanhshrink",
})
# the input's dtype (relu6 and hardtanh included: they clamp integers as integers)
KEEP_FUNCTIONS = frozenset({
    "abs", "absolute", "neg", "negative", "positive", "floor", "ceil", "round", "trunc", "fix", "sign",
    "relu", "clone", "detach", "contiguous", "frac", "nan_to_num", "conj", "square", "relu6", "hardtanh",
    "leaky_relu", "hardshrink", "softshrink", "threshold",
})
# bool
BOOL_FUNCTIONS = frozenset({
    "isnan", "isinf", "isfinite", "isposinf", "isneginf", "signbit", "isreal", "logical_not", "logical_and",
    "logical_or", "logical_xor", "eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less",
    "less_equal", "not_equal", "isclose",
})
# reductions whose result is floating (they reject integer inputs)
FLOATING_REDUCTIONS = frozenset({"mean", "std", "var", "norm", "softmax", "log_softmax"})
# binary functions and the operator whose type promotion they follow (`/`: floating);
# None: a promotion of its own (float_power is float64 or complex128)
PROMOTES_LIKE = {
    "add": cst.Add, "sub": cst.Subtract, "subtract": cst.Subtract, "mul": cst.Multiply, "multiply": cst.Multiply,
    "maximum": cst.Add, "minimum": cst.Add, "fmax": cst.Add, "fmin": cst.Add, "remainder": cst.Modulo,
    "fmod": cst.Modulo, "floor_divide": cst.FloorDivide, "div": cst.Divide, "divide": cst.Divide,
    "true_divide": cst.Divide, "atan2": cst.Divide, "arctan2": cst.Divide, "hypot": cst.Divide,
    "logaddexp": cst.Divide, "logaddexp2": cst.Divide, "xlogy": cst.Divide, "copysign": cst.Divide,
    "pow": cst.Power, "float_power": None,
}
# `x.float()`: the dtype each zero-argument cast method gives
CAST_METHODS = {"float": "float32", "double": "float64", "half": "float16", "bfloat16": "bfloat16",
                "long": "int64", "int": "int32", "short": "int16", "byte": "uint8", "char": "int8",
                "bool": "bool", "cfloat": "complex64", "cdouble": "complex128"}
# `torch.<name>` spellings of dtypes (`torch.int` is int32, `torch.float` float32)
TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "int64": "int64",
    "long": "int64", "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "bool": "bool", "complex64": "complex64",
    "complex128": "complex128", "cfloat": "complex64", "cdouble": "complex128",
}
# the floating dtypes, by name: a Python float meets them without changing their dtype
FLOATING_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64", "complex64", "complex128"})
