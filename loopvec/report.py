"""Turn results into text and JSON. Pure functions: they return strings, never print."""

from __future__ import annotations

import json
from collections import Counter

from .files import printable
from .results import CANDIDATE, DECLINED, FAILED, REWRITTEN, UNVERIFIABLE, VERIFIED, Finding
from .runner import RunResult

SCHEMA_VERSION = 1


def finding_line(f: Finding) -> str:
    pattern = f"[{f.pattern}]" if f.pattern else "[-]"
    fn = f" in {f.function}()" if f.function else ""
    extra = f" -- assumes {', '.join(f.assumptions)}" if f.assumptions and f.status != DECLINED else ""
    reach = ""
    if f.reached and f.status in (VERIFIED, REWRITTEN):
        reach = f" [loop ran on {f.reached} inputs, median {f.iterations} iterations]"
    return f"{f.path}:{f.line}:{f.column} {pattern}{fn} {f.message}{extra}{reach} ({f.status})"


def text_report(result: RunResult, show_counterexamples: bool = True) -> list[str]:
    lines = []
    for res in result.files:
        if res.error:
            lines.append(f"{res.path}: error: {res.error}")
        for f in res.findings:
            lines.append(finding_line(f))
            if show_counterexamples and f.counterexample:
                lines += ["    " + ln for ln in f.counterexample.splitlines()]
            if f.hint and f.status == UNVERIFIABLE:
                lines.append(f"    hint: add `{f.hint}` on the def line")
    for path in result.missing:
        lines.append(f"{path}: error: no such file or folder")
    return [printable(line) for line in lines]  # a file name that is not UTF-8 must not stop the report


def summary(result: RunResult) -> dict:
    findings = result.findings
    statuses = Counter(f.status for f in findings)
    per_pattern = Counter(f.pattern for f in findings if f.pattern and f.status != DECLINED)
    return {
        "files": len(result.files),
        "lines": sum(r.lines for r in result.files),
        "loops": sum(r.loops for r in result.files),
        "errors": len(result.errors) + len(result.missing),
        "changed_files": sum(1 for r in result.files if r.changed),
        "candidates_per_pattern": dict(sorted(per_pattern.items())),
        **{s: statuses.get(s, 0) for s in (CANDIDATE, REWRITTEN, VERIFIED, UNVERIFIABLE, FAILED, DECLINED)},
    }


def summary_line(result: RunResult) -> str:
    s = summary(result)
    parts = [f"{s['files']} files", f"{s['loops']} loops"]
    for key in (CANDIDATE, REWRITTEN, VERIFIED, UNVERIFIABLE, FAILED):
        if s[key]:
            parts.append(f"{s[key]} {key}")
    if s["errors"]:
        parts.append(f"{s['errors']} errors")
    if s["candidates_per_pattern"]:
        parts.append("per pattern: " + ", ".join(f"{k} {v}" for k, v in s["candidates_per_pattern"].items()))
    return "loopvec: " + ", ".join(parts)


def json_report(result: RunResult) -> str:
    errors = [{"path": r.path, "error": r.error} for r in result.errors]
    errors += [{"path": p, "error": "no such file or folder"} for p in result.missing]
    return json.dumps(_printable({
        "version": SCHEMA_VERSION,
        "findings": [f.to_json() for f in result.findings],
        "errors": errors,
        "summary": summary(result),
    }), indent=2)


def _printable(data):
    """`data` with every string `printable`: a file name that is not UTF-8 (a lone
    surrogate) becomes `\\xNN`, which every JSON parser reads."""
    if isinstance(data, str):
        return printable(data)
    if isinstance(data, dict):
        return {_printable(k): _printable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_printable(v) for v in data]
    return data


def exit_code(result: RunResult) -> int:
    if result.errors or result.missing:
        return 2
    if any(f.status != DECLINED for f in result.findings):
        return 1
    return 0
