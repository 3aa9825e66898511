"""Usage facts read from a function body: the evidence input generation starts from."""

from loopvec.analysis.usage import VALUE, usage_facts


def facts(src):
    return usage_facts(src)


def test_nested_indexing_gives_rank_two():
    f = facts("def f(a):\n    for i in range(len(a)):\n        for j in range(len(a[i])):\n            a[i][j]\n")
    assert f.of("a").rank == 2 and f.of("a").kind == "tensor"


def test_tuple_indexing_gives_rank_two():
    f = facts("def f(a, n):\n    for i in range(n):\n        for j in range(n):\n            a[i, j]\n")
    assert f.of("a").rank == 2


def test_shape_unpacking_fixes_the_rank():
    f = facts("def f(image):\n    B, C, H, W = image.shape\n    return B\n")
    assert f.of("image").rank == 4 and f.of("image").exact_rank


def test_a_shared_loop_index_makes_leading_dims_equal():
    f = facts("def f(x, y, out):\n    for i in range(len(x)):\n        out[i] = x[i] + y[i]\n")
    assert (("out", 0), ("x", 0), ("y", 0)) in f.equal


def test_matmul_indexing_ties_inner_dims():
    src = """
def f(A, B, C):
    for i in range(A.shape[0]):
        for j in range(B.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]
"""
    f = facts(src)
    assert (("A", 1), ("B", 0)) in f.equal
    assert (("A", 0), ("C", 0)) in f.equal and (("B", 1), ("C", 1)) in f.equal


def test_zip_ties_leading_dims():
    f = facts("def f(a, b):\n    for u, v in zip(a, b):\n        u + v\n")
    assert (("a", 0), ("b", 0)) in f.equal


def test_iterating_rows_gives_rank_at_least_one():
    f = facts("def f(X):\n    for row in X:\n        for v in row:\n            v * 2\n")
    assert f.of("X").rank == 2 and f.of("X").iterated


def test_a_tensor_used_as_an_index_holds_positions():
    f = facts("def f(data, idx):\n    for i in range(len(idx)):\n        data[idx[i]]\n")
    assert f.of("idx").index_into == (("data", 0),)


def test_an_int_bounding_a_range_is_tied_to_the_dim_it_indexes():
    f = facts("def f(x, n):\n    for i in range(n):\n        x[i]\n")
    assert f.of("n").kind == "int" and dict(f.bounds)["n"] == (("x", 0),)


def test_a_scalar_operand_is_a_float():
    f = facts("""
def f(x, threshold, scale):
    for i in range(len(x)):
        if x[i] > threshold:
            x[i] = x[i] * scale
""")
    assert f.of("threshold").kind == "float" and f.of("scale").kind == "float"


def test_a_written_argument_is_an_output():
    f = facts("def f(x, res):\n    for i in range(len(x)):\n        res[i] = x[i]\n")
    assert f.of("res").written and not f.of("x").written


def test_a_truth_tested_tensor_is_a_mask():
    f = facts("def f(x, m):\n    for i in range(len(x)):\n        if m[i]:\n            x[i]\n")
    assert f.of("m").elem_truth and not f.of("m").arith


def test_integer_arithmetic_on_elements_is_noticed():
    f = facts("def f(a, out):\n    for i in range(len(a)):\n        out[i] = a[i] // 2\n")
    assert f.of("a").int_ops


def test_a_block_operand_is_recorded_with_the_axes_indexed_away():
    f = facts("def f(image, mask):\n    for b in range(len(image)):\n        image[b] * mask\n")
    assert ("mask", "image", (0,)) in f.operands


def test_a_constant_index_sets_a_minimum_size():
    f = facts("def f(p):\n    return p[2]\n")
    assert dict(f.min_sizes)[("p", 0)] == 3


def test_methods_leave_out_self():
    f = usage_facts("def m(self, x):\n    return x[0]\n", skip_first=True)
    assert f.params == ("x",)


def test_a_called_parameter_is_a_callable_and_its_row_argument_keeps_an_axis():
    f = facts("def f(model, x):\n    return torch.cat([model(x[i].unsqueeze(0)) for i in range(len(x))])\n")
    assert f.of("model").kind == "callable"
    assert f.of("x").rank == 2


def test_an_index_into_a_local_sized_by_an_int_parameter_is_bounded_by_it():
    f = facts("""
def f(labels, C):
    counts = torch.zeros(C)
    for i in range(len(labels)):
        counts[labels[i]] += 1
    return counts
""")
    assert f.of("labels").index_into == (("C", VALUE),)
    assert f.sizes == ("C",) and f.of("C").kind == "int"


def test_an_index_into_a_local_sized_like_a_parameter_dim_is_bounded_by_that_dim():
    f = facts("""
def f(x, idx):
    out = x.new_zeros(len(x), 3)
    for v in idx:
        out[v, 0] += 1
    return out
""")
    assert f.of("idx").index_into == (("x", 0),)


def test_a_shifted_size_bounds_nothing():
    f = facts("def f(x, idx):\n    out = torch.zeros(len(x) - 1)\n    for v in idx:\n        out[v] = 1\n")
    assert f.of("idx").index_into == (None,)


def test_a_loop_over_range_of_the_size_is_not_tied_to_it():
    # first_n-like: n may be below len(x); the allocation's size must not tie them.
    f = facts("def f(x, n):\n    out = torch.zeros(n)\n    for i in range(n):\n        out[i] = x[i]\n")
    assert dict(f.bounds)["n"] == (("x", 0),) and f.sizes == ()


def test_a_fill_value_is_a_number_and_the_size_an_int():
    f = facts("def f(x, n, v):\n    out = torch.full((n,), v)\n    for i in range(n):\n        out[i] += x[i]\n")
    assert f.of("v").kind == "float" and f.of("n").kind == "int"
