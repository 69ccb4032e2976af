"""Problems: a loss and its data, with a gradient-noise model."""

from ._base import AbstractProblem as AbstractProblem
from ._function import Problem as Problem
from ._names import NOISES as NOISES, PROBLEMS as PROBLEMS, problem_by_name as problem_by_name
from ._network import (
    LOSSES as LOSSES,
    NETWORK_PROBLEMS as NETWORK_PROBLEMS,
    NetworkProblem as NetworkProblem,
    network_problem as network_problem,
)
from ._quadratic import NOISE_KINDS as NOISE_KINDS, Quadratic as Quadratic
