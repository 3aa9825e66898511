"""Per-fixture sizes for the speedup suite, where growing every free dimension together is
not what the loop meets in practice (a 64x64x64 matmul, a 3x3 kernel over a 128x128 image,
a sweep over tens of thresholds rather than tens of thousands).

Keys are `<pattern>`, `<pattern>/<case>` or `<pattern>/<case>::<function>`, the more
specific overriding the less. Values bind dimensions: by the name the verifier's plan
gives them (`n` from a `# loopvec: shapes x=[n]` hint), by argument and axis (`K.0`, the
first dimension of `K`; axis 0 of a list is its length), `lists` for every list's length,
or `*` for every free dimension. Without an entry a fixture grows every free dimension
from 8, doubling, until its largest input holds `TARGET_ELEMENTS` or one call of the loop
takes `MAX_LOOP_S`.
"""

TARGET_ELEMENTS = 50_000  # doubling from 8 lands on 65,536 for 1-D and 2-D inputs
MAX_LOOP_S = 1.0  # a slower loop is measured at the size it reached

SIZES: dict[str, dict[str, int]] = {
    # nested loops over every index: a 64x64x64 product is 262,144 multiply-adds in Python
    "matmul": {"*": 64},
    "matmul/matmul_batched_accumulate": {"*": 16},
    "einsum": {"*": 16},
    "einsum/einsum_channel_mix": {"*": 16, "input.0": 4, "input.2": 32, "input.3": 32},  # 4x16x32x32
    # sliding windows: a small kernel over a larger image
    "window": {"*": 64},
    "window/window_correlate2d": {"*": 128, "K.0": 3, "K.1": 3},
    "window/window_correlate_with_bias": {"*": 128, "K.0": 3, "K.1": 3},
    "window/window_batched_max_pool": {"X.0": 8, "X.1": 8, "X.2": 64, "X.3": 64},
    # 100 images of 128x128
    "batched_op/batched_op_fft2_images": {"n": 100, "h": 128, "w": 128},
    "batched_op/batched_op_spectrum_power": {"n": 100, "h": 128, "w": 128},
    # a sweep walks tens of parameters (thresholds, radii, centres) over a large tensor
    "sweep": {"lists": 64},
}
