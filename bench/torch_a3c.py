"""REFERENCE ONLY (optional PyTorch): one A3C worker loop in PyTorch, training steps/s.

Not part of nbasync and not imported by it; ``bench/throughput.py`` runs it when torch
imports, to compare nbasync's 1-worker A3C against a conventional PyTorch implementation
on one core. Same work per step as nbasync's A3C worker:

* env: nbasync's own ``AtariEnv`` (Pong, DQN preprocessing, uint8 (4, 84, 84) / 255);
* network: conv 16 8x8/4, conv 32 4x4/2, dense 256, one linear head of n_actions + 1
  (policy logits and V(s)), ReLUs; float32; ``torch.set_num_threads(1)``;
* per rollout (t_max 5): copy the shared parameters into the local net (the A3C sync),
  act with one forward per step (graph kept, as the usual PyTorch A3C code does), R
  bootstrapped from V(s_t), loss = -log pi * A - 0.01 H + 0.5 (R - V)^2 summed,
  backward, clip the norm at 40, RMSProp (alpha 0.99, eps 0.1) on the shared parameters.

One process, no shared memory: the cost of the worker loop only.

    python bench/torch_a3c.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(n_actions: int):
    import torch
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(4, 16, 8, stride=4),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 9 * 9, 256),
        nn.ReLU(),
        nn.Linear(256, n_actions + 1),
    ).to(torch.float32)


def measure(seconds: float = 10.0, warmup_steps: int = 200, t_max: int = 5) -> float:
    """Agent steps per second of the training loop, after ``warmup_steps``."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from nbasync.envs import AtariEnv

    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = AtariEnv("pong", seed=0)
    A = env.action_space.n
    shared = build(A)
    local = build(A)
    opt = torch.optim.RMSprop(shared.parameters(), lr=7e-4, alpha=0.99, eps=0.1)
    obs, _ = env.reset()
    steps = 0
    t0 = None
    while True:
        if steps >= warmup_steps and t0 is None:
            t0, s0 = time.perf_counter(), steps
        if t0 is not None and time.perf_counter() - t0 >= seconds:
            return (steps - s0) / (time.perf_counter() - t0)
        local.load_state_dict(shared.state_dict())  # theta' <- theta
        logps, values, ents, rewards = [], [], [], []
        done = False
        for _ in range(t_max):
            x = torch.from_numpy(obs).to(torch.float32).div_(255.0).unsqueeze(0)
            out = local(x)[0]
            logp = F.log_softmax(out[:A], dim=0)
            a = int(torch.multinomial(logp.exp(), 1))
            obs, r, te, tr, _ = env.step(a)
            steps += 1
            logps.append(logp[a])
            ents.append(-(logp.exp() * logp).sum())
            values.append(out[A])
            rewards.append(float(r))
            if te or tr:
                done = te
                obs, _ = env.reset()
                break
        with torch.no_grad():
            x = torch.from_numpy(obs).to(torch.float32).div_(255.0).unsqueeze(0)
            R = 0.0 if done else float(local(x)[0, A])
        loss = torch.zeros(())
        for i in reversed(range(len(rewards))):
            R = rewards[i] + 0.99 * R
            adv = R - values[i]
            loss = loss - logps[i] * adv.detach() - 0.01 * ents[i] + 0.5 * adv.pow(2)
        local.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(local.parameters(), 40.0)
        for sp, lp in zip(shared.parameters(), local.parameters(), strict=True):
            sp.grad = lp.grad
        opt.step()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    print(f"torch A3C reference, 1 process, 1 thread: {measure(args.seconds):.0f} steps/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
