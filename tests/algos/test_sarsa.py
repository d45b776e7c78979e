"""One-step SARSA's a': each transition is learned once, with the action the worker took next.

The worker defers a rollout's last transition to the next rollout (``ActorLearner.carry``),
whose first forward takes its state along in one batch: one forward on theta' per step.
These tests follow one worker's real loop on CartPole and its Atari-size twin's buffers.
"""

from __future__ import annotations

import numpy as np
import pytest

from nbasync.algos import ActorLearner, get_algorithm
from nbasync.algos import onestep_sarsa as sarsa_mod


@pytest.mark.parametrize("t_max", [1, 5])
def test_every_transition_is_learned_once_with_the_next_action_taken(
    make_learners, monkeypatch, t_max
):
    taken: list[tuple[int, bool]] = []  # (action executed, did its episode end there)
    updates: list[dict[str, np.ndarray]] = []
    forwards = [0]

    step, act_forward, rejoin = ActorLearner.step, ActorLearner.act_forward, ActorLearner._rejoin

    def record_step(self, action):
        out = step(self, action)
        taken.append((int(action), out[2] or out[3]))
        return out

    def count(fn):
        def counted(self, *args):
            forwards[0] += 1
            return fn(self, *args)

        return counted

    targets, td_loss = sarsa_mod.sarsa_targets, sarsa_mod.td_loss

    def record_targets(rewards, terminated, next_q, next_actions, gamma, out):
        updates.append({"terminated": terminated.copy(), "next": next_actions.copy()})
        return targets(rewards, terminated, next_q, next_actions, gamma, out)

    def record_loss(outputs, actions, y, dout):
        updates[-1]["actions"] = actions.copy()
        return td_loss(outputs, actions, y, dout)

    monkeypatch.setattr(ActorLearner, "step", record_step)
    monkeypatch.setattr(ActorLearner, "act_forward", count(act_forward))
    monkeypatch.setattr(ActorLearner, "_rejoin", count(rejoin))
    monkeypatch.setattr(sarsa_mod, "sarsa_targets", record_targets)
    monkeypatch.setattr(sarsa_mod, "td_loss", record_loss)
    (learner,) = make_learners(algo="onestep_sarsa", steps=3000, t_max=t_max, seed=3)
    get_algorithm("onestep_sarsa").run(learner)

    # one forward on theta' per step taken (CartPole is never cut by its time limit here)
    assert len(taken) >= 3000 and forwards[0] == len(taken)
    learned = [
        (int(a), int(a2), bool(end))
        for u in updates
        for a, a2, end in zip(u["actions"], u["next"], u["terminated"], strict=True)
    ]
    # every step taken is learned once, in order; the last one may still be carried
    assert len(taken) - 1 <= len(learned) <= len(taken)
    assert [a for a, _, _ in learned] == [a for a, _ in taken[: len(learned)]]
    for k, (_, next_action, terminated) in enumerate(learned):
        assert terminated == taken[k][1]
        if not terminated:
            assert next_action == taken[k + 1][0]  # a' is the action taken in s'
    # an update has t_max transitions, one less in an episode's first rollout, and ends
    # early only with the episode
    # (with t_max 1 an episode's first rollout learns nothing, so no update is short)
    first_of_episode = True
    for u in updates:
        n, ended = len(u["actions"]), bool(u["terminated"][-1])
        short = first_of_episode and t_max > 1
        if not ended:
            assert n == t_max - short
        else:
            assert n <= t_max + (not short)
        first_of_episode = ended


def test_carried_state_is_forwarded_again_on_the_updated_parameters(make_learners):
    (w,) = make_learners(algo="onestep_sarsa", steps=100, t_max=3, seed=0)
    obs = w.reset()
    w.sync()
    r = w.rollout(obs, lambda t, q: 0)
    assert r.n == 3 and not (r.terminated or r.truncated)
    w.carry(r.n - 1)
    kept = w.obs[0].copy()
    w.net.params *= 0.5  # as an update would: the carried row's outputs must follow
    w.rollout(r.obs, lambda t, q: 0, carried=1)
    np.testing.assert_array_equal(w.obs[0], kept)
    alone = w.net.forward(w.obs[0:1], row=0)[0]
    np.testing.assert_allclose(w.outputs[0], alone, rtol=1e-6, atol=1e-7)
