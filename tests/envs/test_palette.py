"""AtariEnv's palette-index fast path: identical observations to the getScreenGrayscale path."""

import subprocess
import sys

import numpy as np
import pytest

from nbasync.envs import AtariEnv
from nbasync.envs import atari as atari_mod


@pytest.fixture
def fresh_palettes(monkeypatch):
    """Start with nothing learnt (the tables are per process, shared by envs of one ROM)."""
    monkeypatch.setattr(atari_mod, "_PALETTES", {})


def rollout_pair(game, steps, seed=0, **kw):
    """Same seed and actions through the fast path and the greyscale path, obs compared."""
    fast = AtariEnv(game, seed=seed, palette_lut=True, **kw)
    slow = AtariEnv(game, seed=seed, palette_lut=False, **kw)
    o1, _ = fast.reset()
    o2, _ = slow.reset()
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(seed)
    episodes = 0
    for _ in range(steps):
        a = int(rng.integers(fast.action_space.n))
        o1, r1, te1, tr1, i1 = fast.step(a)
        o2, r2, te2, tr2, i2 = slow.step(a)
        np.testing.assert_array_equal(o1, o2)
        assert (r1, te1, tr1, i1) == (r2, te2, tr2, i2)
        if te1 or tr1:
            episodes += 1
            o1, _ = fast.reset()
            o2, _ = slow.reset()
            np.testing.assert_array_equal(o1, o2)
    return fast, episodes


@pytest.mark.parametrize(
    "game, kw",
    [
        ("pong", {}),
        ("breakout", {"terminal_on_life_loss": True, "max_episode_frames": 2000}),
        ("space_invaders", {"repeat_action_probability": 0.25, "frame_skip": 3}),
    ],
)
def test_fast_path_identical_to_greyscale_path(fresh_palettes, game, kw):
    env, episodes = rollout_pair(game, 1500, **kw)
    pal = env._palette
    assert pal.consistent and pal.known.sum() >= 2
    assert 0 < env.fallback_frames < 200  # learnt early, then (almost) never needed
    if game == "breakout":
        assert episodes > 0


def test_learnt_table_is_alEs_greyscale(fresh_palettes):
    env = AtariEnv("pong", seed=1)
    env.reset()
    rng = np.random.default_rng(1)
    idx = np.zeros((210, 160), np.uint8)
    grey = np.zeros((210, 160), np.uint8)
    for _ in range(300):
        env.step(int(rng.integers(6)))
        env.ale.getScreen(idx)
        env.ale.getScreenGrayscale(grey)
        assert env._palette.known[idx].all()
        np.testing.assert_array_equal(env._palette.lum[idx], grey)


def test_unseen_index_in_either_frame_falls_back(fresh_palettes):
    """Forget the table mid-episode (reference screen all black, the one index kept): the
    check of the second-to-last frame and the kernel's check of the last must both notice."""
    fast = AtariEnv("pong", seed=2, palette_lut=True)
    slow = AtariEnv("pong", seed=2, palette_lut=False)
    fast.reset()
    slow.reset()
    for t in range(200):
        if t % 50 == 10:
            pal = fast._palette
            pal.known[:] = 0
            pal.known[0] = 1  # black stays known: most words equal to the reference
            pal.lut2[:] = 0xFFFF
            pal.lut2[0] = 0
            fast._ref[:] = 0  # invariant: every index of the reference screen is known
            before = fast.fallback_frames
        o1, *_ = fast.step(t % 6)
        o2, *_ = slow.step(t % 6)
        np.testing.assert_array_equal(o1, o2)
        if t % 50 == 10:
            assert fast.fallback_frames > before


def test_contradiction_turns_fast_path_off(fresh_palettes):
    env = AtariEnv("pong", seed=0)
    env.reset()
    pal = env._palette
    idx = np.zeros((2, 2), np.uint8)
    with pytest.warns(RuntimeWarning, match="palette_lut turned off"):
        env._learn(idx, np.array([[1, 1], [1, 2]], np.uint8))
    assert not pal.consistent
    ref = AtariEnv("pong", seed=0, palette_lut=False)
    ref.reset()
    # the table's contradiction cannot change the observations: grey path from now on
    env2 = AtariEnv("pong", seed=5)
    ref2 = AtariEnv("pong", seed=5, palette_lut=False)
    np.testing.assert_array_equal(env2.reset()[0], ref2.reset()[0])
    for t in range(20):
        np.testing.assert_array_equal(env2.step(t % 6)[0], ref2.step(t % 6)[0])


def test_no_ale_banner():
    code = "from nbasync.envs import AtariEnv; AtariEnv('pong', seed=0).reset()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "A.L.E" not in out.stdout + out.stderr
    assert "Stella" not in out.stdout + out.stderr


def test_delta_kernel_equals_full_pass():
    """_lut_pool_resize_push with delta=True (redo only changed words / rows) gives the
    bytes of a full pass, on screens that change a little, a lot, and not at all."""
    rng = np.random.default_rng(0)
    H, W = 210, 160
    tables = (*atari_mod.area_tables(W, 84), *atari_mod.area_tables(H, 84))
    x_idx, x_w, y_idx, y_w = tables
    lum = rng.integers(0, 256, 256).astype(np.uint16)
    lut2 = np.maximum(lum[:, None], lum[None, :]).ravel().astype(np.uint16)

    def state():
        return dict(
            stack=np.zeros((4, 84, 84), np.uint8),
            grey=np.zeros((H, W), np.uint8),
            fw=np.zeros(atari_mod.work_size(H, W, 84), np.float32),
            prev=np.zeros((2, H, W), np.uint8),
            rows=np.zeros(H, np.uint8),
        )

    fast, full = state(), state()
    b = rng.integers(0, 256, (H, W)).astype(np.uint8)
    for step in range(40):
        a, b = b, b.copy()  # the pair is (frame k, frame k + 1)
        if step % 10 == 9:
            b[:] = rng.integers(0, 256, (H, W))  # everything changes
        elif step % 10 != 5:  # step 5: nothing changes
            r, c = rng.integers(0, H - 8), rng.integers(0, W - 8)
            b[r : r + 8, c : c + 3] = rng.integers(0, 256, (8, 3))  # a small object moves
        for st, delta in ((fast, step > 0), (full, False)):
            ok = atari_mod._lut_pool_resize_push(
                a, b, lut2, st["stack"], x_idx, x_w, y_idx, y_w, st["grey"], st["fw"],
                st["prev"], st["rows"], delta,
            )  # fmt: skip
            assert ok
        np.testing.assert_array_equal(fast["stack"], full["stack"])
        if step % 10 not in (0, 9):  # the delta pass redid a few rows only
            assert fast["rows"].sum() <= 16  # at most two 8-row patches changed
    np.testing.assert_array_equal(
        fast["stack"][-1], atari_mod.resize_area(lum[a].astype(np.uint8), (84, 84),
                                                 lum[b].astype(np.uint8))
    )  # fmt: skip
