"""nbasync/Labyrinth-v0: the maze generator, the renderer (a known view gives a known frame),
rewards and respawns, episode length, determinism, and the gymnasium contract."""

from __future__ import annotations

from collections import deque

import gymnasium
import numpy as np
import pytest

from nbasync.envs import EnvError, LabyrinthEnv, make_env
from nbasync.envs.labyrinth import CEILING, FLOOR, WALL_TINTS, generate_maze

FORWARD, BACKWARD, LEFT, RIGHT, TURN_LEFT, TURN_RIGHT = range(6)


def _reachable_cells(grid) -> int:
    n = grid.shape[0] // 2
    start = (1, 1)
    seen = {start}
    todo = deque([start])
    while todo:
        r, c = todo.popleft()
        for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            nr, nc = r + dr, c + dc
            if grid[nr, nc] == 0 and (nr, nc) not in seen:
                seen.add((nr, nc))
                todo.append((nr, nc))
    return sum(1 for r, c in seen if r % 2 == 1 and c % 2 == 1 and r < 2 * n + 1)


@pytest.mark.parametrize("n", [2, 5, 9])
def test_maze_is_connected_walled_and_has_loops(n):
    grid = generate_maze(n, np.random.default_rng(n))
    assert grid.shape == (2 * n + 1, 2 * n + 1)
    assert grid[0].all() and grid[-1].all() and grid[:, 0].all() and grid[:, -1].all()
    assert not grid[1::2, 1::2].any()  # every cell is open
    assert grid[::2, ::2].all()  # pillars stay
    assert _reachable_cells(grid) == n * n
    openings = int((grid[1:-1, 1:-1] == 0).sum()) - n * n  # walls removed between cells
    assert openings == n * n - 1 + n * n // 8  # a spanning tree, plus the extra openings


def test_maze_is_seeded():
    def maze(seed):
        return generate_maze(7, np.random.default_rng(seed))

    np.testing.assert_array_equal(maze(3), maze(3))
    assert not np.array_equal(maze(3), maze(4))


CORRIDOR = ["#######", "#A....#", "#######"]


def test_known_view_gives_known_frame():
    env = LabyrinthEnv(0)
    obs, _ = env.reset(options={"layout": CORRIDOR})
    assert obs.shape == (3, 84, 84) and obs.dtype == np.uint8
    # Looking east along the corridor at the end wall (tile x = 6): perpendicular distance
    # 6 - 1.5 = 4.5 tiles, so a wall 84 / 4.5 = 18.7 rows high around the horizon (row 42).
    col = obs[:, :, 42]
    dist = 4.5
    top, bottom = int(np.floor(42 - 42 / dist)), int(np.floor(42 + 42 / dist))
    tint = WALL_TINTS[(6 * 7 + 1 * 13) % 4]
    wall = np.minimum(255, tint * (1.0 / (1 + 0.12 * dist))).astype(np.uint8)
    for row in range(top, bottom):
        np.testing.assert_array_equal(col[:, row], wall)
    np.testing.assert_array_equal(col[:, 0], CEILING.astype(np.uint8))  # brightest at the top
    np.testing.assert_array_equal(col[:, 83], FLOOR.astype(np.uint8))
    assert (col[:, top - 1] != wall).any() and (col[:, bottom] != wall).any()
    # The leftmost ray (direction (1, -0.642)) meets the corridor's side wall y = 1 at
    # distance 0.5 / 0.642 = 0.78, in tile (x 2, y 0): a y-side, shaded 0.75.
    side_ray_y = np.tan(np.radians(33.0)) * (1 - 1 / 84)
    side_dist = 0.5 / side_ray_y
    side = np.minimum(255, WALL_TINTS[(2 * 7) % 4] * 0.75 / (1 + 0.12 * side_dist))
    np.testing.assert_array_equal(obs[:, 42, 0], side.astype(np.uint8))


def test_apple_in_view_is_a_red_disc_on_the_floor():
    env = LabyrinthEnv(0)
    obs, _ = env.reset(options={"layout": ["#######", "#A.o..#", "#######"]})
    r, g, b = obs[:, 60, 42].astype(int)  # below the horizon, in the middle: the apple
    assert r > 2 * g and r > 2 * b
    empty, _ = env.reset(options={"layout": CORRIDOR})
    assert (empty[:, 60, 42] != obs[:, 60, 42]).any()


