"""Labyrinth: a first-person maze that is new every episode, drawn by ray casting in numba.

Owns ``nbasync/Labyrinth-v0`` (:class:`LabyrinthEnv`): the maze generator, the movement and
reward rules, and the two renderers (the agent's first-person 84x84 RGB view and a top-down
map for people). No OpenGL, no extra dependency: an analogue of the paper's DeepMind Lab
Labyrinth task (A3C LSTM learns to explore a random 3-D maze from pixels).

The task (the paper's description, and the numbers chosen here where it gives none):

* A maze is generated afresh at every reset from the episode's seed: a perfect maze of
  ``maze_size`` x ``maze_size`` cells (randomised depth-first search), plus
  ``maze_size**2 // 8`` extra openings so that there are loops.
* Apples (+1) lie in about a quarter of the cells; a portal (+10) in one. Entering the
  portal's cell scores +10 and respawns the agent in a random other cell; the maze, the
  portal and the apples not yet eaten stay. An apple is eaten by coming within half a cell.
* An episode lasts 60 seconds of game time: 60 frames/s with an action repeat of 4, so 15
  agent steps per second and 900 steps (``truncated`` then; it never terminates).
* Actions: 0 forward, 1 backward, 2 strafe left, 3 strafe right, 4 turn left, 5 turn right
  (0.25 cell per step forward or back, 0.18 sideways, 15 degrees per turn); the agent is a
  disc of radius 0.2 cells that slides along walls.
* Observation: uint8 RGB, channels first ``(3, 84, 84)`` (the layout of nbasync's conv net;
  ``channels_last=True`` gives gymnasium's usual ``(84, 84, 3)``). Walls are shaded by side
  and by distance and carry one of four tints (a landmark), floor and ceiling darken with
  distance; apples (red) and the portal (violet) are drawn as sprites behind a depth test.

Geometry: the maze is a tile grid of ``2 * maze_size + 1`` squares, 1 = wall; cell (i, j) is
tile (2i + 1, 2j + 1). Positions are (x, y) in tile units, x along columns, y along rows;
angle 0 looks along +x, and turning left decreases the angle (y grows downwards).

Deterministic: the same seed gives the same mazes, frames and rewards for the same actions.
``reset(options={"layout": [...]})`` plays a hand-drawn map instead ('#' wall, '.' floor,
'A' the agent looking east, 'o' an apple, 'P' the portal): the tests use it.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numba
import numpy as np
from gymnasium import spaces

from .errors import EnvError

__all__ = ["LabyrinthEnv", "generate_maze", "render_view"]

STEPS_PER_SECOND = 15  # 60 frames/s, action repeat 4
EPISODE_SECONDS = 60
APPLE_REWARD, PORTAL_REWARD = 1.0, 10.0
MOVE, STRAFE, TURN = 0.25, 0.18, math.radians(15.0)
RADIUS = 0.2  # the agent's disc, in tiles
REACH = 0.5  # eat an apple within this distance of its centre
FOV = math.radians(66.0)

# colours (RGB)
CEILING = np.array([70, 90, 130], np.float32)
FLOOR = np.array([90, 70, 50], np.float32)
WALL_TINTS = np.array(
    [[200, 200, 200], [200, 170, 120], [130, 190, 140], [140, 150, 210]], np.float32
)
APPLE = np.array([220, 30, 30], np.float32)
PORTAL = np.array([170, 60, 230], np.float32)


# --------------------------------------------------------------------------------------
# The maze
# --------------------------------------------------------------------------------------


def generate_maze(n: int, rng: np.random.Generator, extra_openings: int | None = None):
    """A tile grid (uint8, 1 = wall) of an n x n-cell maze: a perfect maze by randomised
    depth-first search, then ``extra_openings`` (default n*n // 8) walls between two cells
    removed at random, which makes loops. Every cell is reachable from every other."""
    size = 2 * n + 1
    grid = np.ones((size, size), np.uint8)
    seen = np.zeros((n, n), bool)
    stack = [(int(rng.integers(n)), int(rng.integers(n)))]
    seen[stack[0]] = True
    grid[2 * stack[0][0] + 1, 2 * stack[0][1] + 1] = 0
    steps = ((0, 1), (1, 0), (0, -1), (-1, 0))
    while stack:
        i, j = stack[-1]
        options = [
            (i + di, j + dj)
            for di, dj in steps
            if 0 <= i + di < n and 0 <= j + dj < n and not seen[i + di, j + dj]
        ]
        if not options:
            stack.pop()
            continue
        ni, nj = options[int(rng.integers(len(options)))]
        seen[ni, nj] = True
        grid[2 * ni + 1, 2 * nj + 1] = 0
        grid[i + ni + 1, j + nj + 1] = 0  # the wall between the two cells
        stack.append((ni, nj))
    # walls between two cells: one coordinate odd, the other even, inside the border
    rows, cols = np.nonzero(grid[1:-1, 1:-1])
    rows, cols = rows + 1, cols + 1
    between = (rows % 2) != (cols % 2)
    candidates = np.stack([rows[between], cols[between]], axis=1)
    k = n * n // 8 if extra_openings is None else int(extra_openings)
    if k and len(candidates):
        chosen = rng.choice(len(candidates), size=min(k, len(candidates)), replace=False)
        for r, c in candidates[chosen]:
            grid[r, c] = 0
    return grid


def _parse_layout(lines: list[str]):
    """'#'/'.'/'A'/'o'/'P' map -> (grid, agent xy, apples xy, portal xy)."""
    rows = [line.rstrip("\n") for line in lines]
    if not rows or len({len(r) for r in rows}) != 1:
        raise EnvError("layout: rows must be non-empty and of equal length")
    grid = np.array([[1 if ch == "#" else 0 for ch in r] for r in rows], np.uint8)
    found: dict[str, list[tuple[float, float]]] = {"A": [], "o": [], "P": []}
    for y, r in enumerate(rows):
        for x, ch in enumerate(r):
            if ch not in "#.AoP":
                raise EnvError(f"layout: unknown square {ch!r} (use # . A o P)")
            if ch in found:
                found[ch].append((x + 0.5, y + 0.5))
    if len(found["A"]) != 1 or len(found["P"]) > 1:
        raise EnvError("layout: needs exactly one 'A' and at most one 'P'")
    portal = found["P"][0] if found["P"] else (-10.0, -10.0)
    return grid, found["A"][0], found["o"], portal


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _blocked(grid, x, y):
    """Does a disc of radius RADIUS at (x, y) overlap a wall tile?"""
    for dy in (-RADIUS, RADIUS):
        for dx in (-RADIUS, RADIUS):
            c = int(math.floor(x + dx))
            r = int(math.floor(y + dy))
            if r < 0 or c < 0 or r >= grid.shape[0] or c >= grid.shape[1] or grid[r, c]:
                return True
    return False


@numba.njit(cache=True)
def _move(grid, pos, dx, dy):
    """Slide along walls: x and y are tried one after the other."""
    if not _blocked(grid, pos[0] + dx, pos[1]):
        pos[0] += dx
    if not _blocked(grid, pos[0], pos[1] + dy):
        pos[1] += dy


@numba.njit(cache=True)
def render_view(grid, x, y, angle, sprites, sprite_colour, sprite_size, out, zbuf):
    """First-person view into ``out`` (3, H, W) uint8, by ray casting (DDA) per column.

    sprites (k, 2) centres in tiles; a sprite is skipped when its x is negative (eaten).
    sprite_colour (k, 3) float32; sprite_size (k,) height as a fraction of a wall.
    zbuf (W,) float64 scratch: each column's distance to its wall, for the sprites' depth test.
    """
    _, H, W = out.shape
    dir_x, dir_y = math.cos(angle), math.sin(angle)
    plane = math.tan(FOV / 2.0)
    plane_x, plane_y = -dir_y * plane, dir_x * plane
    half = H / 2.0
    for col in range(W):
        cam = 2.0 * (col + 0.5) / W - 1.0
        rx, ry = dir_x + plane_x * cam, dir_y + plane_y * cam
        mx, my = int(math.floor(x)), int(math.floor(y))
        ddx = abs(1.0 / rx) if rx != 0.0 else 1e30
        ddy = abs(1.0 / ry) if ry != 0.0 else 1e30
        if rx < 0:
            step_x, side_x = -1, (x - mx) * ddx
        else:
            step_x, side_x = 1, (mx + 1.0 - x) * ddx
        if ry < 0:
            step_y, side_y = -1, (y - my) * ddy
        else:
            step_y, side_y = 1, (my + 1.0 - y) * ddy
        side = 0
        for _ in range(4 * (grid.shape[0] + grid.shape[1])):
            if side_x < side_y:
                side_x += ddx
                mx += step_x
                side = 0
            else:
                side_y += ddy
                my += step_y
                side = 1
            if mx < 0 or my < 0 or my >= grid.shape[0] or mx >= grid.shape[1] or grid[my, mx]:
                break
        dist = (side_x - ddx) if side == 0 else (side_y - ddy)
        dist = max(dist, 1e-3)
        zbuf[col] = dist
        height = H / dist
        top = int(math.floor(half - height / 2.0))
        bottom = int(math.floor(half + height / 2.0))
        tint = (abs(mx) * 7 + abs(my) * 13) % WALL_TINTS.shape[0]
        shade = (1.0 if side == 0 else 0.75) / (1.0 + 0.12 * dist)
        for row in range(H):
            if row < top:
                fade = (half - row) / half  # 1 at the top, 0 at the horizon
                for ch in range(3):
                    out[ch, row, col] = np.uint8(CEILING[ch] * (0.35 + 0.65 * fade))
            elif row >= bottom:
                fade = (row + 1 - half) / half
                for ch in range(3):
                    out[ch, row, col] = np.uint8(FLOOR[ch] * (0.35 + 0.65 * fade))
            else:
                for ch in range(3):
                    out[ch, row, col] = np.uint8(min(255.0, WALL_TINTS[tint, ch] * shade))
    # sprites, far to near, each a disc standing on the floor
    k = sprites.shape[0]
    depth = np.empty(k)
    for s in range(k):
        depth[s] = (sprites[s, 0] - x) ** 2 + (sprites[s, 1] - y) ** 2
    inv_det = 1.0 / (plane_x * dir_y - dir_x * plane_y)
    for s in np.argsort(-depth):
        if sprites[s, 0] < 0:
            continue
        sx, sy = sprites[s, 0] - x, sprites[s, 1] - y
        tx = inv_det * (dir_y * sx - dir_x * sy)
        tz = inv_det * (-plane_y * sx + plane_x * sy)
        if tz <= 0.1:
            continue
        centre_col = (W / 2.0) * (1.0 + tx / tz)
        size = sprite_size[s] * H / tz
        radius = size / 2.0
        cy = half + (H / tz) / 2.0 - radius  # resting on the floor
        c0 = max(0, int(math.floor(centre_col - radius)))
        c1 = min(W - 1, int(math.ceil(centre_col + radius)))
        r0 = max(0, int(math.floor(cy - radius)))
        r1 = min(H - 1, int(math.ceil(cy + radius)))
        light = 1.0 / (1.0 + 0.12 * tz)
        for col in range(c0, c1 + 1):
            if tz >= zbuf[col]:
                continue
            for row in range(r0, r1 + 1):
                ddx = col + 0.5 - centre_col
                ddy = row + 0.5 - cy
                if ddx * ddx + ddy * ddy <= radius * radius:
                    for ch in range(3):
                        out[ch, row, col] = np.uint8(min(255.0, sprite_colour[s, ch] * light))


# --------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------


class LabyrinthEnv(gymnasium.Env):
    """``nbasync/Labyrinth-v0``: see the module docstring for the task.

    Args:
        seed: seeds the generator of the mazes and respawns; ``reset(seed=...)`` reseeds.
        maze_size: cells per side (7: a 15 x 15 tile grid).
        apple_fraction: share of the cells that start with an apple.
        episode_steps: agent steps per episode (900 = 60 s at 15 steps/s).
        screen_size: side of the square first-person frame (84).
        channels_last: observation (H, W, 3) instead of (3, H, W).
        render_mode: "rgb_array" renders the top-down map (for people, GIFs).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": STEPS_PER_SECOND}
    ACTIONS = ("forward", "backward", "strafe_left", "strafe_right", "turn_left", "turn_right")

    def __init__(
        self,
        seed: int | None = None,
        *,
        maze_size: int = 7,
        apple_fraction: float = 0.25,
        episode_steps: int = STEPS_PER_SECOND * EPISODE_SECONDS,
        screen_size: int = 84,
        channels_last: bool = False,
        render_mode: str | None = None,
    ):
        if int(maze_size) < 2:
            raise EnvError(f"maze_size must be >= 2, got {maze_size}")
        if not 0.0 <= float(apple_fraction) <= 1.0:
            raise EnvError(f"apple_fraction must be in [0, 1], got {apple_fraction}")
        if int(episode_steps) < 1 or int(screen_size) < 8:
            raise EnvError("episode_steps must be >= 1 and screen_size >= 8")
        if render_mode not in (None, "rgb_array"):
            raise EnvError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.maze_size = int(maze_size)
        self.apple_fraction = float(apple_fraction)
        self.episode_steps = int(episode_steps)
        self.channels_last = bool(channels_last)
        self.render_mode = render_mode
        S = int(screen_size)
        shape = (S, S, 3) if self.channels_last else (3, S, S)
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(len(self.ACTIONS))
        self._frame = np.zeros((3, S, S), np.uint8)
        self._zbuf = np.zeros(S)
        self._pos = np.zeros(2)
        self._angle = 0.0
        self._needs_reset = True
        self._first_seed = seed  # used by the first reset() that gets no seed of its own

    # -- gymnasium API -----------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A new maze (from the env's generator: seeded by ``seed``, else continuing)."""
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        self._first_seed = None
        super().reset(seed=seed)
        self._rng = self.np_random
        layout = (options or {}).get("layout")
        if layout is not None:
            self.grid, agent, apples, portal = _parse_layout(list(layout))
            self._pos[:] = agent
            self._angle = 0.0
        else:
            self.grid = generate_maze(self.maze_size, self._rng)
            cells = [
                (2 * i + 1, 2 * j + 1) for i in range(self.maze_size) for j in range(self.maze_size)
            ]
            order = self._rng.permutation(len(cells))
            portal_rc, start_rc = cells[order[0]], cells[order[1]]
            n_apples = int(round(self.apple_fraction * len(cells)))
            apples = [(c + 0.5, r + 0.5) for r, c in (cells[k] for k in order[2 : 2 + n_apples])]
            portal = (portal_rc[1] + 0.5, portal_rc[0] + 0.5)
            self._pos[:] = (start_rc[1] + 0.5, start_rc[0] + 0.5)
            self._angle = float(self._rng.integers(4)) * math.pi / 2.0
        k = len(apples) + 1
        self._sprites = np.zeros((k, 2))
        self._sprites[: k - 1] = np.array(apples, float).reshape(-1, 2)
        self._sprites[k - 1] = portal
        self._colours = np.vstack([np.tile(APPLE, (k - 1, 1)), PORTAL[None]]).astype(np.float32)
        self._sizes = np.full(k, 0.3)
        self._sizes[k - 1] = 0.8
        self._steps = 0
        self.apples_eaten = 0
        self.portals_reached = 0
        self._needs_reset = False
        return self._observe(), self._info()

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("LabyrinthEnv.step() called before reset() or after the end")
        a = int(action)
        if not 0 <= a < len(self.ACTIONS):
            raise EnvError(f"action {action!r} outside Discrete({len(self.ACTIONS)})")
        c, s = math.cos(self._angle), math.sin(self._angle)
        if a == 0:
            _move(self.grid, self._pos, MOVE * c, MOVE * s)
        elif a == 1:
            _move(self.grid, self._pos, -MOVE * c, -MOVE * s)
        elif a == 2:  # left of the view direction is (s, -c) with y downwards
            _move(self.grid, self._pos, STRAFE * s, -STRAFE * c)
        elif a == 3:
            _move(self.grid, self._pos, -STRAFE * s, STRAFE * c)
        elif a == 4:
            self._angle = (self._angle - TURN) % (2 * math.pi)
        else:
            self._angle = (self._angle + TURN) % (2 * math.pi)
        reward = self._collect()
        self._steps += 1
        truncated = self._steps >= self.episode_steps
        self._needs_reset = truncated
        return self._observe(), reward, False, truncated, self._info()

    def render(self):
        if self.render_mode == "rgb_array":
            return self.top_down()
        return None

    # -- rules and drawing ---------------------------------------------------------------

    def _collect(self) -> float:
        reward = 0.0
        x, y = self._pos
        apples = self._sprites[:-1]
        near = (apples[:, 0] >= 0) & ((apples[:, 0] - x) ** 2 + (apples[:, 1] - y) ** 2 < REACH**2)
        if near.any():
            apples[near] = -1.0  # eaten: off the map
            self.apples_eaten += int(near.sum())
            reward += APPLE_REWARD * int(near.sum())
        portal = self._sprites[-1]
        if int(math.floor(x)) == int(math.floor(portal[0])) and int(math.floor(y)) == int(
            math.floor(portal[1])
        ):
            reward += PORTAL_REWARD
            self.portals_reached += 1
            self._respawn()
        return reward

    def _respawn(self) -> None:
        """A random free cell other than the portal's, looking in a random direction."""
        free = np.argwhere(self.grid[1::2, 1::2] == 0) * 2 + 1
        portal = (int(self._sprites[-1, 1]), int(self._sprites[-1, 0]))
        choices = [tuple(rc) for rc in free if tuple(rc) != portal]
        r, c = choices[int(self._rng.integers(len(choices)))]
        self._pos[:] = (c + 0.5, r + 0.5)
        self._angle = float(self._rng.integers(4)) * math.pi / 2.0

    def _observe(self) -> np.ndarray:
        render_view(
            self.grid, self._pos[0], self._pos[1], self._angle, self._sprites, self._colours,
            self._sizes, self._frame, self._zbuf,
        )  # fmt: skip
        return self._frame.transpose(1, 2, 0).copy() if self.channels_last else self._frame.copy()

    def _info(self) -> dict[str, Any]:
        return {"apples": self.apples_eaten, "portals": self.portals_reached}

    def top_down(self, tile: int = 12) -> np.ndarray:
        """The map for people: walls, floor, apples, the portal and the agent (yellow, with
        a line where it looks), uint8 (H, W, 3)."""
        img = np.where(self.grid[..., None] == 1, 110, 30).astype(np.uint8)
        img = np.repeat(np.repeat(img, tile, axis=0), tile, axis=1)
        img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img

        def disc(cx, cy, radius, colour):
            yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
            mask = (xx + 0.5 - cx * tile) ** 2 + (yy + 0.5 - cy * tile) ** 2 <= (radius * tile) ** 2
            img[mask] = colour

        for sx, sy in self._sprites[:-1]:
            if sx >= 0:
                disc(sx, sy, 0.2, APPLE.astype(np.uint8))
        disc(*self._sprites[-1], 0.35, PORTAL.astype(np.uint8))
        x, y = self._pos
        disc(x, y, RADIUS, np.array([240, 220, 40], np.uint8))
        for t in np.linspace(0.0, 0.6, 8):
            px = int((x + t * math.cos(self._angle)) * tile)
            py = int((y + t * math.sin(self._angle)) * tile)
            if 0 <= py < img.shape[0] and 0 <= px < img.shape[1]:
                img[py, px] = (240, 220, 40)
        return img
