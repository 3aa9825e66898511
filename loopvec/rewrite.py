"""What a pattern returns: a `Rewrite` (edits to apply) or a `Decline` (why not).

A rewrite is a set of edits on the parsed module: each replaces one statement or one
expression node with new code, or removes a statement (`out = []` before a map loop).
Edits hold CST nodes, so rewrites live only inside the process that parsed the file;
the engine turns them into text before anything crosses a process boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from .analysis.loops import Loop
from .analysis.module import ModuleInfo

SAFE, UNSAFE, DISPLAY = "safe", "unsafe", "display"


@dataclass(frozen=True)
class Edit:
    """Replace `target` by `code` (statements or an expression); `code=None` removes it."""

    target: cst.CSTNode = field(repr=False)
    code: str | None


@dataclass(frozen=True)
class Rewrite:
    pattern: str
    loop: Loop = field(repr=False)
    edits: tuple[Edit, ...]
    message: str  # one line: what it becomes
    safety: str = SAFE
    assumptions: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()  # import lines the new code needs ("import torch")


@dataclass(frozen=True)
class Decline:
    pattern: str
    reason: str


@dataclass
class PatternContext:
    """What every pattern gets besides the loop: the module and how it spells torch."""

    info: ModuleInfo
    torch: str  # local name of the torch module ("torch", "th")
    imports: tuple[str, ...]  # import lines needed for `torch` to resolve

    @classmethod
    def for_module(cls, info: ModuleInfo) -> PatternContext:
        alias = info.alias_for("torch")
        if alias is not None:
            return cls(info, alias, ())
        return cls(info, "torch", ("import torch",))
