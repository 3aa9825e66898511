"""Methods of classes whose constructors need arguments, verified on test doubles."""

import ast
import textwrap

import pytest
import torch
from torch import nn

from loopvec.verify import VerifySettings
from loopvec.verify.double import attributes, drawn_attributes, specs
from loopvec.verify.loading import bare_instance
from loopvec.verify.specs import CallableSpec, ListSpec, ScalarSpec, TensorSpec

T = "methods/double_transforms.py"
M = "methods/double_metrics.py"
N = "methods/double_modules.py"

# (key, module, method, rewrite): each a loop in a method, and a correct vectorized form
CORRECT = [
    ("a transform's __call__ scales each channel by self.factors", T, "ScaleTransform.__call__",
     "def __call__(self, img):\n"
     "    return (img * self.factors.reshape((-1,) + (1,) * (img.dim() - 1))).to(img.dtype)\n"),
    ("a transform's __call__ normalizes each channel by self.mean and self.std", T, "Normalize.__call__",
     "def __call__(self, img):\n"
     "    shape = (-1,) + (1,) * (img.dim() - 1)\n"
     "    return ((img - self.mean.reshape(shape)) / self.std.reshape(shape)).to(img.dtype)\n"),
    ("a transform's __call__ clamps each channel between float attributes", T, "ClipChannels.__call__",
     "def __call__(self, img):\n    return img.clamp(self.low, self.high).to(img.dtype)\n"),
    ("a class attribute and a property are used as they are", T, "Offset.__call__",
     "def __call__(self, img):\n    return (img * self.gain + self.base + self.shift).to(img.dtype)\n"),
    ("a metric's compute divides per class", M, "ClassAccuracy.compute",
     "def compute(self):\n    if len(self.correct) == 0:\n        return torch.stack([])\n"
     "    return self.correct / self.total.clamp(min=1)\n"),
    ("a metric's compute uses a smoothing number", M, "Dice.compute",
     "def compute(self, inter, union):\n"
     "    return ((2 * inter + self.smooth) / (union + self.smooth)).to(torch.zeros(0).dtype)\n"),
    ("a metric's weighted mean over classes", M, "WeightedMean.compute",
     "def compute(self, values):\n"
     "    total = 0.0 + (values * self.weights[:len(values)]).sum() if len(values) else 0.0\n"
     "    norm = 0.0 + self.weights[:len(values)].sum() if len(values) else 0.0\n"
     "    return total / (norm + self.eps)\n"),
    ("an nn.Module's forward scales each head by a parameter", N, "HeadScale.forward",
     "def forward(self, x):\n"
     "    if x.shape[1] == 0:\n        return torch.stack([], 1)\n"
     "    dtype = torch.result_type(x, self.weight[0])\n"
     "    return (x * self.weight.reshape((-1,) + (1,) * (x.dim() - 2))).to(dtype)\n"),
    ("an nn.Module's forward projects each head with a submodule", N, "PerHeadProjection.forward",
     "def forward(self, x):\n    if len(x) == 0:\n        return torch.stack([])\n    return self.proj(x)\n"),
    ("an nn.Module's forward calls each of a ModuleList of heads", N, "Heads.forward",
     "def forward(self, x):\n    return torch.cat([head(x) for head in self.heads], -1)\n"),
    ("an nn.Module's forward adds a 2-D parameter per head", N, "HeadBias.forward",
     "def forward(self, x):\n    out = torch.empty_like(x)\n    if len(x):\n        out[:] = x + self.bias[:len(x)]\n    return out\n"),
    ("a metric's compute loops up to an int attribute, the number of classes", M, "PerClassIoU.compute",
     "def compute(self, inter, union):\n    out = torch.zeros(self.num_classes)\n"
     "    out[:] = inter[:self.num_classes] / union[:self.num_classes]\n    return out\n"),
    ("a transform whose constructor has defaults but fails", T, "FromFile.__call__",
     "def __call__(self, img):\n"
     "    return (img * self.weights[:len(img)].reshape((-1,) + (1,) * (img.dim() - 1))).to(img.dtype)\n"),
    ("a metric's update counts labels into self.counts", M, "ConfusionRow.update",
     "def update(self, labels):\n"
     "    index = torch.as_tensor(labels)\n"
     "    self.counts.index_put_((index,), torch.ones(index.shape, dtype=self.counts.dtype), accumulate=True)\n"),
    ("a transform's attribute read in a helper method", T, "Gain.__call__",
     "def __call__(self, img):\n"
     "    return (img * self.gains[:len(img)].reshape((-1,) + (1,) * (img.dim() - 1))).to(img.dtype)\n"),
]

# rewrites that are wrong: refused with a counterexample
WRONG = [
    ("a transform that scales every channel by the first factor", T, "ScaleTransform.__call__",
     "def __call__(self, img):\n    return (img * self.factors[0]).to(img.dtype)\n"),
    ("a module that forgets its parameter", N, "HeadScale.forward",
     "def forward(self, x):\n    return x.clone() if x.shape[1] else torch.stack([], 1)\n"),
]


