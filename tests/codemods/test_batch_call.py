"""batch_call: a model called per item (or per batch of one) becomes one call on the batch."""

import pytest

import fixture_cases
from loopvec.engine import plan_source
from loopvec.results import REWRITTEN
from loopvec.rewrite import SAFE, UNSAFE
from loopvec.runner import RunOptions, apply
from loopvec.verify.types import VerifySettings

PAIRS, NOOPS = fixture_cases.discover("batch_call")


def test_catalogue_is_complete():
    assert len(PAIRS) >= 6 and len(NOOPS) >= 4


@pytest.mark.parametrize("case", PAIRS, ids=str)
def test_rewrites_and_verifies(case):
    fixture_cases.check_pair("batch_call", case)


@pytest.mark.parametrize("case", NOOPS, ids=str)
def test_leaves_alone(case):
    fixture_cases.check_noop("batch_call", case)


def _planned(source: str):
    return plan_source("m.py", source, ("batch_call",)).planned


def _declines(source: str) -> str:
    plan = plan_source("m.py", source, ("batch_call",), show_declined=True)
    assert not plan.planned, [p.message for p in plan.planned]
    return " ".join(f.message for f in plan.declined)


PARAM_MODEL = """import torch


def predict(model, images):
    outputs = []
    for i in range(len(images)):
        outputs.append(model(images[i].unsqueeze(0)))
    return torch.cat(outputs)
"""


def test_a_model_passed_in_is_unsafe_and_names_its_assumption():
    [p] = _planned(PARAM_MODEL)
    assert p.safety == UNSAFE
    assert p.message.startswith("becomes `return model(images)`")
    assert "`model` treats batch rows independently (no BatchNorm in train mode, no dropout)" in p.assumptions


def test_a_model_the_verifier_can_run_is_safe():
    src = "import torch\nfrom torch import nn\nnet = nn.Linear(3, 2)\n" \
          "def f(x):\n    return torch.cat([net(x[i:i + 1]) for i in range(len(x))])\n"
    [p] = _planned(src)
    assert p.safety == SAFE and p.message == "becomes `net(x)`"


def test_a_model_built_from_a_parameter_is_unsafe():
    src = "import torch\ndef f(models, x):\n    net = models[0]\n" \
          "    return torch.cat([net(x[i:i + 1]) for i in range(len(x))])\n"
    [p] = _planned(src)
    assert p.safety == UNSAFE


def test_a_model_constructed_from_parameters_is_built_here():
    src = "import torch\nfrom torch import nn\ndef f(x, k: int):\n    net = nn.Linear(x.shape[1], k)\n" \
          "    return torch.cat([net(x[i:i + 1]) for i in range(len(x))])\n"
    [p] = _planned(src)
    assert p.safety == SAFE


def test_batchnorm_inside_a_class_the_model_builds_declines():
    src = ("import torch\nfrom torch import nn\nclass Block(nn.Module):\n    def __init__(self):\n"
           "        super().__init__()\n        self.bn = nn.BatchNorm1d(4)\n"
           "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.block = Block()\n"
           "    def run(self, x):\n        return torch.cat([self.block(x[i:i + 1]) for i in range(len(x))])\n")
    assert "`nn.BatchNorm1d` in train mode" in _declines(src)


def test_self_of_a_class_that_needs_arguments_is_unsafe():
    src = ("import torch\nfrom torch import nn\nclass M(nn.Module):\n"
           "    def __init__(self, k):\n        super().__init__()\n        self.lin = nn.Linear(k, k)\n"
           "    def run(self, x):\n        return torch.cat([self.lin(x[i:i + 1]) for i in range(len(x))])\n")
    [p] = _planned(src)
    assert p.safety == UNSAFE and "needs arguments" in p.message


@pytest.mark.parametrize("layer", ["nn.BatchNorm1d(4)", "nn.Dropout(0.1)", "nn.LSTM(4, 4)",
                                   "nn.BatchNorm1d(4, track_running_stats=False).eval()"])
def test_visible_batch_mixing_layers_decline(layer):
    src = f"import torch\nfrom torch import nn\nnet = nn.Sequential(nn.Linear(4, 4), {layer})\n" \
          "def f(x):\n    return torch.cat([net(x[i:i + 1]) for i in range(len(x))])\n"
    assert "one batched call would differ" in _declines(src)


def test_eval_mode_lets_batchnorm_through():
    src = "import torch\nfrom torch import nn\nnet = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))\n" \
          "net.eval()\ndef f(x):\n    return torch.cat([net(x[i:i + 1]) for i in range(len(x))])\n"
    assert [p.message for p in _planned(src)] == ["becomes `net(x)`"]


def test_train_again_after_eval_declines():
    src = "import torch\nfrom torch import nn\nnet = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))\n" \
          "net.eval()\ndef g():\n    net.train()\ndef f(x):\n" \
          "    return torch.cat([net(x[i:i + 1]) for i in range(len(x))])\n"
    assert "train mode" in _declines(src)


@pytest.mark.parametrize("call", ["w.dot(x[i])", "w.matmul(x[i])"])
def test_tensor_methods_are_not_models(call):
    src = f"import torch\ndef f(w, x):\n    return torch.stack([{call} for i in range(len(x))])\n"
    assert not _planned(src)


def test_a_parameter_annotated_as_a_tensor_is_not_a_model():
    src = "import torch\ndef f(w: torch.Tensor, x):\n    return torch.cat([w(x[i:i + 1]) for i in range(len(x))])\n"
    assert not _planned(src)


def test_library_functions_are_not_models():
    src = "import torch\ndef f(x):\n    return torch.cat([torch.special.i0e(x[i:i + 1]) for i in range(len(x))])\n"
    assert "no model call" in _declines(src)


