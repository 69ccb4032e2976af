import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")


def tiny_network():
    """A 2-layer tanh network (3 → 8 → 1) on 40 fixed random points: d = 24 + 8 + 8 + 1 = 41
    parameters, at a random parameter vector (its Hessian is indefinite). Shared by the
    flatness tests."""
    inputs = jax.random.normal(jax.random.key(0), (40, 3))
    targets = jnp.sin(inputs[:, 0]) + 0.5 * inputs[:, 1]

    def loss(p):
        w1, b1, w2, b2 = p[:24].reshape(3, 8), p[24:32], p[32:40], p[40]
        return jnp.mean((jnp.tanh(inputs @ w1 + b1) @ w2 + b2 - targets) ** 2)

    return loss, 0.5 * jax.random.normal(jax.random.key(1), (41,))
