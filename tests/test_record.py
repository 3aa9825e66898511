"""`loopvec record`: the kinds a real run passes, the hints they become, and a method that
only a recording makes verifiable (the sample project in `sample_project/`)."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from loopvec.cli import app
from loopvec.observed import (Kind, Record, Signature, attribute_constants, describe, hints, other_hints, read_record,
                              replay)
from loopvec.record import Recorder, merge, store, targets_of

SAMPLE = Path(__file__).resolve().parent / "sample_project"
runner = CliRunner()


# --------------------------------------------------------------------------- what a value is


@pytest.mark.parametrize("value, expected", [
    pytest.param(torch.zeros(4, 3), Kind("tensor", "float32", (4, 3), "cpu", True), id="a tensor"),
    pytest.param(torch.zeros(3, 4).t(), Kind("tensor", "float32", (4, 3), "cpu", False), id="a transposed tensor"),
    pytest.param(torch.Size([2, 5]), Kind("size", length=2, items=(Kind("int"),)), id="a torch.Size"),
    pytest.param(np.zeros((2, 3), dtype=np.int64), Kind("ndarray", "int64", (2, 3), "cpu", True), id="a numpy array"),
    pytest.param([1.5, 2.0], Kind("list", length=2, items=(Kind("float"), Kind("float"))), id="a list of floats"),
    pytest.param(None, Kind("none"), id="None"),
    pytest.param(3, Kind("int"), id="an int keeps no value"),
], )
def test_describe(value, expected):
    assert describe(value) == expected


def test_a_list_of_tensors_of_unequal_sizes_is_ragged():
    kind = describe([torch.zeros(2), torch.zeros(5)])
    assert kind.ragged and kind.length == 2
    assert kind.items == (Kind("tensor", "float32", (2,), "cpu", True), Kind("tensor", "float32", (5,), "cpu", True))
    assert not describe([torch.zeros(2), torch.ones(2)]).ragged


def test_a_module_is_named_by_its_class():
    kind = describe(torch.nn.ModuleList([torch.nn.Linear(2, 2)]))
    assert kind == Kind("module", cls="torch.nn.modules.container.ModuleList", length=1)


def test_an_attribute_keeps_its_scalar_value():
    assert describe(1e-5, keep_value=True) == Kind("float", value=1e-5)


# --------------------------------------------------------------------------- what a record says to the verifier


def _tensor(*shape, dtype="float32"):
    return Kind("tensor", dtype, shape, "cpu", True)


def _record(*calls):
    return Record("m.py", "C.f", {Signature(tuple(args.items()), tuple(attrs.items())): 1 for args, attrs in calls},
                  calls=len(calls))


def test_sizes_always_equal_share_one_name():
    rec = _record(({"x": _tensor(4)}, {"factors": _tensor(4)}))
    assert hints(rec) == (("x", "[n]:float32"), ("self.factors", "[n]:float32"))


def test_a_size_that_stayed_while_others_changed_is_kept():
    rec = _record(({"x": _tensor(4, 3)}, {}), ({"x": _tensor(6, 3)}, {}))
    assert hints(rec) == (("x", "[n,3]:float32"),)


def test_a_large_size_that_stayed_is_drawn_small_but_shared():
    rec = _record(({"x": _tensor(4, 768)}, {"w": _tensor(768, 2)}), ({"x": _tensor(6, 768)}, {"w": _tensor(768, 2)}))
    assert hints(rec) == (("x", "[n,m]:float32"), ("self.w", "[m,2]:float32"))


def test_sizes_zero_and_one_are_kept():
    rec = _record(({"x": _tensor(1, 5)}, {}))
    assert hints(rec) == (("x", "[1,n]:float32"),)


def test_the_most_frequent_kind_of_call_is_described():
    rec = _record(({"x": _tensor(4)}, {}), ({"x": _tensor(5)}, {}), ({"x": _tensor(2, dtype="int64")}, {}))
    assert hints(rec) == (("x", "[n]:float32"),)


@pytest.mark.parametrize("kind, spec", [
    pytest.param(describe([1.0, 2.0]), "list[float]", id="a list of floats"),
    pytest.param(describe([torch.zeros(3), torch.ones(3)]), 'list[Float32[Tensor, "_"]]', id="a list of tensors"),
    pytest.param(describe((1, 2)), "tuple[int, ...]", id="a tuple of ints"),
    pytest.param(describe(torch.Size([2, 3])), "tuple[int, ...]", id="a torch.Size"),
    pytest.param(describe(torch.nn.Linear(2, 2)), "callable", id="a module"),
])
def test_kinds_the_spec_grammar_states(kind, spec):
    assert hints(_record(({"v": kind}, {}))) == (("v", spec),)


@pytest.mark.parametrize("kind", [
    pytest.param(describe([torch.zeros(2), torch.zeros(5)]), id="a ragged list"),
    pytest.param(describe(np.zeros(3)), id="a numpy array"),
    pytest.param(describe(object()), id="another object"),
    pytest.param(describe(torch.nn.ModuleList([torch.nn.Linear(2, 2)])), id="a list of modules"),
])
def test_kinds_no_spec_states_get_no_hint(kind):
    assert hints(_record(({"v": kind}, {}))) == ()


def test_an_int_argument_that_changed_is_drawn_and_one_that_did_not_is_left_alone():
    calls = [({"x": _tensor(4), "dim": describe(1, keep_value=True), "k": describe(k, keep_value=True)}, {})
             for k in (2, 3)]
    assert hints(_record(*calls)) == (("x", "[n]:float32"), ("k", "int"))


def test_a_scalar_attribute_that_never_changed_is_a_constant():
    eps = describe(1e-5, keep_value=True)
    rec = _record(({"x": _tensor(4)}, {"eps": eps, "k": describe(2, keep_value=True)}),
                  ({"x": _tensor(5)}, {"eps": eps, "k": describe(3, keep_value=True)}))
    assert attribute_constants(rec) == {"eps": 1e-5}


# --------------------------------------------------------------------------- the tracer


MODULE = '''\
import torch


class Scaler:
    def __init__(self, factors, eps):
        self.factors = factors
        self.eps = eps

    def apply(self, x):
        out = []
        for i in range(x.shape[0]):
            out.append(x[i] * self.factors[i] + self.eps)
        return torch.stack(out)


class Twin:
    def __init__(self, factors, eps):
        self.factors = factors
        self.eps = eps

    def apply(self, x):
        out = []
        for i in range(x.shape[0]):
            out.append(x[i] * self.factors[i] + self.eps)
        return torch.stack(out)
'''


def test_the_tracer_records_arguments_attributes_and_a_sample(tmp_path):
    path = tmp_path / "scaler_mod.py"
    path.write_text(MODULE)
    targets = targets_of([(str(path), MODULE, ["Scaler.apply"])])
    assert [(t.qualname, t.method, t.attrs) for t in targets] == [("Scaler.apply", True, ("factors", "eps"))]
    out = tmp_path / "calls"
    out.mkdir()
    namespace = {}
    exec(compile(MODULE, str(path), "exec"), namespace)
    recorder = Recorder(str(out), targets)
    sys.setprofile(recorder.make_hook())
    try:
        namespace["Scaler"](torch.ones(3), 0.5).apply(torch.zeros(3))
        namespace["Scaler"](torch.ones(3), 0.5).apply(torch.zeros(3))  # the same signature again
        namespace["Twin"](torch.ones(2), 0.5).apply(torch.zeros(2))  # same bytecode, not a target
    finally:
        sys.setprofile(None)
    recorder.dump()
    [rec] = store(merge(str(out)), str(out), str(tmp_path / "cache"))
    assert rec.calls == 2
    assert list(rec.signatures.items()) == [(Signature(
        (("x", _tensor(3)),), (("factors", _tensor(3)), ("eps", Kind("float", value=0.5)))), 2)]
    assert len(rec.samples) == 1
    from loopvec.cache import observed_entry

    kept = replay(str(observed_entry(str(tmp_path / "cache"), str(path), "Scaler.apply")))
    assert kept.fixed == {"eps": 0.5}
    [sample] = kept.samples
    assert torch.equal(sample["x"], torch.zeros(3)) and torch.equal(sample["self.factors"], torch.ones(3))


def test_large_tensors_are_described_but_not_kept(tmp_path):
    path = tmp_path / "scaler_mod.py"
    path.write_text(MODULE)
    targets = targets_of([(str(path), MODULE, ["Scaler.apply"])])
    namespace = {}
    exec(compile(MODULE, str(path), "exec"), namespace)
    recorder = Recorder(str(tmp_path), targets)
    sys.setprofile(recorder.make_hook())
    try:
        namespace["Scaler"](torch.ones(20_000), 0.5).apply(torch.zeros(20_000))
    finally:
        sys.setprofile(None)
    [calls] = recorder.calls.values()
    assert calls.calls == 1 and calls.samples == []


def test_record_returns_the_commands_exit_code(tmp_path, monkeypatch):
    (tmp_path / "m.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["record", ".", "--", sys.executable, "-c", "import sys; sys.exit(3)"])
    assert result.exit_code == 3
    assert "m.py::Scaler.apply: not called" in result.output


def test_record_without_a_command_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["record", "."])
    assert result.exit_code == 2


# --------------------------------------------------------------------------- the sample project, end to end


def _apply(project):
    result = runner.invoke(app, ["apply", "--dry-run", "--no-cache", str(project)])
    return {line.split(":")[0]: line for line in result.output.splitlines() if line.startswith("samplepkg/")}


@pytest.mark.slow
def test_recording_the_projects_tests_makes_its_methods_verifiable(tmp_path, monkeypatch):
    project = tmp_path / "sample_project"
    shutil.copytree(SAMPLE, project, ignore=shutil.ignore_patterns(".loopvec_cache", "__pycache__"))
    monkeypatch.chdir(project)

    before = _apply(project)
    # without a recording the method runs on test doubles, and nothing says self.factors
    # is never a list, on which `x * self.factors` raises where the loop returned
    assert "Scaler.__init__ not called: on instances holding generated self.factors" in before["samplepkg/scaling.py"]
    assert "on a list of numbers the rewrite raises" in before["samplepkg/scaling.py"]
    assert before["samplepkg/scaling.py"].endswith("(failed-verification)")
    assert before["samplepkg/rows.py"].endswith("(failed-verification)")

    result = runner.invoke(app, ["record", ".", "--", sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                                 "tests"])
    assert result.exit_code == 0, result.output
    assert "samplepkg/scaling.py::Scaler.apply: 2 calls" in result.output

    after = _apply(project)
    # x and self.factors are 1-D of one length: `x * self.factors` is right
    assert "[elementwise]" in after["samplepkg/scaling.py"]
    assert after["samplepkg/scaling.py"].endswith("(verified)")
    assert "on observed inputs" in after["samplepkg/scaling.py"]
    # x is [n, 3], self.factors [n]: `x * self.factors` raises on what the tests pass
    assert "the elementwise rewrite was refuted" in after["samplepkg/rows.py"]
    assert "on observed inputs" in after["samplepkg/rows.py"]


class Config:
    def __init__(self, scale):
        self.scale = scale


class Model:
    def __init__(self, cfg):
        self.cfg = cfg

    def forward(self, x):
        return [v * self.cfg.scale for v in x]


def test_a_plain_config_object_is_kept_in_the_sample(tmp_path):
    path = Path(__file__)
    targets = targets_of([(str(path), path.read_text(), ["Model.forward"])])
    assert [t.attrs for t in targets] == [("cfg",)]
    out = tmp_path / "calls"
    out.mkdir()
    recorder = Recorder(str(out), targets)
    sys.setprofile(recorder.make_hook())
    try:
        Model(Config(2.0)).forward(torch.ones(2))
    finally:
        sys.setprofile(None)
    recorder.dump()
    [rec] = store(merge(str(out)), str(out), str(tmp_path / "cache"))
    assert dict(rec.signatures).popitem()[0].attrs == (("cfg", Kind("other", cls="test_record.Config")),)
    from loopvec.cache import observed_entry

    kept = replay(str(observed_entry(str(tmp_path / "cache"), str(path), "Model.forward")))
    assert isinstance(kept.fixed["cfg"], Config) and kept.fixed["cfg"].scale == 2.0


class Gains(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(n))


def test_a_module_instance_is_built_from_observed_attributes_without_init():
    from loopvec.verify.loading import bare_instance

    weight = torch.nn.Parameter(torch.arange(3.0))
    module = bare_instance(Gains, {"gain": weight, "eps": 0.5})
    assert isinstance(module, Gains) and module.eps == 0.5
    assert [name for name, _ in module.named_parameters()] == ["gain"]
    assert torch.equal(module.gain, weight) and module.gain is not weight  # a copy: a call may change it


TOTALS = '''\
import torch


def totals(xs):
    out = []
    for x in xs:
        out.append(x.sum())
    return torch.stack(out)
'''

DRIVE = '''\
import torch
from totals_mod import totals

totals([torch.ones(20000), torch.ones(7000)])  # too large to keep as samples
totals([torch.ones(5000), torch.ones(30000), torch.ones(100)])
'''


@pytest.mark.slow
def test_a_recorded_ragged_list_no_hint_states_still_gets_its_kind_tried(tmp_path, monkeypatch):
    (tmp_path / "totals_mod.py").write_text(TOTALS)
    (tmp_path / "drive.py").write_text(DRIVE)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["record", ".", "--", sys.executable, "drive.py"])
    assert result.exit_code == 0, result.output
    assert "(ragged)" in result.output and "samples kept" not in result.output
    [line] = [x for x in runner.invoke(app, ["apply", "--dry-run", "--no-cache", "totals_mod.py"]).output.splitlines()
              if x.startswith("totals_mod.py:")]
    # the tensors drawn for xs prove nothing about the lists it receives: refuted on them
    assert "(failed-verification)" in line and "on a list of tensors of unequal sizes" in line
    assert "on observed inputs" in line


def test_a_less_frequent_kind_of_call_gets_examples_too(tmp_path):
    from loopvec.cache import observed_entry, store_observed
    from loopvec.verify.check import check
    from loopvec.verify.types import Candidate, Impl, VerifySettings

    (tmp_path / "doubling.py").write_text(
        "import torch\n\n\ndef double(x):\n    out = []\n    for v in x:\n        out.append(v * 2)\n"
        "    return torch.tensor(out)\n")
    (tmp_path / "fast.py").write_text("import torch\n\n\ndef double(x):\n    return torch.as_tensor(x * 2)\n")
    tensors, floats = Signature((("x", _tensor(4)),)), Signature((("x", describe([1.0, 2.0])),))
    entry = observed_entry(str(tmp_path), str(tmp_path / "doubling.py"), "double")
    store_observed(entry, Record(str(tmp_path / "doubling.py"), "double", {tensors: 5, floats: 1}, calls=6))
    assert hints(read_record(str(entry))) == (("x", "[n]:float32"),)
    assert other_hints(read_record(str(entry))) == [(("x", "list[float]"),)]
    cand = Candidate(Impl(str(tmp_path / "doubling.py"), "double"), Impl(str(tmp_path / "fast.py"), "double"),
                     (("x", "[n]:float32"),), "k", str(entry))
    verdict = check(cand, VerifySettings(max_examples=30, device="cpu"))
    # `x * 2` repeats a list where the loop doubled its numbers
    assert verdict.status == "failed" and "on observed inputs" in verdict.message
    assert "x = [" in verdict.counterexample
