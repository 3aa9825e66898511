"""loopvec: rewrite Python loops over PyTorch tensors into vectorized torch code, proved on data."""

__version__ = "0.1.0"
