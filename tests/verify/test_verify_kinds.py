"""Kinds: a parameter is a tensor only with evidence; without it the verifier also draws
the other kinds of value the body accepts, and a rewrite that diverges on one is unsafe."""

import textwrap

import pytest

from loopvec.analysis.usage import usage_facts
from loopvec.report import finding_line
from loopvec.runner import RunOptions, apply
from loopvec.verify import Candidate, Impl, Verdict, VerifySettings, verify_candidates
from loopvec.verify.kinds import Kind, judged, kinds_to_try
from loopvec.verify.plan import Param, build_plan

SETTINGS = VerifySettings(max_examples=30, timeout_s=60.0, workers=2)

# ---------------------------------------------------------------------------- evidence

EVIDENCE = [
    ("def f(xs):\n    return xs.shape[0]\n", True),
    ("def f(xs):\n    return xs.dim()\n", True),
    ("def f(xs):\n    return xs.ndim\n", True),
    ("def f(xs):\n    return xs.size(0)\n", True),
    ("def f(xs):\n    return xs.to(0)\n", True),
    ("def f(xs):\n    return xs.dtype\n", True),
    ("def f(xs):\n    return xs.sum(1)\n", True),
    ("def f(xs):\n    return xs.float()\n", True),
    ("def f(xs):\n    return xs[0, 1]\n", True),
    ("def f(xs):\n    return xs[None]\n", True),
    ("def f(xs, w):\n    return xs @ w\n", True),
    ("def f(xs, w):\n    return torch.matmul(xs, w)\n", True),
    ("def f(xs):\n    return torch.fft.fft(xs)\n", True),
    ("def f(xs):\n    return F.relu(xs)\n", True),
    ("def f(xs):\n    return torch.nn.functional.relu(xs)\n", True),
    ("def f(m, a, b):\n    return torch.where(m, a, b)\n", True),
    ("def f(xs):\n    for x in xs:\n        x * 2\n", False),
    ("def f(xs):\n    for i in range(len(xs)):\n        xs[i] * 2\n", False),
    ("def f(xs):\n    return xs[1:]\n", False),
    ("def f(xs):\n    return torch.stack(xs)\n", False),
    ("def f(xs):\n    return torch.cat(xs)\n", False),
    ("def f(xs):\n    return torch.tensor(xs)\n", False),
    ("def f(xs):\n    return torch.LongTensor(xs)\n", False),
    ("def f(xs):\n    return np.sum(xs)\n", False),
    ("def f(xs):\n    return isinstance(xs, torch.Tensor) or torch.is_tensor(xs)\n", False),
    ("def f(xs):\n    xs.append(1)\n", False),
    ("def f(xs):\n    for x in xs:\n        x.abs()\n", False),
]


@pytest.mark.parametrize("source, evidence", EVIDENCE, ids=[
    "shape", "dim()", "ndim", "size(0)", "to(...)", "dtype", "a reduction over a dim", "float()",
    "a tuple index", "a new axis", "matmul operator", "torch.matmul", "torch.fft", "F.relu",
    "torch.nn.functional.relu", "every place of torch.where",
    "iterating is no evidence", "len and one index are no evidence", "a slice is no evidence",
    "torch.stack takes a list", "torch.cat takes a list", "torch.tensor takes a list", "a legacy constructor takes a list",
    "numpy takes a list", "an isinstance test is a guard, not evidence", "a list method is no evidence",
    "a tensor use of an item is no evidence for the parameter",
])
def test_a_use_only_a_tensor_supports_is_evidence(source, evidence):
    facts = usage_facts(source)
    assert facts.of(facts.params[0]).tensor_only == evidence


def test_every_argument_of_torch_where_is_a_tensor_but_only_the_first_of_other_torch_functions():
    where = usage_facts("def f(m, a, b):\n    return torch.where(m, a, b)\n")
    assert all(u.tensor_only for u in where.usage)
    pad = usage_facts("def f(x, widths):\n    return torch.nn.functional.pad(x, widths)\n")
    assert pad.of("x").tensor_only and not pad.of("widths").tensor_only


def test_a_tensor_use_of_an_item_says_the_items_are_tensors():
    usage = usage_facts("def f(xs):\n    for x in xs:\n        x.abs().sum()\n").of("xs")
    assert usage.item_tensor and not usage.tensor_only


