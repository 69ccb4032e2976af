"""sdelens: optimizers through the lens of their stochastic differential equations.

The mathematics every name implements is written up in the repository's `docs/math.md`.

Public names are listed in `__init__.pyi` and loaded on first use (`lazy_loader`): `import
sdelens` is instant and loads neither JAX nor matplotlib, so the `sdelens` command answers
`--help` at once; `sdelens.GaussianNoise` imports what it needs when first touched. Set
`EAGER_IMPORT=1` to import everything at once.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)

__version__ = "0.2.0"
