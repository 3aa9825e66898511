"""loopvec's benchmarks: `python -m benchmarks [--only speedup|scan|verify|profile] [--json PATH]`.

Every figure in the README and in reports comes from here (see `__main__.py`).
"""
