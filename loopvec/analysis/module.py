"""One parsed module: the CST, positions, and qualified names of dotted references.

Qualified names come from the module's imports (`import torch as th` makes `th.sin`
resolve to `torch.sin`; `from torch.nn import functional as F` makes `F.relu` resolve to
`torch.nn.functional.relu`), so patterns match by what a name *is*, never by spelling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

_EMPTY = cst.Module(body=[])


def code(node: cst.CSTNode) -> str:
    """Source text of a node, without its leading/trailing whitespace."""
    return _EMPTY.code_for_node(node).strip()


def dotted(node: cst.BaseExpression) -> str | None:
    """`a.b.c` for a chain of Names/Attributes, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        head = dotted(node.value)
        return None if head is None else f"{head}.{node.attr.value}"
    return None


def _alias_name(alias: cst.ImportAlias) -> str:
    return dotted(alias.name) or ""


class _ImportCollector(cst.CSTVisitor):
    """Every import in the module (any depth): local name -> qualified name."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def visit_Import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = _alias_name(alias)
            if alias.asname is not None:
                self.names[dotted(alias.asname.name) or ""] = full
            else:
                # `import torch.nn.functional` binds `torch`
                top = full.split(".")[0]
                self.names[top] = top

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.relative or node.module is None or isinstance(node.names, cst.ImportStar):
            return
        base = dotted(node.module) or ""
        for alias in node.names:
            name = _alias_name(alias)
            local = dotted(alias.asname.name) if alias.asname is not None else name
            self.names[local or name] = f"{base}.{name}"


@dataclass
class ModuleInfo:
    path: str
    source: str
    module: cst.Module
    positions: dict = field(repr=False)
    imports: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, path: str, source: str) -> ModuleInfo:
        wrapper = MetadataWrapper(cst.parse_module(source), unsafe_skip_copy=True)
        positions = wrapper.resolve(PositionProvider)
        collector = _ImportCollector()
        wrapper.module.visit(collector)
        return cls(path, source, wrapper.module, dict(positions), collector.names)

    def position(self, node: cst.CSTNode) -> CodeRange:
        return self.positions[node]

    def qualname(self, node: cst.BaseExpression) -> str | None:
        """`torch.sin` for `th.sin` under `import torch as th`; None if not an imported name."""
        text = dotted(node)
        if text is None:
            return None
        head, _, rest = text.partition(".")
        if head not in self.imports:
            return None
        full = self.imports[head]
        return f"{full}.{rest}" if rest else full

    def builtin_name(self, node: cst.BaseExpression) -> str | None:
        """`len`, `float`, ... when the name is a builtin not shadowed by an import."""
        if isinstance(node, cst.Name) and node.value not in self.imports:
            return node.value
        return None

    def alias_for(self, qualified: str) -> str | None:
        """The local spelling of a module (`th` for `torch`), if the module imports it."""
        for local, full in self.imports.items():
            if full == qualified:
                return local
        return None
