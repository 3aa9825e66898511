"""The other kinds of values a parameter may hold, and the rewrite judged on them.

A parameter is a tensor only with evidence: a hint, an annotation, or a use only a tensor
supports (`ParamUsage.tensor_only`: `.shape`, `.dim()`, a tensor method, a torch function
that rejects lists). `for x in xs`, `xs[i]` and `len(xs)` are no evidence: lists support
them too, and real callers pass lists of numbers, ragged lists of tensors, tuples,
`torch.Size`s and numpy arrays where the plan draws a tensor. A rewrite proved on tensors
(`xs.abs().sum(1)`, `torch.stack(xs)`) may raise or differ on those.

So after the search on the plan's tensors, `check_kinds` draws the other kinds the body
may accept for each parameter without evidence (`kinds_to_try`). Inputs the original
raises on are outside its domain, as in the search. Where the original accepts one and
the rewrite raises or returns something else, the rewrite fails verification with that
input as the counterexample: a library function that worked on the lists its callers
pass must not raise after the rewrite, with `--unsafe` or without. The message says how
to give the evidence when callers only pass tensors (an annotation, a hint, or `loopvec
record`). Kinds not tried before the time limit are an assumption (`unsafe`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, Verbosity, given, reject, seed
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from hypothesis.reporting import with_reporter
from hypothesis.strategies import SearchStrategy

from loopvec.analysis.usage import UsageFacts, usage_facts

from .inputs import OMIT, ints_instead, numbers_instead, numpy_instead, tensors_instead, with_rows
from .loading import LoadError, Loaded
from .oracle import Difference, describe_error, judge, run
from .plan import ListArg, Param, Plan, TensorArg
from .report import counterexample
from .specs import ListSpec, TensorSpec, parse_annotation
from .types import Verdict, VerifySettings

# What each kind is, as the report says it.
KINDS = {
    "ragged": "a list of tensors of unequal sizes",
    "tensors": "a list of tensors of equal sizes",
    "numbers": "a list of numbers",
    "tuple": "a tuple of ints",
    "size": "a torch.Size",
    "numpy": "a numpy array",
}
_EXAMPLES = 12  # generated inputs per kind (the original may reject most of them)
_REJECTS = 12  # a kind the original rejects this often, accepting none, is outside its domain
_SHARE = 0.85  # of the time limit, by which the last kind must be done
_SHRINK_S = 1.0


@dataclass(frozen=True)
class Kind:
    """Parameter `param` drawn as kind `name` (a key of KINDS). `known`: the parameter is
    declared to hold such values, so a divergence is a failure, not an assumption."""

    param: str
    name: str
    known: bool = False

    @property
    def text(self) -> str:
        return KINDS[self.name]


def kinds_to_try(plan: Plan, facts: UsageFacts, params: list[Param]) -> list[Kind]:
    """The other kinds of value each parameter may hold, in the order they are tried."""
    annotations = {p.name: p.annotation for p in params}
    sources = dict(plan.sources)
    out: list[Kind] = []
    for name, arg in plan.args:
        usage = facts.of(name)
        if isinstance(arg, ListArg) and sources.get(name) == "annotation":
            if isinstance(arg.item, TensorArg) and _sizes_free(annotations.get(name)):
                out.append(Kind(name, "ragged", known=True))
            continue
        # a hint, an annotation or a default says what it is; a use only a tensor has proves it
        if not isinstance(arg, TensorArg) or sources.get(name) != "usage" or usage.tensor_only:
            continue
        rank = len(arg.dims)
        # the likeliest first: its counterexample is the one the report shows
        if rank >= 2 or usage.item_tensor:
            out.append(Kind(name, "ragged"))  # rows of their own sizes: at least 1-D each
        if rank == 1:
            out += [Kind(name, "numbers"), Kind(name, "tuple"), Kind(name, "size")]
        out.append(Kind(name, "tensors"))  # of a 1-D tensor: a list of 0-d ones, a list of losses
        out.append(Kind(name, "numpy"))
    return out


def _sizes_free(annotation: str | None) -> bool:
    """`list[Tensor]`, `Sequence[torch.Tensor]`: items of any size, so ragged ones too
    (`list[Float[Tensor, "n d"]]` ties every item's `n`)."""
    spec = parse_annotation(annotation) if annotation else None
    return isinstance(spec, ListSpec) and (spec.item is None or (isinstance(spec.item, TensorSpec)
                                                                  and spec.item.dims is None))


def strategy(plan: Plan, kind: Kind) -> SearchStrategy[dict[str, Any]]:
    """Argument sets with `kind.param` of kind `kind.name`."""
    plan = with_rows(plan, kind.param)
    if kind.name in ("ragged", "tensors"):
        return tensors_instead(plan, kind.param, ragged=kind.name == "ragged")
    if kind.name == "numbers":
        return numbers_instead(plan, kind.param)
    if kind.name in ("tuple", "size"):
        return ints_instead(plan, kind.param, size=kind.name == "size")
    return numpy_instead(plan, kind.param)


@dataclass(frozen=True)
class Divergence:
    kind: Kind
    counterexample: str
    difference: Difference

    def says(self) -> str:
        """`on a list of numbers the rewrite raises TypeError: ...`"""
        d = self.difference
        if d.where == "the rewrite":  # it raised, or warned
            did = d.what.replace("raised ", "raises ", 1)
        else:
            did = f"differs: {d.where}: {d.what}"
        return f"on {self.kind.text} the rewrite {did}"


def check_kinds(verdict: Verdict, ref: Loaded, new: Loaded, plan: Plan, settings: VerifySettings,
                started: float) -> Verdict:
    """`verdict` (of the search on tensors) judged again on the other kinds of values."""
    if not verdict.ok:
        return verdict
    facts = usage_facts(ref.definition.node, skip_first=ref.definition.skips_first)
    kinds = kinds_to_try(plan, facts, ref.definition.params())
    if not kinds:
        return verdict
    deadline = started + _SHARE * settings.timeout_s
    found: list[Divergence] = []
    untried: list[Kind] = []
    for kind in kinds:
        if kind.known and any(f.kind.known for f in found):
            continue  # one failure is enough
        if time.perf_counter() > deadline:
            untried.append(kind)
            continue
        # the report shows the first counterexample: only that one is shrunk
        divergence = diverges(ref, new, strategy(plan, kind), kind, settings, deadline, shrink=not found)
        if divergence is not None:
            found.append(divergence)
    return judged(verdict, found, untried)


def judged(verdict: Verdict, found: list[Divergence], untried: list[Kind]) -> Verdict:
    """The verdict once the other kinds ran. A divergence is a failure: the original
    accepts that value and the rewrite breaks on it, and nothing in the code says callers
    never pass it (a rewrite that raises on a list a library's callers really pass is no
    proof, `--unsafe` or not). Kinds the time limit left untried stay an assumption."""
    if found:
        first = found[0]
        param = first.kind.param
        if first.kind.known:
            why = f"`{param}` is declared a list of tensors, of any sizes"
        else:
            others = ", ".join(f.kind.text for f in found[1:] if f.kind.param == param)
            also = f"; it also differs on {others}" if others else ""
            why = (f"nothing says `{param}` is always a tensor{also}: if it is, annotate it "
                   f"`{param}: torch.Tensor` or run `loopvec record`")
        return replace(verdict, status="failed", counterexample=first.counterexample,
                       message=f"rewrite differs from the original {first.says()} ({why})")
    params = dict.fromkeys(k.param for k in untried if not k.known)
    if not params:
        return verdict
    parts = [f"`{param}` is a tensor (the other kinds of value it may hold were not tried before the time limit)"
             for param in params]
    return replace(verdict, kind_assumption="; ".join(parts))


class _Stop(BaseException):
    """Stop this kind: hypothesis lets BaseExceptions through without shrinking."""


class _Diverged(Exception):
    pass


def diverges(ref: Loaded, new: Loaded, draw: SearchStrategy[dict[str, Any]], kind: Kind,
             settings: VerifySettings, deadline: float, shrink: bool = True) -> Divergence | None:
    """The smallest input drawn from `draw` that the original accepts and the rewrite does
    not reproduce (on the CPU: kinds are about Python types, not devices), or None."""
    sig = ref.signature()
    names = list(sig.parameters)
    ref_call, new_call = ref.caller("cpu"), new.caller("cpu")
    state: dict[str, Any] = {"found": None, "at": None, "rejected": 0, "accepted": 0}

    def example(named: dict[str, Any]) -> None:
        now = time.perf_counter()
        if now > deadline or (state["at"] is not None and now > state["at"] + _SHRINK_S):
            raise _Stop
        bound = sig.bind_partial(**{k: v for k, v in named.items() if v is not OMIT})
        r = run(ref_call, bound.args, bound.kwargs, settings.seed, "original")
        if r.error is not None:
            if state["found"] is None:
                state["rejected"] += 1
                if state["rejected"] >= _REJECTS and not state["accepted"]:
                    raise _Stop
            reject()
        state["accepted"] += 1
        c = run(new_call, bound.args, bound.kwargs, settings.seed, "rewrite")
        diff = judge(r, c, names, lenient_nonfinite=settings.lenient_nonfinite)
        if diff is not None:
            state["at"] = state["at"] or now
            state["found"] = Divergence(kind, counterexample(named, "cpu", diff), diff)
            raise _Diverged(diff.text())

    _run(example, draw, settings.seed, shrink)
    return state["found"]


def _run(example: Callable[[dict[str, Any]], None], draw: SearchStrategy, seed_value: int, shrink: bool) -> None:
    test = hyp_settings(
        max_examples=_EXAMPLES,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        phases=(Phase.generate, Phase.shrink) if shrink else (Phase.generate,),
        report_multiple_bugs=False,
        print_blob=False,
    )(seed(seed_value)(given(draw)(example)))
    try:
        with with_reporter(lambda *_: None):
            test()
    except (_Stop, Unsatisfiable, _Diverged):
        pass  # the state holds the last, smallest divergence found
    except Exception as e:
        raise LoadError("unverifiable", f"verifier error on other kinds of values: {describe_error(e)}") from e
