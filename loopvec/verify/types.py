"""What the verifier is asked and what it answers: frozen, picklable records.

The engine builds a `Candidate` for every rewrite it wants to write; the verifier
answers each with a `Verdict`. Nothing here imports torch, so the engine stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Impl:
    """One implementation to run: function `qualname` of the module at `path`.

    When `source` is given, that function definition (dedented source text) is compiled
    into a copy of the module's namespace instead of using the module's own function,
    after executing `prelude` (import lines a rewrite needs) in that copy.

    The reach probe (`verify.probe`): `loop` is the (line, 1-based column) in the file of
    the loop a rewrite replaces, whose iterations the original counts; `span` holds lines
    of `source` (1-based) of the rewritten code, each recorded when it runs (None: not probed).
    """

    path: str
    qualname: str
    source: str | None = None
    prelude: str = ""
    loop: tuple[int, int] | None = None
    span: tuple[int, ...] | None = None  # None: no probe


@dataclass(frozen=True)
class Candidate:
    """A claim that `candidate` behaves like `reference` on every input the code accepts.

    `hints` are `name -> spec` strings from `[tool.loopvec.hints]` (same syntax as the
    `# loopvec: shapes x=[n,3] k=int` comment on the def line).
    `key` is an opaque label the caller uses to match verdicts to candidates.
    `observed` is the stored record of the function's calls in a real run (`loopvec
    record`; `cache.observed_entry`): its samples are replayed first, and a method's
    instance is built from the attributes it read (`hints` then hold `self.X` specs).
    """

    reference: Impl
    candidate: Impl
    hints: tuple[tuple[str, str], ...] = ()
    key: str = ""
    observed: str | None = None


@dataclass(frozen=True)
class VerifySettings:
    """How hard to look, and how strictly to compare.

    `lenient_nonfinite` (off by default): where the original's value is nan, inf or -inf
    and the rewrite's is also one of those, count them as equal, even nan against inf
    or inf against -inf. Off, they must match (nan equals nan only). Turn it on only for
    code whose callers do not distinguish kinds of overflow: it lets `exp(a) * exp(b)`
    stand for `exp(a + b)`, and also lets a rewrite that turns inf into nan through.
    """

    max_examples: int = 60
    timeout_s: float = 20.0
    device: str = "all"  # cpu | cuda | all (all = cpu, and cuda when available)
    grad: bool = False
    seed: int = 0
    workers: int = 1
    min_valid: int = 8  # fewer accepted inputs than this => unverifiable
    # reach: a probed rewrite is verified only when the loop ran (>= 2 iterations) and the
    # rewritten code ran on at least this many examples, and on this share of them
    min_reached: int = 20
    min_reached_share: float = 1 / 3
    memory_mb: int = 4096  # a worker above this resident size is killed (candidate failed)
    lenient_nonfinite: bool = False


@dataclass(frozen=True)
class Verdict:
    """`status` is one of: verified, failed, unverifiable."""

    status: str
    message: str
    examples: int = 0
    devices: tuple[str, ...] = ()
    counterexample: str | None = None
    key: str = ""
    hint: str | None = None  # the hint that would help, for unverifiable ones
    timings: tuple[tuple[str, float], ...] = field(default=())
    discarded: int = 0  # generated inputs the original raised on (not counted in examples)
    # Parameters the function calls, replaced by a row-independent stand-in model
    # (`standin.StandInModel`): the proof holds only for models that treat rows
    # independently, an assumption the report must name.
    stand_ins: tuple[str, ...] = ()
    # Reach: examples on which the replaced loop made at least two iterations and the
    # rewritten code ran, and the median iterations over those (None: not probed).
    reached: int | None = None
    iterations: int | None = None
    observed: bool = False  # inputs came from a recording of real calls (`loopvec record`)
    # A parameter without evidence of being a tensor, on whose other kinds of value
    # (`verify.kinds`) the rewrite raises or differs: "`xs` is a tensor (on a list of ...)".
    # The proof holds only under that assumption; `counterexample` shows such an input.
    kind_assumption: str | None = None
    # what confined the worker that ran the candidate (`verify.confine`): "landlock, no
    # network", "limits only (...)", ...; "" where nothing ran
    sandboxed: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "verified"
