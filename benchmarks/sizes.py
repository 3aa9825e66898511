"""Per-fixture sizes for the speedup suite, where growing every free dimension together is
not what the loop meets in practice (a 64x64x64 matmul, a 3x3 kernel over a 128x128 image).

Keys are `<pattern>/<case>` or `<pattern>/<case>::<function>`; values bind dimensions by
the names the verifier's plan gives them (hint names like `n`, or `*` for every free
dimension). Without an entry a fixture grows every free dimension from 8, doubling, until
its largest input holds `TARGET_ELEMENTS` or one call of the loop takes `MAX_LOOP_S`.
"""

TARGET_ELEMENTS = 50_000  # doubling from 8 lands on 65,536 for 1-D and 2-D inputs
MAX_LOOP_S = 1.0  # a slower loop is measured at the size it reached

SIZES: dict[str, dict[str, int]] = {
    # triple loops: a 64x64x64 product is 262,144 multiply-adds in Python
    "matmul": {"*": 64},
    "einsum": {"*": 16},
    # sliding windows: a small kernel over a larger signal
    "window": {"*": 64},
}