@pytest.fixture(scope="module")
def verdicts(rewrite, batch):
    cands = [rewrite(module, qualname, source, key=key) for key, module, qualname, source in CORRECT + WRONG]
    return batch("methods", cands, VerifySettings(max_examples=40, device="cpu"))


@pytest.mark.parametrize("key", [c[0] for c in CORRECT])
def test_a_method_of_a_class_that_needs_arguments_verifies_on_test_doubles(verdicts, key):
    v = verdicts[key]
    assert v.status == "verified", v.message
    assert "__init__ not called: on instances holding generated self." in v.message


@pytest.mark.parametrize("key", [c[0] for c in WRONG])
def test_a_wrong_rewrite_of_a_method_is_refused_with_a_counterexample(verdicts, key):
    v = verdicts[key]
    assert v.status == "failed", v.message
    assert v.counterexample and "self." in v.counterexample


def test_an_int_attribute_that_bounds_the_loop_is_drawn_as_an_int(verdicts):
    v = verdicts["a metric's compute loops up to an int attribute, the number of classes"]
    assert v.status == "verified" and "generated self.num_classes" in v.message


def test_a_constructor_with_defaults_that_fails_leads_to_a_test_double(verdicts):
    message = verdicts["a transform whose constructor has defaults but fails"].message
    assert "FromFile.__init__ not called: on instances holding generated self.weights" in message


def test_the_verdict_says_which_attributes_were_generated(verdicts):
    message = verdicts["a transform's __call__ normalizes each channel by self.mean and self.std"].message
    assert "Normalize.__init__ not called: on instances holding generated self.mean, self.std" in message


def test_a_class_attribute_and_a_property_are_not_generated(verdicts):
    message = verdicts["a class attribute and a property are used as they are"].message
    assert "generated self.shift" in message and "self.base" not in message and "self.gain" not in message


def test_called_attributes_are_stand_ins(verdicts):
    assert verdicts["an nn.Module's forward projects each head with a submodule"].stand_ins == ("self.proj",)
    assert verdicts["an nn.Module's forward calls each of a ModuleList of heads"].stand_ins == ("self.heads",)
    assert verdicts["a transform's __call__ scales each channel by self.factors"].stand_ins == ()


# ------------------------------------------------------------------ reading the class


def _method(cls, name):
    import inspect

    return ast.parse(textwrap.dedent(inspect.getsource(getattr(cls, name)))).body[0]


class _Metric:
    threshold = 0.5

    def __init__(self, num_classes: int, eps: float, weight):
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(num_classes, 3))
        self.scale = weight
        self.count = 0

    @property
    def half(self):
        return self.eps / 2

    def _norm(self, x):
        return x / self.scale

    def compute(self, x):
        self.count = 1  # set before it is read: the method's own
        out = torch.zeros(len(x))
        for k in range(len(x)):
            out[k] = self._norm(x[k]) * self.weight[k, 0] + self.eps + self.half + self.threshold + self.count
        return out


class _Net(nn.Module):
    def __init__(self, n, dim):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(dim, dim) for _ in range(n)])
        self.head = nn.Linear(dim, 1)
        self.register_buffer("mask", torch.ones(n, dim, dim))

    def forward(self, x):
        for k, block in enumerate(self.blocks):
            x = block(x) * self.mask[k, 0]
        return self.head(x) if self.training else x


@pytest.mark.parametrize("cls, method, expected", [
    pytest.param(_Metric, "compute", ("weight", "eps", "scale"),
                 id="reads in the method and its helper, less class attributes, properties and what it sets first"),
    pytest.param(_Net, "forward", ("blocks", "mask", "head"),
                 id="an nn.Module's training flag comes from nn.Module.__init__, not generated"),
])
def test_the_attributes_a_method_reads_are_generated(cls, method, expected):
    assert attributes(cls, [_method(cls, method)]) == expected


def test_how_init_assigns_an_attribute_gives_its_kind():
    node = _method(_Metric, "compute")
    assert specs(_Metric, [node], ("weight", "eps", "scale")) == {
        "self.weight": TensorSpec(("_", "_")),  # nn.Parameter(torch.empty(num_classes, 3))
        "self.eps": ScalarSpec("float"),  # self.eps = eps, with eps: float
    }
    net = _method(_Net, "forward")
    assert specs(_Net, [net], ("blocks", "mask", "head")) == {
        "self.blocks": ListSpec(CallableSpec()),
        "self.mask": TensorSpec(("_", "_", "_")),  # register_buffer("mask", torch.ones(n, dim, dim))
        "self.head": CallableSpec(),
    }


def test_a_hint_on_an_attribute_wins_over_init():
    node = _method(_Metric, "compute")
    _, params, hints = drawn_attributes(_Metric, node, node, {"self.eps": ScalarSpec("int")})
    assert [p.name for p in params] == ["self.weight", "self.eps", "self.scale"]
    assert hints["self.eps"] == ScalarSpec("int")


def test_a_double_of_a_module_holds_only_the_given_attributes_and_can_hold_parameters():
    double = bare_instance(_Net, {"head": nn.Linear(2, 1)})
    assert isinstance(double, _Net) and double.training and not hasattr(double, "blocks")
    assert [name for name, _ in double.named_parameters()] == ["head.weight", "head.bias"]