# ---------------------------------------------------------------------------- which kinds


def _kinds(source: str, annotations: dict[str, str] | None = None) -> list[tuple[str, str, bool]]:
    facts = usage_facts(source)
    params = [Param(name, (annotations or {}).get(name)) for name in facts.params]
    plan = build_plan(params, facts, {})
    return [(k.param, k.name, k.known) for k in kinds_to_try(plan, facts, params)]


LOOP_1D = "def f(xs):\n    for v in xs:\n        v * 2\n"
ITEMS = "def f(xs):\n    for x in xs:\n        x.abs().sum()\n"
ROWS = "def f(xs):\n    for i in range(len(xs)):\n        for j in range(len(xs[i])):\n            xs[i][j] * 2\n"


@pytest.mark.parametrize("source, annotations, expected", [
    (LOOP_1D, None, [("xs", "numbers", False), ("xs", "tuple", False), ("xs", "size", False),
                     ("xs", "tensors", False), ("xs", "numpy", False)]),
    (ITEMS, None, [("xs", "ragged", False), ("xs", "numbers", False), ("xs", "tuple", False),
                   ("xs", "size", False), ("xs", "tensors", False), ("xs", "numpy", False)]),
    (ROWS, None, [("xs", "ragged", False), ("xs", "tensors", False), ("xs", "numpy", False)]),
    (ITEMS, {"xs": "torch.Tensor"}, []),
    (ITEMS, {"xs": 'Float[Tensor, "n"]'}, []),
    ("def f(xs):\n    for i in range(xs.shape[0]):\n        xs[i] * 2\n", None, []),
    (ITEMS, {"xs": "list[torch.Tensor]"}, [("xs", "ragged", True)]),
    (ITEMS, {"xs": "Sequence[Tensor]"}, [("xs", "ragged", True)]),
    (ITEMS, {"xs": 'list[Float[Tensor, "n"]]'}, []),
], ids=[
    "a 1-D loop: lists of numbers and of 0-d tensors, tuples, sizes, numpy",
    "items used as tensors: ragged lists too",
    "2-D: lists of rows, ragged or not, and numpy; no flat sequences",
    "annotated a tensor: none",
    "annotated with jaxtyping: none",
    "evidence by use: none",
    "annotated a list of tensors: ragged lists, a failure if they diverge",
    "annotated a sequence of tensors: the same",
    "items whose sizes the annotation ties: none",
])
def test_the_kinds_tried_follow_the_evidence(source, annotations, expected):
    assert _kinds(source, annotations) == expected


def test_kinds_left_untried_at_the_time_limit_are_an_assumption_too():
    verdict = judged(Verdict("verified", "verified on 30 examples"), [], [Kind("xs", "numbers"), Kind("xs", "numpy")])
    assert verdict.kind_assumption == ("`xs` is a tensor (the other kinds of value it may hold were not tried "
                                       "before the time limit)")


# ---------------------------------------------------------------------------- judgement

TOTAL = '''\
import torch


def total(xs{annotation}):
    out = []
    for x in xs:
        out.append(x.abs().sum())
    return torch.stack(out)
'''
TOTAL_BY_SHAPE = '''\
import torch


def total(xs):
    out = []
    for i in range(xs.shape[0]):
        out.append(xs[i].abs().sum())
    return torch.stack(out)
'''
# exact on every tensor the loop accepts, not on a list
ROW_SUMS = "def total(xs):\n    return xs.abs().reshape(len(xs), -1).sum(1)\n"
ROW_SUMS_OF_LIST = "def total(xs):\n    return torch.stack(xs).abs().sum(1)\n"
SAME_LOOP = "def total(xs):\n    return torch.stack([x.abs().sum() for x in xs])\n"

DOUBLED = '''\
import torch


def doubled(vals):
    out = []
    for v in vals:
        out.append(v * 2)
    return torch.tensor(out)
'''
DOUBLED_REWRITE = "def doubled(vals):\n    return vals * 2 if len(vals) else torch.tensor([])\n"

VOLUME = '''\
import torch


def volume(shape):
    n = 1
    for d in shape:
        n *= d
    return n
'''
VOLUME_REWRITE = "def volume(shape):\n    return shape.prod() if len(shape) else 1\n"