def test_apple_then_portal_then_respawn():
    env = LabyrinthEnv(5)
    env.reset(options={"layout": ["######", "#AoP.#", "######"]})
    rewards = []
    for _ in range(6):
        _, reward, terminated, truncated, info = env.step(FORWARD)
        rewards.append(reward)
        assert not terminated and not truncated
    # 0.25 a step from x = 1.5: the apple at 2.5 is eaten at x = 2.25 (within 0.5), the
    # portal's cell [3, 4) is entered at x = 3.0 -> +10 and a respawn in another cell
    assert rewards == [0.0, 0.0, 1.0, 0.0, 0.0, 10.0]
    assert info == {"apples": 1, "portals": 1}
    assert int(env._pos[0]) in (1, 2, 4) and env._pos[1] == 1.5
    assert env._sprites[0, 0] < 0  # the apple stays eaten


def test_walls_stop_the_agent_and_turning_changes_the_view():
    env = LabyrinthEnv(0)
    obs0, _ = env.reset(options={"layout": CORRIDOR})
    for _ in range(40):
        env.step(FORWARD)
    assert env._pos[0] == 5.75  # the last whole step that keeps its 0.2 radius off x = 6
    for _ in range(3):  # 0.18 a step towards the wall at y = 1: stops at 1.32 (+ radius 0.2)
        env.step(LEFT)
    assert env._pos[1] == pytest.approx(1.32)
    turned, *_ = env.step(TURN_LEFT)
    assert not np.array_equal(turned, obs0)


def test_episode_is_sixty_seconds_and_never_terminates():
    env = LabyrinthEnv(1)
    env.reset()
    for t in range(1, 901):
        _, _, terminated, truncated, _ = env.step(t % 6)
        assert not terminated
        assert truncated == (t == 900)
    with pytest.raises(RuntimeError):
        env.step(0)


def test_same_seed_same_episode_and_a_new_maze_each_reset():
    def play(seed):
        env = LabyrinthEnv(seed)
        frames, rewards = [env.reset()[0]], []
        acts = np.random.default_rng(0).integers(0, 6, 300)
        for a in acts:
            obs, r, *_ = env.step(int(a))
            frames.append(obs)
            rewards.append(r)
        return np.array(frames), rewards, env.grid.copy()

    a, b = play(7), play(7)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    env = LabyrinthEnv(7)
    env.reset()
    first = env.grid.copy()
    env.reset()
    assert not np.array_equal(first, env.grid)


def test_gymnasium_contract_and_routing():
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("nbasync/Labyrinth-v0")
    check_env(env.unwrapped, skip_render_check=True)
    routed = make_env("nbasync/Labyrinth-v0", seed=3, render_mode="rgb_array")
    assert isinstance(routed, LabyrinthEnv)
    routed.reset()
    top = routed.render()
    assert top.ndim == 3 and top.shape[2] == 3 and top.dtype == np.uint8
    last = LabyrinthEnv(0, channels_last=True)
    assert last.reset()[0].shape == (84, 84, 3)
    with pytest.raises(EnvError, match="maze_size"):
        LabyrinthEnv(0, maze_size=1)
    with pytest.raises(EnvError, match="cannot make"):
        make_env("nbasync/Labyrinth-v0", seed=0, no_such_option=1)
    with pytest.raises(EnvError, match="layout"):
        LabyrinthEnv(0).reset(options={"layout": ["#A#", "#x#"]})


@pytest.mark.slow
@pytest.mark.parametrize("recurrent", [False, True])
def test_a3c_trains_on_labyrinth_pixels(tmp_path, recurrent):
    """The whole stack takes the maze: the conv net on 3 x 84 x 84 frames scaled to [0, 1],
    a worker process, the run file (learning itself is a long run, see docs/results)."""
    from nbasync.config import build_config
    from nbasync.runfile import RunFile
    from nbasync.train import train

    config = build_config(
        {
            "algo": "a3c",
            "env": "nbasync/Labyrinth-v0",
            "workers": 1,
            "steps": 1000,
            "recurrent": recurrent,
            "lstm_size": 16,
            "quiet": True,
            "out": str(tmp_path / "run"),
        }
    )
    assert config.network == "atari" and not config.clip_rewards  # the labyrinth preset
    assert config.entropy_beta == 1e-3  # measured: 0.01 pulls the sparse-reward policy flat
    summary = train(config)
    assert summary.steps >= 1000 and summary.episodes == 1  # 900-step episodes
    (episode,) = RunFile.open(tmp_path / "run").episodes()
    assert episode["length"] == 900
