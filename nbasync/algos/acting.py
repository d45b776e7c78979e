"""How a trained agent picks actions from its network's output: written once per head.

Owns acting with fixed parameters (evaluation, ``nbasync-eval``), not exploration during
learning (each algorithm's module does that: A3C samples its policy, the Q methods act
epsilon-greedily with an annealed epsilon). An algorithm's head decides which of these it
uses (``AlgorithmSpec.acting``)::

    policy head (A3C)  discrete:   argmax pi (greedy) or a ~ pi
                       continuous: the mean (greedy) or a ~ N(mu, var); clipped to bounds
    Q head             argmax_a Q(s, a); with epsilon > 0 a uniform action w.p. epsilon

``act(out_row) -> action`` (an int, or a float32 array reused from call to call);
``act.description`` names the policy for reports.
"""

from __future__ import annotations

import numpy as np

from ..build import POLICY_VALUE, Q_VALUES
from ..envs import EnvInfo
from ..nn import gaussian_mean, gaussian_sample, sample_from_logits


class PolicyActing:
    """The policy head's actions: argmax pi or a sample (discrete), the Gaussian's mean or a
    sample (continuous, clipped to the action bounds)."""

    def __init__(self, info: EnvInfo, rng: np.random.Generator, greedy: bool):
        self.info, self.rng, self.greedy = info, rng, greedy
        if info.discrete:
            self.description = "greedy policy (argmax pi)" if greedy else "sampled policy"
        else:
            self.description = "mean action" if greedy else "sampled actions"
            D = int(info.action_low.size)
            self.noise = np.zeros(D)
            self.sample = np.zeros(D, dtype=np.float32)
            self.clipped = np.zeros(D, dtype=np.float32)

    def __call__(self, out: np.ndarray) -> int | np.ndarray:
        info = self.info
        if info.discrete:
            logits = out[: info.n_actions]
            if self.greedy:
                return int(np.argmax(logits))
            return sample_from_logits(logits, self.rng.random())
        if self.greedy:
            gaussian_mean(out, info.action_low, info.action_high, self.clipped)
        else:
            self.rng.standard_normal(out=self.noise)
            gaussian_sample(
                out, self.noise, info.action_low, info.action_high, self.sample, self.clipped
            )
        return self.clipped


class QActing:
    """argmax_a Q(s, a), or a uniform random action with probability ``epsilon``."""

    def __init__(self, info: EnvInfo, rng: np.random.Generator, epsilon: float):
        self.n_actions, self.rng, self.epsilon = info.n_actions, rng, epsilon
        self.description = (
            f"epsilon-greedy on Q, epsilon {epsilon:g}" if epsilon > 0 else "greedy on Q"
        )

    def __call__(self, out: np.ndarray) -> int:
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        return int(np.argmax(out))


Acting = PolicyActing | QActing


def acting_for(
    head: str, info: EnvInfo, rng: np.random.Generator, greedy: bool, epsilon: float
) -> Acting:
    """The acting of ``head``: ``greedy`` is read by the policy head, ``epsilon`` by Q."""
    if head == POLICY_VALUE:
        return PolicyActing(info, rng, greedy)
    if head == Q_VALUES:
        return QActing(info, rng, epsilon)
    raise ValueError(f"no acting for head {head!r}")
