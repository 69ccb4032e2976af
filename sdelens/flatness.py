"""Flatness tools: Hessian-vector products, Lanczos, spectral density, Hutchinson trace, local
entropy and Gaussian smoothing (`sdelens.flatness.*`)."""

from ._flatness import *  # noqa: F403
from ._flatness import __all__ as __all__  # noqa: F401
