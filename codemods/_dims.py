"""Kept for `_nest_common`, which imports `declared_ranks` from here: the ranks a function
declares now live in `loopvec.analysis.facts`, the dim rules of ops in `loopvec.lift`, and
the map-loop shape in `codemods._map_shape`."""

from loopvec.analysis.facts import declared_ranks  # noqa: F401
