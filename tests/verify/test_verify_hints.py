"""Hints and annotations decide inputs before usage does."""

import pytest

from loopvec.analysis.usage import usage_facts
from loopvec.verify import VerifySettings
from loopvec.verify.plan import ListArg, ScalarArg, TensorArg, TupleArg, build_plan
from loopvec.verify.source import find_definition
from loopvec.verify.specs import CallableSpec, TensorSpec, parse_annotation, parse_hint_comment, parse_spec


def plan_of(cases, module, qualname, hints=None):
    d = find_definition((cases / module).read_text(), qualname)
    specs = {k: parse_spec(v) for k, v in {**(hints or {}), **d.hint_comment()}.items()}
    return build_plan(d.params(), usage_facts(d.node, d.skips_first), specs)


def test_hint_comment_is_split_into_specs():
    assert parse_hint_comment("def f(x, k):  # loopvec: shapes x=[n, 3]:int64 k=int") == {"x": "[n, 3]:int64", "k": "int"}


def test_hint_spec_grammar():
    assert parse_spec("[n,3]") == TensorSpec(("n", 3))
    assert parse_spec("[n]:uint8") == TensorSpec(("n",), ("uint8",))
    assert parse_spec("float") == parse_annotation("float")


def test_jaxtyping_annotation_is_read_as_text():
    assert parse_annotation('Float[Tensor, "b c h w"]') == TensorSpec(("b", "c", "h", "w"), ("float32", "float64"))
    assert parse_annotation('Int[torch.Tensor, "n"]').dtypes == ("int64", "int32")
    assert parse_annotation('Optional[Bool[Tensor, "n"]]') == TensorSpec(("n",), ("bool",))


def test_container_annotations():
    spec = parse_annotation("list[tuple[float, float]]")
    assert spec.item.items[0] == parse_annotation("float")


def test_def_line_hint_fixes_a_dimension(cases):
    plan = plan_of(cases, "annotated.py", "to_gray")
    img = dict(plan.args)["img"]
    dims = {d.name: d for d in plan.dims}
    assert isinstance(img, TensorArg) and (dims[img.dims[1]].low, dims[img.dims[1]].high) == (3, 3)
    assert dict(plan.sources)["img"] == "hint"


def test_jaxtyping_shape_string_drives_the_shape(cases):
    plan = plan_of(cases, "annotated.py", "to_gray_typed")
    assert plan.hint() == "# loopvec: shapes img=[n,3]"
    assert dict(plan.args)["img"].dtypes == ("float32", "float64")
    assert dict(plan.sources)["img"] == "annotation"


def test_list_of_pairs_annotation_gives_a_list_of_tuples(cases):
    plan = plan_of(cases, "annotated.py", "spread")
    centers = dict(plan.args)["centers"]
    assert isinstance(centers, ListArg) and isinstance(centers.item, TupleArg)
    assert dict(plan.args)["radius"] == ScalarArg("float")


def test_int_annotation_and_default(cases):
    plan = plan_of(cases, "annotated.py", "scaled")
    assert dict(plan.args)["k"] == ScalarArg("int")
    assert plan.hint() == "# loopvec: shapes x=[n] k=int"  # bias keeps its default


def test_candidate_hints_apply_when_the_def_line_has_none(cases):
    plan = plan_of(cases, "maps.py", "needs_rank_3", hints={"x": "[a,b,c]"})
    assert plan.hint() == "# loopvec: shapes x=[a,b,c]"


@pytest.fixture(scope="module")
def verdicts(rewrite, batch):
    gray = "def {name}(img):\n    return img @ torch.tensor([0.25, 0.5, 0.25], dtype=img.dtype)\n"
    cands = [
        rewrite("annotated.py", "to_gray", gray.format(name="to_gray"), key="hint comment"),
        rewrite("annotated.py", "to_gray_typed", gray.format(name="to_gray_typed"), key="jaxtyping"),
        rewrite(
            "annotated.py",
            "spread",
            "def spread(centers, radius):\n"
            "    c = torch.tensor(centers, dtype=torch.float32).reshape(-1, 2)\n"
            "    return c[:, 0] * radius + c[:, 1]\n",
            key="list of pairs",
        ),
        rewrite("annotated.py", "scaled", "def scaled(x, k, bias=0.5):\n    return x * k + bias\n", key="int and default"),
        rewrite("maps.py", "needs_rank_3", "def needs_rank_3(x):\n    return x.sum()\n", key="no hint"),
        rewrite(
            "maps.py", "needs_rank_3", "def needs_rank_3(x):\n    return x.sum()\n", key="hinted", hints=[("x", "[a,b,c]")]
        ),
    ]
    return batch("hints", cands, VerifySettings(max_examples=30))


@pytest.mark.parametrize("key", ["hint comment", "jaxtyping", "list of pairs", "int and default", "hinted"])
def test_hinted_and_annotated_functions_verify_on_every_example(verdicts, key):
    v = verdicts[key]
    assert v.status == "verified", v.message
    assert v.discarded == 0  # the original accepted every input: the shapes were right


def test_too_few_valid_inputs_is_unverifiable_and_suggests_a_hint(verdicts):
    v = verdicts["no hint"]
    assert v.status == "unverifiable"
    assert "ValueError: expected a 3-D tensor" in v.message
    assert v.hint == "# loopvec: shapes x=[n]"


def test_jaxtyping_variadic_dims_stay_variadic():
    assert parse_annotation('Float[Tensor, "*batch c"]').dims == ("*batch", "c")
    assert parse_annotation('Float[Tensor, "... c"]').dims == ("...", "c")
    assert parse_annotation('Float[Tensor, "*_ c"]').dims == ("...", "c")
    assert parse_annotation('Float[Tensor, "#n c"]').dims == ("n", "c")  # broadcastable: one dim


def test_variadic_dims_in_a_hint_round_trip(cases):
    assert parse_spec("[*batch, c]") == TensorSpec(("*batch", "c"))
    assert parse_spec("[..., 3]") == TensorSpec(("...", 3))
    plan = plan_of(cases, "annotated.py", "scale_last")
    assert plan.hint() == "# loopvec: shapes x=[*batch,c] w=[c]"
    assert [v.name for v in plan.variadics] == ["*batch"]


def test_module_and_callable_annotations_are_callables():
    for text in ("torch.nn.Module", "nn.Module", "Callable[[Tensor], Tensor]", "callable"):
        assert parse_annotation(text) == CallableSpec(), text
    assert parse_spec("callable") == CallableSpec()


def test_an_annotated_module_gets_a_stand_in(cases):
    plan = plan_of(cases, "annotated.py", "apply_rows_typed")
    assert plan.stand_ins == ("model",)
    assert plan.hint() == "# loopvec: shapes model=callable x=[n,m]"
