"""The demo: SGD and SignSGD against their SDEs on a 3-d quadratic."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from .. import _progress
from .._noise import GaussianNoise
from .._optimizers import SGD, SignSGD
from .._problems import Quadratic
from .._simulate import check_key
from ._common import Progress, say
from ._vs_sde import OptimizerVsSDE, optimizer_vs_sde

__all__ = ["Demo", "demo", "DEMO_PROBLEM"]

# f = ½ Σ hᵢ xᵢ², h = (1, 2, 4), Gaussian noise s = (0.5, 1, 2): curvature and noise differ by
# coordinate, so the SGD floor (quadratic in s) and the SignSGD floor (linear in s) differ.
DEMO_PROBLEM = {"h": (1.0, 2.0, 4.0), "scale": (0.5, 1.0, 2.0), "x0": (1.5, -1.0, 0.5), "lr": 1e-2}


@dataclasses.dataclass(frozen=True, eq=False)
class Demo:
    """Each optimizer's `OptimizerVsSDE` on the demo problem, by name (`"sgd"`, `"signsgd"`)."""

    problem: Quadratic
    results: dict[str, OptimizerVsSDE]

    def metrics(self) -> dict:
        per_opt = {name: both.metrics() for name, both in self.results.items()}
        return {**per_opt["signsgd"], "optimizers": per_opt}


def demo(
    *, n_paths: int = 2000, n_steps: int = 2000, key: PRNGKeyArray, progress: Progress = None
) -> Demo:
    """SGD and SignSGD (`η = 0.01`) and their SDEs on `f = ½ Σ hᵢ xᵢ²`, `h = (1, 2, 4)`, with
    Gaussian noise `s = (0.5, 1, 2)`, from `x0 = (1.5, -1, 0.5)`, saved every 10 steps. Both
    optimizers use the same `key` (required)."""
    key = check_key(key)
    spec = DEMO_PROBLEM
    prob = Quadratic(h=jnp.array(spec["h"]), noise=GaussianNoise(scale=jnp.array(spec["scale"])))
    results = {}
    with _progress.task("demo optimizers", 2) as done:
        for opt in (SGD(lr=spec["lr"]), SignSGD(lr=spec["lr"])):
            say(progress, f"{opt.name}: optimizer and SDE, {n_paths} paths x {n_steps} steps ...")
            both = optimizer_vs_sde(
                opt,
                prob,
                jnp.array(spec["x0"]),
                n_steps=n_steps,
                n_paths=n_paths,
                key=key,
                save_every=10,
            )
            results[opt.name] = both
            m = both.metrics()
            theory = m.get("stationary_loss", {}).get("theory", float("nan"))
            say(
                progress,
                f"  final E f: optimizer {m['final_mean_loss']['optimizer']:.5f}, "
                f"SDE {m['final_mean_loss']['sde']:.5f}, theory {theory:.5f}",
            )
            done.advance()
    return Demo(prob, results)