SCALED = '''\
import torch


def scaled(x):
    out = torch.zeros(len(x))
    for i in range(len(x)):
        out[i] = x[i] * 2
    return out
'''
SCALED_REWRITE = "def scaled(x):\n    return (x * 2).to(torch.float32)\n"


def _candidate(tmp_path, name: str, module: str, qualname: str, rewrite: str) -> Candidate:
    path = tmp_path / f"{name}.py"
    path.write_text(module)
    return Candidate(Impl(str(path), qualname),
                     Impl(str(path), qualname, source=textwrap.dedent(rewrite), prelude="import torch"), key=name)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("kinds")
    cands = [
        _candidate(tmp_path, "unannotated", TOTAL.format(annotation=""), "total", ROW_SUMS),
        _candidate(tmp_path, "annotated", TOTAL.format(annotation=": torch.Tensor"), "total", ROW_SUMS),
        _candidate(tmp_path, "by_shape", TOTAL_BY_SHAPE, "total", ROW_SUMS),
        _candidate(tmp_path, "same_loop", TOTAL.format(annotation=""), "total", SAME_LOOP),
        _candidate(tmp_path, "list_of_tensors", TOTAL.format(annotation=": list[torch.Tensor]"), "total",
                   ROW_SUMS_OF_LIST),
        _candidate(tmp_path, "numbers", DOUBLED, "doubled", DOUBLED_REWRITE),
        _candidate(tmp_path, "sizes", VOLUME, "volume", VOLUME_REWRITE),
        _candidate(tmp_path, "numpy", SCALED, "scaled", SCALED_REWRITE),
    ]
    return {v.key: v for v in verify_candidates(cands, SETTINGS)}


def test_a_loop_over_an_unannotated_parameter_is_proved_only_if_it_is_a_tensor(verdicts):
    v = verdicts["unannotated"]
    assert v.status == "failed", v.message
    assert "on a list of tensors of unequal sizes the rewrite raises" in v.message
    assert "annotate it `xs: torch.Tensor` or run `loopvec record`" in v.message
    assert "xs = list of 2: [Tensor float32 [1]" in v.counterexample
    assert "AttributeError" in v.counterexample


@pytest.mark.parametrize("key", ["annotated", "by_shape"], ids=["evidence: an annotation", "evidence: xs.shape"])
def test_with_evidence_of_a_tensor_no_other_kind_is_drawn(verdicts, key):
    v = verdicts[key]
    assert v.status == "verified", v.message
    assert v.kind_assumption is None and v.counterexample is None


def test_a_rewrite_exact_on_the_other_kinds_assumes_nothing(verdicts):
    v = verdicts["same_loop"]
    assert v.status == "verified", v.message
    assert v.kind_assumption is None


def test_a_parameter_annotated_a_list_of_tensors_fails_on_a_ragged_list(verdicts):
    v = verdicts["list_of_tensors"]
    assert v.status == "failed", v.message
    assert "on a list of tensors of unequal sizes the rewrite raises RuntimeError: stack expects" in v.message
    assert v.kind_assumption is None


@pytest.mark.parametrize("key, kinds", [
    ("numbers", ["a list of numbers", "a tuple of ints", "a numpy array"]),
    ("sizes", ["a tuple of ints", "a torch.Size"]),
    ("numpy", ["a numpy array"]),
], ids=["a list of numbers", "a tuple or torch.Size of ints", "a numpy array"])
def test_each_other_kind_the_original_accepts_is_named(verdicts, key, kinds):
    v = verdicts[key]
    assert v.status == "failed", v.message
    for kind in kinds:
        assert kind in v.message
    assert v.counterexample is not None


# ---------------------------------------------------------------------------- tier

LOOP = '''\
import torch


def doubled(x):
    out = []
    for v in x:
        out.append(v * 3)
    return torch.stack(out)
'''


@pytest.mark.parametrize("unsafe", [False, True], ids=["by default", "with --unsafe"])
def test_a_rewrite_that_breaks_on_another_kind_is_never_written(tmp_path, unsafe):
    path = tmp_path / "m.py"
    path.write_text(LOOP)
    result = apply(RunOptions((str(path),), dry_run=True, unsafe=unsafe, verify=SETTINGS))
    (finding,) = result.findings
    assert finding.status == "failed-verification", finding.message
    assert "on a list of tensors of equal sizes" in finding.message
    assert "x = list of 2" in finding.counterexample
    assert not result.diffs