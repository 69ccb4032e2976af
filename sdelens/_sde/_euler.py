"""One Euler–Maruyama step of an optimizer SDE as a single diffrax term.

diffrax's `Euler` adds `ODETerm(b).vf_prod + ControlTerm(G, W).vf_prod`: the drift and the
diffusion are two separate calls. Where both need the loss gradient (Adam's and RMSprop's
preconditioner, SignSGD's moments) or per-example gradients (minibatch noise), each call
computes its own. Inside the solver's loop XLA does not merge the two: it shares the forward
pass but repeats the backward pass (measured on mlp-digits: 5 extra matrix products per step of
the Adam SDE, whose full-batch gradient has 8). `EulerIncrementTerm` hands diffrax the whole
increment `b(t, Y) dt + G(t, Y) dW` from one call of the SDE, which computes what drift and
diffusion share once (`sde._increment` where the SDE has one).
"""

from __future__ import annotations

import diffrax
import jax

from ._base import AbstractOptimizerSDE, State

__all__ = ["EulerIncrementTerm", "euler_increment", "combine_increment"]


def combine_increment(drift: State, diffusion, dt, dw) -> State:
    """`b dt + G dW` with diffrax's own arithmetic (`ODETerm.prod`: `dt · b`;
    `ControlTerm.prod`: `G.mv(dW)`; `MultiTerm`: their sum), so an Euler step through
    `EulerIncrementTerm` is the `MultiTerm` step up to XLA's fusion choices."""
    return jax.tree.map(lambda b, g: dt * b + g, drift, diffusion.mv(dw))


def euler_increment(sde: AbstractOptimizerSDE, t, y: State, args, dt, dw) -> State:
    """`b(t, y) dt + G(t, y) dW` of `sde`: its own `_increment`, which evaluates what drift
    and diffusion share once, or the two evaluated separately."""
    own = getattr(sde, "_increment", None)
    if own is not None:
        return own(t, y, args, dt, dw)
    return combine_increment(sde.drift(t, y, args), sde.diffusion(t, y, args), dt, dw)


class EulerIncrementTerm(diffrax.AbstractTerm):
    """The SDE `dY = b dt + G dW` as one term for `diffrax.Euler`: control `(dt, dW)`,
    `vf_prod` the increment `b dt + G dW` from one call (`euler_increment`).

    Only for solvers that use nothing but `vf_prod` (Euler). Solvers that evaluate the vector
    field and the control apart (Heun, Milstein, ...) need the `MultiTerm` of
    `AbstractOptimizerSDE.terms`.
    """

    sde: AbstractOptimizerSDE
    brownian: diffrax.AbstractBrownianPath

    def vf(self, t, y, args):
        return self.sde.drift(t, y, args), self.sde.diffusion(t, y, args)

    def contr(self, t0, t1, **kwargs):
        return t1 - t0, self.brownian.evaluate(t0, t1, **kwargs)

    def prod(self, vf, control):
        (drift, diffusion), (dt, dw) = vf, control
        return combine_increment(drift, diffusion, dt, dw)

    def vf_prod(self, t, y, args, control):
        dt, dw = control
        return euler_increment(self.sde, t, y, args, dt, dw)
