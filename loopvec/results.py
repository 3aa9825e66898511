"""Frozen, picklable results: what the engine hands to the runner, report and CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# finding statuses
CANDIDATE = "candidate"  # scan: a pattern would rewrite it (not verified)
REWRITTEN = "rewritten"  # verified and written to disk
VERIFIED = "verified"  # verified; not written (dry run, or unsafe without --unsafe)
UNVERIFIABLE = "unverifiable"
FAILED = "failed-verification"
DECLINED = "declined"


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    column: int
    end_line: int
    function: str | None
    pattern: str | None
    status: str
    message: str
    diff: str = ""
    safety: str = "safe"
    assumptions: tuple[str, ...] = ()
    counterexample: str | None = None
    hint: str | None = None
    speedup: float | None = None
    # the speed gate's 90% interval for that median ratio (loop / rewrite, paired calls)
    speedup_low: float | None = None
    speedup_high: float | None = None
    peak_bytes: int | None = None  # the rewrite's peak tensor memory at the gate's sizes
    loop_peak_bytes: int | None = None  # the loop's, at the same sizes
    # reach: the verifier's examples on which the loop ran (>= 2 iterations) and the
    # rewritten code ran, and the median iterations over those
    reached: int | None = None
    iterations: int | None = None
    key: str = field(default="", compare=False)
    # what confined the user code the verifier ran for it (`verify.confine`): "landlock, no
    # network", "limits only (...)"; "" where none ran (scan, --no-exec, a candidate not verified)
    sandboxed: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("key")
        data["assumptions"] = list(self.assumptions)
        return data


@dataclass(frozen=True)
class FileResult:
    path: str
    findings: tuple[Finding, ...] = ()
    error: str | None = None  # one line: why the file could not be handled
    loops: int = 0
    changed: bool = False
    lines: int = 0
