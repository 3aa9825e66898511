"""One candidate, checked in the worker: load both sides, plan inputs, search, judge.

The search is a hypothesis `@given` test, so a failure comes back shrunk. Inputs on which
the original raises are rejected (the original does not accept them); too few accepted
inputs make the candidate unverifiable, with the hint comment that states what was tried.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, reject, seed
from hypothesis import example as hyp_example
from hypothesis import strategies as st
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from hypothesis.reporting import with_reporter

from loopvec.analysis.usage import usage_facts
from loopvec.observed import SELF, Replay, replay

from .reach import guard_needs, past_guards
from .inputs import OMIT, arguments, can_mix, to_device
from .kinds import check_kinds
from .double import drawn_attributes
from .loading import ImportExit, LoadError, Loaded, as_double, load
from .oracle import Difference, UserExit, describe_error, grad_difference, judge, run, seed_everything
from .plan import Param, Plan, build_plan
from .report import counterexample
from .specs import SpecError, parse_spec
from .types import Candidate, Verdict, VerifySettings

# Share of the time limit the search may use before it stops early (and shrinking, once
# a failure is found), so a slow function ends in a verdict rather than a kill.
_SEARCH_SHARE = 0.6
_SHRINK_SHARE = 0.8
_SHRINK_S = 1.0  # shrinking longer buys a slightly smaller example for much time


_REACH_ROUNDS = 4  # runs of the reach search, each as long as what is still missing, twice


class _GiveUp(BaseException):
    """Stop the search: hypothesis lets BaseExceptions through without shrinking."""


class _Mismatch(Exception):
    pass


class _OutOfMemory(BaseException):
    """A side could not allocate under the worker's memory limit (`confine`'s RLIMIT_DATA)."""

    def __init__(self, side: str, error: BaseException) -> None:
        super().__init__(side, error)
        self.side = side
        self.error = error


def _out_of_memory(error: BaseException | None) -> bool:
    # torch's CPU allocator reports a refused allocation as a RuntimeError
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


@dataclass
class _Search:
    valid: int = 0
    rejected: int = 0
    errors: Counter = field(default_factory=Counter)
    failure: str | None = None
    difference: Difference | None = None
    stopped_early: bool = False
    run_rejected: int = 0  # in the current hypothesis run
    run_reject_limit: int | None = None  # the current run stops after this many
    # reach (only when both sides carry a probe): per accepted example, the loop's most
    # iterations in one run; the iterations of the examples that reached; where the
    # original returned when its loop never started; examples where the rewrite's code
    # did not run although the loop did
    probed: bool = False
    reached: list[int] = field(default_factory=list)
    short: int = 0  # the loop ran, but fewer than two iterations
    left_at: Counter = field(default_factory=Counter)
    span_missed: int = 0
    # accepted examples of the reach search (`_search_reach`) on which the loop still did
    # not run: that search aims at the loop, so its misses do not count against the share
    aimed_misses: int = 0
    aiming: bool = False


def check(cand: Candidate, settings: VerifySettings) -> Verdict:
    """The verdict on one candidate. Never raises for problems in user code."""
    started = time.perf_counter()
    timings: list[tuple[str, float]] = []
    try:
        verdict = _check(cand, settings, started, timings)
    except LoadError as e:
        verdict = Verdict(e.status, e.message)
    except (UserExit, ImportExit) as e:
        where = f" in the {e.side}" if isinstance(e, UserExit) else " while importing"
        verdict = Verdict("failed", f"worker crashed: user code called sys.exit({e.code!r}){where}")
    except _OutOfMemory as e:
        verdict = Verdict("failed", f"memory limit exceeded ({settings.memory_mb} MiB) in the {e.side}: "
                                    f"{describe_error(e.error)}")
    timings.append(("total", round(time.perf_counter() - started, 4)))
    return replace(verdict, key=cand.key, timings=tuple(timings))


def devices_for(setting: str) -> tuple[str, ...]:
    cuda = torch.cuda.is_available()
    if setting == "cpu":
        return ("cpu",)
    if setting == "cuda":
        return ("cuda",) if cuda else ()
    return ("cpu", "cuda") if cuda else ("cpu",)


def _check(cand: Candidate, settings: VerifySettings, started: float, timings: list) -> Verdict:
    devices = devices_for(settings.device)
    if not devices:
        return Verdict("unverifiable", f"device {settings.device!r} requested but CUDA is not available")
    observed = replay(cand.observed)  # what `loopvec record` saw of the function, if anything
    ref = load(cand.reference, bare=observed is not None)
    new = load(cand.candidate, bare=observed is not None)
    timings.append(("load", round(time.perf_counter() - started, 4)))
    if ref.owner is not None and not ref.definition.static and observed is None:
        if ref.double or new.double or not _try_instance(ref):
            as_double(ref)  # no instance from the constructor: both sides get equal test doubles
            as_double(new)
    plan = _plan(ref, new, cand)
    # the other kinds of call the recording saw get examples too
    others = [_plan(ref, new, replace(cand, hints=cand.hints + other)) for other in observed.others] if observed else []
    search = _search(ref, new, plan, settings, devices, started, observed, others)
    timings.append(("search", round(time.perf_counter() - started, 4)))
    verdict = replace(_verdict(search, plan, settings, devices), stand_ins=plan.stand_ins)
    # observed kinds are evidence through the hints they give (`plan.sources`); a parameter
    # whose observed kind no hint states (a ragged list, a numpy array) still gets the
    # other kinds tried, or a recording would prove less than no recording
    verdict = check_kinds(verdict, ref, new, plan, settings, started)
    if observed is not None:
        verdict = replace(verdict, observed=True, message=f"{verdict.message}; on observed inputs ({observed.note})")
    if ref.double:
        drawn = [name for name, _ in plan.args if name.startswith(SELF)]
        verdict = replace(verdict, message=f"{verdict.message}; {ref.owner.__name__}.__init__ not called: "
                                           f"on instances holding generated {', '.join(drawn) or 'no attributes'}")
    return verdict


def _verdict(search: _Search, plan: Plan, settings: VerifySettings, devices: tuple[str, ...]) -> Verdict:
    if search.failure is not None:
        return Verdict(
            "failed",
            f"rewrite differs from the original: {search.difference.where}: {search.difference.what}",
            examples=search.valid,
            devices=devices,
            counterexample=search.failure,
            discarded=search.rejected,
        )
    tried = search.valid + search.rejected
    if search.valid < settings.min_valid:
        common = search.errors.most_common(1)
        why = f" (most often: {common[0][0]})" if common else ""
        slow = " before the time limit" if search.stopped_early else ""
        return Verdict(
            "unverifiable",
            f"only {search.valid} of {tried} generated inputs ran without error in the original{slow}{why}; "
            f"a hint may help",
            examples=search.valid,
            devices=devices,
            hint=plan.hint(),
            discarded=search.rejected,
        )
    if search.probed:
        unreached = _unreached(search, settings)
        if unreached is not None:
            return Verdict(
                "unverifiable",
                unreached,
                examples=search.valid,
                devices=devices,
                hint=plan.hint(),
                discarded=search.rejected,
                reached=len(search.reached),
                iterations=_median(search.reached),
            )
    notes = [", ".join(devices)]
    if search.probed:
        notes.append(f"the loop ran on {len(search.reached)} of them, median {_median(search.reached)} iterations")
    if plan.stand_ins:
        notes.append(f"{', '.join(plan.stand_ins)}: a row-independent stand-in model")
    if search.rejected:
        notes.append(f"{search.rejected} inputs the original rejected were skipped")
    if search.stopped_early:
        notes.append("stopped early at the time limit")
    return Verdict(
        "verified",
        f"verified on {search.valid} examples ({'; '.join(notes)})",
        examples=search.valid,
        devices=devices,
        discarded=search.rejected,
        reached=len(search.reached) if search.probed else None,
        iterations=_median(search.reached) if search.probed else None,
    )


def needed_reach(state: _Search, settings: VerifySettings) -> int:
    """Examples that must run the loop: `min_reached`, and a share of those drawn (the
    reach search's misses aside)."""
    drawn = state.valid - state.aimed_misses
    return max(settings.min_reached, math.ceil(settings.min_reached_share * drawn))


def _unreached(search: _Search, settings: VerifySettings) -> str | None:
    """Why the accepted examples do not make a proof for want of reach, or None."""
    reached, valid = len(search.reached), search.valid
    if reached >= needed_reach(search, settings):
        return None
    never = valid - reached - search.short - search.span_missed
    if reached == 0 and search.short == 0 and search.span_missed == 0:
        line, times = search.left_at.most_common(1)[0] if search.left_at else (None, 0)
        where = "" if line is None else (
            f": the function returned at line {line} on every input" if times == never
            else f": the function returned at line {line} on {times} of {never} inputs")
        return f"the loop never ran on the {valid} inputs the original accepted{where}; a hint may help"
    parts = []
    if never:
        where = f", returning at line {search.left_at.most_common(1)[0][0]}" if search.left_at else ""
        parts.append(f"never started on {never}{where}")
    if search.short:
        parts.append(f"made one iteration on {search.short}")
    if search.span_missed:
        parts.append(f"ran while the rewritten code did not on {search.span_missed}")
    return (f"the loop ran (at least two iterations, with the rewritten code) on only {reached} of the "
            f"{valid} inputs the original accepted ({'; '.join(parts)}); a proof needs "
            f"{needed_reach(search, settings)}; a hint may help")


def _median(values: list[int]) -> int | None:
    return int(sorted(values)[len(values) // 2]) if values else None


def _plan(ref: Loaded, new: Loaded, cand: Candidate) -> Plan:
    comment = ref.definition.hint_comment() or new.definition.hint_comment()
    texts = {**dict(cand.hints), **comment}  # the comment sits by the code: it wins
    try:
        hints = {name: parse_spec(text) for name, text in texts.items()}
    except SpecError as e:
        raise LoadError("unverifiable", f"bad hint: {e}") from None
    facts = usage_facts(ref.definition.node, skip_first=ref.definition.skips_first)
    # a method's observed attributes are drawn as arguments are (`self.factors=[n]` shares n)
    attrs = [Param(name) for name in hints if name.startswith(SELF) and ref.owner is not None]
    if ref.double:  # a test double's attributes are drawn as arguments are
        node, attrs, hints = drawn_attributes(ref.owner, ref.definition.node, new.definition.node, hints)
        facts = usage_facts(node, skip_first=True)
    return build_plan(ref.definition.params() + attrs, facts, hints)


def _try_instance(ref: Loaded) -> bool:
    """Whether the class builds with its defaults (a constructor that opens a missing file
    does not: the method then runs on test doubles)."""
    seed_everything(0)
    try:
        ref.make_instance("cpu")
    except SystemExit as e:
        raise UserExit(e.code, "constructor") from None
    except Exception:  # the class cannot be built without arguments after all
        return False
    return True


def _search(
    ref: Loaded, new: Loaded, plan: Plan, settings: VerifySettings, devices: tuple[str, ...], started: float,
    observed: Replay | None = None, observed_others: list[Plan] = (),
) -> _Search:
    """Run the examples: one hypothesis run per value dtype, one of strided inputs, and,
    where two arguments take the value dtype, one that gives them different dtypes.

    Hypothesis draws in clumps: left to pick the dtype itself, a run of 60 examples
    can contain no uint8 at all, or no non-contiguous tensor. Separate runs give each
    dtype and the strided layouts their share of the examples; each run starts from its
    simplest example, which has an empty dim. The mixed-dtype run comes last and stops
    after a share's worth of inputs the original rejects: plenty of code refuses mixed
    dtypes (`torch.dot`), and that must not use up the others' examples.
    """
    state = _Search(probed=ref.probe is not None and new.probe is not None)
    sig = ref.signature()
    names = list(sig.parameters)
    search_until = started + _SEARCH_SHARE * settings.timeout_s
    give_up_after = 3 * settings.max_examples + 20
    callers = {d: (ref.caller(d), new.caller(d)) for d in devices}
    found_at: list[float] = []

    def example(named: dict[str, Any]) -> None:
        now = time.perf_counter()
        if state.failure is not None:
            shrink_until = min(found_at[0] + _SHRINK_S, started + _SHRINK_SHARE * settings.timeout_s)
            if now > shrink_until:
                raise _GiveUp  # keep the smallest failure found so far
        elif now > search_until:
            state.stopped_early = True
            raise _GiveUp
        # a test double's attributes go to its caller as keywords (`Loaded.caller`)
        given_args = {k: v for k, v in named.items() if v is not OMIT and (ref.double or not k.startswith(SELF))}
        if observed is not None:  # the instance holds the observed attributes, drawn or fixed
            ref.attrs = new.attrs = {**observed.fixed, **{k[len(SELF):]: v for k, v in named.items()
                                                          if k.startswith(SELF)}}
        reach = None
        for device in devices:
            bound = sig.bind_partial(**to_device(given_args, device))
            ref_call, new_call = callers[device]
            if state.probed:
                ref.probe.reset()
                new.probe.reset()
                with ref.probe.watch_return():
                    r = run(ref_call, bound.args, bound.kwargs, settings.seed, "original")
            else:
                r = run(ref_call, bound.args, bound.kwargs, settings.seed, "original")
            if _out_of_memory(r.error):
                raise _OutOfMemory("original", r.error)
            if r.error is not None:
                if state.failure is None:  # shrinking probes do not count as examples
                    state.rejected += 1
                    state.run_rejected += 1
                    state.errors[describe_error(r.error)] += 1
                    if state.rejected >= give_up_after:
                        raise _GiveUp
                    if state.run_reject_limit is not None and state.run_rejected >= state.run_reject_limit:
                        raise _GiveUp
                reject()
            c = run(new_call, bound.args, bound.kwargs, settings.seed, "rewrite")
            if _out_of_memory(c.error):
                raise _OutOfMemory("rewrite", c.error)
            if state.probed and reach is None:  # the first device's run says what ran
                iterations = ref.probe.iterations
                if iterations == 1 and ref.probe.stopped_early:
                    iterations = 2  # it ran, and left by itself: a search that found its item
                reach = (iterations, new.probe.span_ran, ref.probe.left_at)
            lenient = settings.lenient_nonfinite
            diff = judge(r, c, names, lenient_nonfinite=lenient)
            if diff is None and settings.grad:
                diff = grad_difference(
                    ref_call, new_call, bound.args, bound.kwargs, settings.seed, names, lenient_nonfinite=lenient
                )
            if diff is not None:
                if not found_at:
                    found_at.append(now)
                state.failure = counterexample(named, device, diff)
                state.difference = diff
                raise _Mismatch(diff.text())
        if state.failure is None:
            state.valid += 1
            if reach is not None:
                _count_reach(state, *reach)

    if observed is not None:
        _replay_samples(example, observed.samples, settings.seed, set(names))
        if state.failure is not None:
            return state  # a call the code really received tells against the rewrite: that is the counterexample
    first, *others = plan.value_dtypes
    runs = [
        arguments(replace(plan, value_dtypes=(dtype,)), strided)
        for dtype, strided in [(first, False), (first, True), *((dtype, False) for dtype in others)]
    ]
    runs += [arguments(other) for other in observed_others]
    mixed = can_mix(plan)
    if mixed:
        runs.append(arguments(plan, mixed=True))
    share = max(1, math.ceil(settings.max_examples / len(runs)))
    for k, strategy in enumerate(runs):
        state.run_rejected = 0
        state.run_reject_limit = share if mixed and k == len(runs) - 1 else None
        _run_hypothesis(example, strategy, share, settings.seed, state)
        if state.failure is not None or state.stopped_early or state.rejected >= give_up_after:
            break
    if state.probed:
        _search_reach(example, plan, settings, state)
    if state.probed and state.left_at and len(state.reached) < needed_reach(state, settings):
        past = past_guards(plan, guard_needs(ref.definition.node, state.left_at.most_common(1)[0][0]))
        if past is not None:
            _search_reach(example, past, settings, state)
    return state


def _replay_samples(example, samples: list[dict[str, Any]], seed_value: int, names: set[str]) -> None:
    """The recorded calls, first, as hypothesis's explicit examples: values the code really
    received (a ragged list, a numpy array) that no strategy draws. Not shrunk."""
    # a parameter renamed or removed since the recording: that call no longer fits
    samples = [s for s in samples if all(k in names or k.startswith(SELF) for k in s)]
    if not samples:
        return

    def recorded(named: dict[str, Any]) -> None:  # its own function: explicit examples stick to it
        example(named)

    for sample in samples:
        recorded = hyp_example(sample)(recorded)
    test = hyp_settings(database=None, deadline=None, suppress_health_check=list(HealthCheck),
                        verbosity=Verbosity.quiet, phases=(Phase.explicit,), report_multiple_bugs=False,
                        print_blob=False)(seed(seed_value)(given(st.just({}))(recorded)))
    try:
        with with_reporter(lambda *_: None):
            test()
    except (_GiveUp, _Mismatch):
        pass  # a failure is in the state, with the sample as its counterexample


def _search_reach(example, plan: Plan, settings: VerifySettings, state: _Search) -> None:
    """More examples where the loop can run: every size at least 2 where the plan allows.

    The main runs start from empty and one-element inputs on purpose (edge cases), and on
    those a loop makes fewer than two iterations: they test the rewrite but prove no map.
    Called again with a plan changed to get past the guard the original returned at.
    """
    grown = replace(plan, dims=tuple(replace(d, low=max(d.low, min(2, d.high))) for d in plan.dims))
    dtypes = plan.value_dtypes
    for k in range(_REACH_ROUNDS):
        missing = needed_reach(state, settings) - len(state.reached)
        if missing <= 0 or state.failure is not None or state.stopped_early:
            return
        state.run_rejected = 0
        state.run_reject_limit = max(2 * missing, 10) + 10
        before = len(state.reached)
        strategy = arguments(replace(grown, value_dtypes=(dtypes[k % len(dtypes)],)))
        state.aiming = True
        try:
            _run_hypothesis(example, strategy, max(2 * missing, 10), settings.seed + 1 + k, state)
        finally:
            state.aiming = False
        if len(state.reached) == before:
            return  # sizes alone do not reach it: a guard in front of the loop decides


def _count_reach(state: _Search, iterations: int, span_ran: bool, left_at: int | None) -> None:
    if iterations >= 2 and span_ran:
        state.reached.append(iterations)
        return
    if state.aiming:
        state.aimed_misses += 1
    if iterations >= 2:
        state.span_missed += 1
    elif iterations == 1:
        state.short += 1
    elif left_at is not None:
        state.left_at[left_at] += 1


def _run_hypothesis(example, strategy, max_examples: int, seed_value: int, state: _Search) -> None:
    test = hyp_settings(
        max_examples=max_examples,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        report_multiple_bugs=False,
        print_blob=False,
    )(seed(seed_value)(given(strategy)(example)))
    try:
        with with_reporter(lambda *_: None):
            test()
    except (_GiveUp, Unsatisfiable):
        pass
    except _Mismatch:
        pass  # state.failure holds the last, smallest failing example
    except Exception as e:
        if state.failure is None:
            raise LoadError("unverifiable", f"verifier error: {describe_error(e)}") from e