def test_post_processing_with_a_dim_keeps_the_batch_of_one():
    src = ("import torch\nfrom torch import nn\nnet = nn.Linear(4, 3)\ndef f(x):\n"
           "    return torch.cat([net(x[i][None]).softmax(dim=-1).argmax(1) for i in range(len(x))])\n")
    # softmax(dim=-1) could reach dim 0 of a batch of one if each item were 0-d: not declared
    assert [p.message for p in _planned(src)] == ["becomes `net(x).unsqueeze(1).softmax(dim=-1).argmax(2).flatten(0, 1)`"]
    declared = src.replace("def f(x):", "def f(x):  # loopvec: shapes x=[n,4]")
    assert [p.message for p in _planned(declared)] == ["becomes `net(x).softmax(dim=-1).argmax(1)`"]


# ---------------------------------------------------------------- the runner writes only what it ran

HIDDEN_BATCHNORM = """import torch
from torch import nn

torch.manual_seed(0)
# getattr hides the layer from the static check: only running the model shows it
model = nn.Sequential(nn.Linear(4, 8), getattr(nn, "BatchNorm" + "1d")(8))


def features(images):  # loopvec: shapes images=[n,2,4]
    outputs = []
    for i in range(len(images)):
        outputs.append(model(images[i]))
    return torch.cat(outputs)
"""
SEED = next(c for c in PAIRS if c == "batch_call_seed_unsqueeze_cat")
CASES = {
    "param_model.py": PARAM_MODEL,
    "hidden_batchnorm.py": HIDDEN_BATCHNORM,
    "batchnorm_fixture.py": (fixture_cases.FIXTURES / "batch_call" / "noop_batchnorm_train_mode.py").read_text(),
    "seed.py": SEED.path.read_text(),
}


@pytest.fixture(scope="module", params=[False, True], ids=["default", "with --unsafe"])
def applied(request, tmp_path_factory):
    """Every case in one folder, applied once (one verifier batch): (folder, findings by file)."""
    folder = tmp_path_factory.mktemp("unsafe" if request.param else "default")
    # with --unsafe only the BatchNorm cases matter: what the verifier refuses stays unwritten
    names = [n for n in CASES if "batchnorm" in n] if request.param else list(CASES)
    for name in names:
        (folder / name).write_text(CASES[name])
    result = apply(RunOptions(paths=(str(folder),), patterns=("batch_call",), unsafe=request.param,
                              verify=VerifySettings(max_examples=15, timeout_s=60.0, workers=2)))
    by_file = {}
    for f in result.findings:
        if f.pattern == "batch_call":
            by_file.setdefault(f.path.rsplit("/", 1)[-1], []).append(f)
    return folder, by_file, request.param


def test_apply_never_writes_a_model_it_could_not_run(applied):
    folder, by_file, unsafe = applied
    if unsafe:
        pytest.skip("the default run is the one that must not write it")
    [finding] = by_file["param_model.py"]
    assert finding.safety == UNSAFE and finding.status != REWRITTEN
    assert (folder / "param_model.py").read_text() == PARAM_MODEL


def test_a_batchnorm_model_in_train_mode_is_never_written(applied):
    folder, by_file, _ = applied
    # proposed as safe (the verifier runs the real model), and refused by it
    [finding] = by_file["hidden_batchnorm.py"]
    assert finding.safety == SAFE and finding.status != REWRITTEN
    assert (folder / "hidden_batchnorm.py").read_text() == HIDDEN_BATCHNORM
    # the fixture whose BatchNorm the static check sees is not even proposed
    assert "batchnorm_fixture.py" not in by_file
    assert (folder / "batchnorm_fixture.py").read_text() == CASES["batchnorm_fixture.py"]


def test_apply_writes_a_model_it_ran(applied):
    folder, by_file, unsafe = applied
    if unsafe:
        pytest.skip("checked in the default run")
    assert [f.status for f in by_file["seed.py"]] == [REWRITTEN]
    assert (folder / "seed.py").read_text() == SEED.expected.read_text()


INDEX_SOURCE = '''import torch
import torch.nn as nn; from torch import nn as tnn; helper = 3

if torch.cuda.is_available():
    device = "cuda"
else:
    device = "cpu"

try:
    from fancy import Net as Backbone
except ImportError:
    Backbone = None


@torch.no_grad()
def encode(x):
    inner = 1
    return x * inner


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))

    def forward(self, x):
        return self.body(x)


model = Net(); model.eval()
model: nn.Module = Net()
with torch.no_grad():
    shared = nn.Linear(4, 4)
model.train()
'''


def test_file_index_answers_as_a_full_parse():
    """The lazy index of a file's top-level names finds what parsing the whole file finds."""
    import ast
    import re

    import libcst as cst

    from codemods.batch_call import _FileIndex, _Module, _ast_bound
    from loopvec.analysis.module import code

    full = _Module(cst.parse_module(INDEX_SOURCE).body)
    lazy = _FileIndex(INDEX_SOURCE)
    names = set().union(*map(_ast_bound, ast.parse(INDEX_SOURCE).body)) | {"missing", "forward", "inner"}
    for name in sorted(names):
        for attr in ("classes", "functions", "bindings"):
            want, got = getattr(full, attr), getattr(lazy, attr)
            assert (name in want) == (name in got), (attr, name)
            if name in want:
                render = (lambda v: [code(n) for n in v]) if attr == "bindings" else code
                assert render(want[name]) == render(got[name]), (attr, name)
        # `_evaluated` reads the statements that spell the name: exactly those, in order
        spelled = [code(s) for s in full.statements if re.search(rf"\b{name}\b", code(s))]
        assert [code(s) for s in lazy.mentioning(name)] == spelled, name
