"""AtariEnv: ALE with DQN preprocessing done in numba into preallocated buffers.

Owns the fast Atari environment and its image kernels (area resize, max-pool of two frames,
frame stack). Built directly on ``ale_py.ALEInterface``; no gymnasium wrappers per step.

Counting (see docs/architecture.md): one **step** is one agent action, repeated for
``frame_skip`` (4) emulator **frames**. ``max_episode_frames`` and
``info["episode_frame_number"]`` count emulator frames, no-op start frames included.

One step, in order::

    for t in range(frame_skip):            # action repeat; stop early when the game ends
        reward += ale.act(action)
    grey frames t = frame_skip-2 and t = frame_skip-1 -> pixel-wise max
    -> area resize 210x160 -> 84x84 -> shift the stack, newest frame last

Fast path (``palette_lut=True``, default): the two frames are read as palette indices
(``ale.getScreen``, ~1 us, vs ~18 us for ``getScreenGrayscale``) and turned into pooled
luminance by a table learnt from ALE at run time (:class:`_Palette`); an index not seen
yet makes that frame fall back to ``getScreenGrayscale`` (and teaches the table), so the
observations are those of the greyscale path, bit for bit. Pool + lookup + resize + stack
shift are one numba call per step, and it redoes only what changed since the last step: the
lookup on the 8-pixel words where either screen changed, the resize's vertical pass on the
output rows fed by a changed source row (Pong: ~40 of 4,200 words, ~30 of 210 rows).

Observation: uint8 ``(frame_stack, 84, 84)``, oldest frame first, newest last.

Intended differences from gymnasium ``AtariPreprocessing`` + ``FrameStackObservation``:

* When the game ends inside the action repeat, gymnasium returns the previous (stale)
  pooled screen; we grab the final screen, so the terminal observation shows the end.
* ``terminal_on_life_loss`` follows DQN's EpisodicLife: the life loss is reported as
  ``terminated=True`` (checked once per agent step) but the next ``reset()`` continues the
  same game (the stack is refilled with the newest frame; no emulator frames pass);
  ``info["game_over"]`` tells the real end. gymnasium instead restarts the game.
* Truncation after ``max_episode_frames`` is counted by us over the whole game (across
  life-loss resets), not by ALE's ``max_num_frames_per_episode``.

Seeding matches ``ale_py.env.AtariEnv``: ``SeedSequence(seed).generate_state(2)`` gives the
NumPy generator seed (no-op counts) and ALE's ``random_seed`` (sticky actions, emulator).
So with the same seed and actions the observations equal gymnasium's up to the resize
rounding documented at :func:`resize_area`.
"""

from __future__ import annotations

from typing import Any

import ale_py
import gymnasium
import numba
import numpy as np
from gymnasium import spaces

from .errors import EnvError

__all__ = ["AtariEnv", "area_tables", "resize_area", "preprocess_into", "rom_name"]


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


def area_tables(src_size: int, dst_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Tap tables of area-averaging resize along one axis (OpenCV's ``INTER_AREA`` rule).

    Destination pixel ``d`` covers the source interval ``[d*s, (d+1)*s)`` with
    ``s = src_size / dst_size``; every source pixel ``k`` it overlaps gets weight
    ``overlap(k) / s`` (float32). Overlaps below 1e-3 are dropped, as OpenCV's
    ``computeResizeAreaTab`` does. Returns ``idx`` (dst_size, taps) int64 and ``w``
    (dst_size, taps) float32, padded with weight 0 at index 0; taps in ascending source order.
    """
    if src_size < dst_size or dst_size < 1:
        raise EnvError(f"area resize only shrinks: {src_size} -> {dst_size}")
    scale = src_size / dst_size
    rows: list[list[tuple[int, float]]] = []
    for d in range(dst_size):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, src_size - f1)
        s1 = int(np.ceil(f1))
        s2 = min(int(np.floor(f2)), src_size - 1)
        s1 = min(s1, s2)
        taps = []
        if s1 - f1 > 1e-3:
            taps.append((s1 - 1, (s1 - f1) / cell))
        for k in range(s1, s2):
            taps.append((k, 1.0 / cell))
        if f2 - s2 > 1e-3:
            taps.append((s2, min(min(f2 - s2, 1.0), cell) / cell))
        rows.append(taps)
    # Taps are consecutive source pixels: store them as start + t, shifting the start left
    # (with zero weights in front) where the row would run past the edge.
    n = max(len(t) for t in rows)
    idx = np.zeros((dst_size, n), np.int64)
    w = np.zeros((dst_size, n), np.float32)
    for d, taps in enumerate(rows):
        start = min(taps[0][0], src_size - n)
        idx[d] = np.arange(start, start + n)
        for k, a in taps:
            w[d, k - start] = a
    return idx, w


@numba.njit(cache=True, nogil=True)
def _resize_into(grey, out, x_idx, x_w, y_idx, y_w, fw, row_changed):
    """Area resize ``grey`` (H, W) uint8 -> ``out`` (h, w) uint8; ``fw`` float32 scratch.

    ``row_changed`` (H,) uint8, or empty for "every row": when given, the vertical pass
    skips each output row none of whose source rows changed, and reuses what the previous
    call left for it in ``fw``. So it may only be given when ``fw`` holds the previous
    call's work on the same ``grey`` (see :func:`_lut_pool_resize_push`).

    Vertical pass first over whole source rows (contiguous, SIMD), into ``vt`` stored
    transposed (W, h) so that the horizontal pass also runs SIMD, over the h output rows at
    once. Float32 sums in tap order, rounded half-to-even and clamped to [0, 255] like
    OpenCV's ``saturate_cast``. OpenCV sums horizontally first, so a value within float32
    rounding of .5 may round the other way (|diff| <= 1 on a few pixels per million).
    """
    H, W = grey.shape
    h = y_idx.shape[0]
    w = x_idx.shape[0]
    nx = x_idx.shape[1]
    ny = y_idx.shape[1]
    acc = fw[:W]
    s = fw[W : W + h]
    vt = fw[W + h : W + h + W * h]  # (W, h) flat
    gf = grey.reshape(H * W)
    of = out.reshape(h * w)
    # Unsigned flat indices (as in _lut_max_delta): numba's signed ones keep a wraparound
    # test per access (whole frame 18.9 -> 16.9 us, vertical pass skipped 10.6 -> 8.7 us).
    uW = np.uint64(W)
    uh = np.uint64(h)
    uw = np.uint64(w)
    every_row = row_changed.size == 0
    for i in range(h):
        if not every_row:
            stale = False
            for t in range(ny):
                if y_w[i, t] != 0.0 and row_changed[y_idx[i, t]] != 0:
                    stale = True
                    break
            if not stale:
                continue  # vt[:, i] still holds this row's sums from the previous call
        for col in range(uW):
            acc[col] = np.float32(0.0)
        for t in range(ny):
            wy = y_w[i, t]
            if wy == 0.0:
                continue
            src = np.uint64(y_idx[i, t]) * uW
            for col in range(uW):
                acc[col] += wy * np.float32(gf[src + col])
        ui = np.uint64(i)
        for col in range(uW):
            vt[col * uh + ui] = acc[col]
    for j in range(w):
        x0 = np.uint64(x_idx[j, 0])  # taps are x0, x0+1, ... (see area_tables)
        for i in range(uh):
            s[i] = np.float32(0.0)
        for t in range(nx):
            wx = x_w[j, t]
            src = (x0 + np.uint64(t)) * uh
            for i in range(uh):
                s[i] += wx * vt[src + i]
        uj = np.uint64(j)
        for i in range(uh):
            q = np.rint(s[i])  # half to even, as OpenCV's cvRound
            q = min(max(q, np.float32(0.0)), np.float32(255.0))
            of[i * uw + uj] = np.uint8(q)


@numba.njit(cache=True, nogil=True)
def _shift_out_oldest(flat, plane, C):
    """flat[: (C-1)*plane] = flat[plane:], in place. A loop, not the slice assignment: numba
    copies an overlapping right-hand side into a new array first (13.5 us per Pong step,
    against about 1 us here)."""
    up = np.uint64(plane)
    for k in range(np.uint64(C - 1) * up):
        flat[k] = flat[k + up]


def work_size(H: int, W: int, h: int) -> int:
    """float32 scratch elements :func:`_resize_into` needs for (H, W) -> (h, *)."""
    return W + h + W * h


@numba.njit(cache=True, nogil=True)
def _pool_resize_push(a, b, stack, x_idx, x_w, y_idx, y_w, grey, fw, fill):
    """One step's image work on grey screens in one call: pool, resize, push into the stack.

    ``a``, ``b`` (H, W) uint8 grey screens are pooled as ``max(a, b)`` into ``grey``; then
    the stack shifts one slot (oldest out) and the resized frame goes into the last slot;
    ``fill=True`` writes it into every slot instead. ``grey`` (H, W) uint8 and ``fw``
    (:func:`work_size`) float32 are scratch. The palette fast path has its own kernel,
    :func:`_lut_pool_resize_push`.
    """
    n = a.size
    af = a.reshape(n)
    bf = b.reshape(n)
    gf = grey.reshape(n)
    for k in range(n):
        v = af[k]
        v2 = bf[k]
        gf[k] = v2 if v2 > v else v
    C = stack.shape[0]
    plane = stack.shape[1] * stack.shape[2]
    flat = stack.reshape(C * plane)
    if not fill:
        _shift_out_oldest(flat, plane, C)
    last = C - 1
    _resize_into(grey, stack[last], x_idx, x_w, y_idx, y_w, fw, _EVERY_ROW)
    if fill:
        for k in range((C - 1) * plane):
            flat[k] = flat[last * plane + k % plane]


_EVERY_ROW = np.zeros(0, np.uint8)


@numba.njit(cache=True, nogil=True)
def _lut_max_delta(a, b, lut2, grey, prev, row_changed, delta):
    """grey = max(luminance(a), luminance(b)) through the pair table, for the 8-pixel words
    of (a, b) that differ from ``prev``; False on an unseen index.

    a, b: (H, W) uint8 palette indices (``ale.getScreen``); ``lut2[(i << 8) | j]`` is
    ``max(lum[i], lum[j])``, or >= 256 when ``i`` or ``j`` has not been seen yet (one
    gather per pixel gives the pooled grey and the check). ``prev`` (2, H, W) uint8 holds
    the (a, b) that ``grey`` was made from; with ``delta`` only words where ``a`` or ``b``
    changed are looked up (consecutive Atari frames differ in few places) and copied into
    ``prev``; without it every word is. ``row_changed[r]`` says whether any word of row
    ``r`` was redone. W must be a multiple of 8. On False (an unseen index) ``grey`` and
    ``prev`` are garbage: the next call must pass delta=False.
    """
    H, W = a.shape
    n = H * W
    af = a.reshape(n)
    bf = b.reshape(n)
    gf = grey.reshape(n)
    a64 = af.view(np.uint64)
    b64 = bf.view(np.uint64)
    pa64 = prev[0].reshape(n).view(np.uint64)
    pb64 = prev[1].reshape(n).view(np.uint64)
    # unsigned indices: signed ones keep a wraparound test per access that stops LLVM from
    # vectorising the row test (measured 11.8 -> 2.4 us for the 210 rows of a Pong screen)
    wpr = np.uint64(W // 8)
    u8 = np.uint64(8)
    bad = np.uint16(0)
    first = np.uint64(0)
    for r in range(H):
        if delta:  # branch-free test of the whole row first (vectorises): most rows are equal
            diff = np.uint64(0)
            for j in range(wpr):
                k = first + j
                diff |= (a64[k] ^ pa64[k]) | (b64[k] ^ pb64[k])
            if diff == 0:
                row_changed[r] = 0
                first += wpr
                continue
        row_changed[r] = 1
        for k in range(first, first + wpr):
            x = a64[k]
            y = b64[k]
            if delta and x == pa64[k] and y == pb64[k]:
                continue
            pa64[k] = x
            pb64[k] = y
            for p in range(k * u8, k * u8 + u8):
                v = lut2[(np.uint64(af[p]) << u8) | np.uint64(bf[p])]
                bad |= v
                gf[p] = np.uint8(v)
        first += wpr
    return bad < 256


@numba.njit(cache=True, nogil=True)
def _lut_pool_resize_push(
    a, b, lut2, stack, x_idx, x_w, y_idx, y_w, grey, fw, prev, row_changed, delta
):
    """The fast path's per-step kernel: :func:`_pool_resize_push` for palette-index screens
    (through :func:`_lut_max_delta`), redoing only what changed since the previous call
    when ``delta`` is True.

    With ``delta`` the lookup runs on the 8-pixel words of (a, b) that differ from the
    previous call's (kept in ``prev``), and the resize's vertical pass on the output rows
    whose source rows changed; the rest of ``grey`` and of the vertical sums in ``fw`` are
    the previous call's, so the result is bit for bit that of a full pass (tested). Valid
    only when the previous call on these buffers was this one and returned True, and
    nothing else wrote ``grey``, ``fw`` or ``prev`` since. Returns False, ``stack``
    untouched, on an unseen index (then call again with delta=False after learning it).
    """
    if not _lut_max_delta(a, b, lut2, grey, prev, row_changed, delta):
        return False
    C = stack.shape[0]
    plane = stack.shape[1] * stack.shape[2]
    flat = stack.reshape(C * plane)
    _shift_out_oldest(flat, plane, C)
    _resize_into(grey, stack[C - 1], x_idx, x_w, y_idx, y_w, fw, row_changed)
    return True


def resize_area(src: np.ndarray, out_shape: tuple[int, int], other: np.ndarray | None = None):
    """Area-average resize of a 2-D uint8 image (optionally of ``max(src, other)``).

    Same rule as ``cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)`` for shrinking by
    non-integer factors (float32 sums, tables from :func:`area_tables`, round half to even).
    Against OpenCV 5: identical on Pong screens (a whole episode in the tests); on uniform
    random noise about 0.1% of pixels differ by 1 (we sum vertically first, OpenCV
    horizontally first, so values within float32 rounding of .5 can round differently).
    Allocates; the environment uses the preallocated kernel directly.
    """
    src = np.ascontiguousarray(src)
    if src.dtype != np.uint8 or src.ndim != 2:
        raise EnvError(f"resize_area wants a 2-D uint8 image, got {src.dtype} {src.shape}")
    other = src if other is None else np.ascontiguousarray(other)
    if other.shape != src.shape or other.dtype != np.uint8:
        raise EnvError(f"resize_area: other must match src {src.shape} uint8")
    h, w = out_shape
    y_idx, y_w = area_tables(src.shape[0], h)
    x_idx, x_w = area_tables(src.shape[1], w)
    out = np.empty((1, h, w), np.uint8)
    grey = np.empty(src.shape, np.uint8)
    fw = np.empty(work_size(src.shape[0], src.shape[1], h), np.float32)
    _pool_resize_push(src, other, out, x_idx, x_w, y_idx, y_w, grey, fw, True)
    return out[0]


def preprocess_into(stack, a, b, tables, fill=False):
    """Public form of the per-step kernel: max(a, b), resize, push into ``stack`` (C, h, w).

    ``tables`` is ``(x_idx, x_w, y_idx, y_w)``; ``fill=True`` writes the frame into every slot.
    Allocates its scratch; the environment keeps its own.
    """
    x_idx, x_w, y_idx, y_w = tables
    grey = np.empty(a.shape, np.uint8)
    fw = np.empty(work_size(a.shape[0], a.shape[1], y_idx.shape[0]), np.float32)
    _pool_resize_push(a, b, stack, x_idx, x_w, y_idx, y_w, grey, fw, fill)
    return stack


# --------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------


def rom_name(game: str) -> str:
    """'Pong', 'pong', 'SpaceInvaders', 'space_invaders' -> ALE rom name ('space_invaders')."""
    g = game.strip()
    if "_" not in g and any(ch.isupper() for ch in g[1:]):
        g = "".join("_" + ch.lower() if ch.isupper() and i else ch for i, ch in enumerate(g))
    return g.lower()


def _rom_path(game: str) -> str:
    import warnings

    name = rom_name(game)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = ale_py.roms.get_rom_path(name)
    if path is None:
        raise EnvError(f"unknown Atari game {game!r} (no ROM {name!r} in ale-py)")
    return str(path)


class _Palette:
    """Palette index -> luminance, learnt from ALE itself, one per ROM and process.

    ALE draws a frame as palette indices (``getScreen``, a plain copy) and
    ``getScreenGrayscale`` maps each index through ALE's own luminance table (a lookup per
    pixel, ~15x the copy). ale-py has no call that returns that table, so we learn it: every
    time both screens of one frame are at hand we record ``index -> grey`` for the indices
    in it and check that each index always gives the same grey. Nothing is hard-coded; an
    index never seen yet is simply unknown, and the caller falls back to
    ``getScreenGrayscale`` for that frame (then learns from it). Observations are therefore
    identical to the greyscale path, by construction (and by test).

    ``lut2`` is the pair table the kernel uses: ``lut2[(i << 8) | j] = max(lum[i], lum[j])``,
    0xFFFF where ``i`` or ``j`` is unknown (so one gather gives the pooled pixel and the
    check). ``consistent`` turns False (fast path off for good) if an index ever maps to two
    greys, which ALE's design rules out.
    """

    def __init__(self):
        self.lum = np.zeros(256, np.uint16)
        self.known = np.zeros(256, np.uint8)
        self.lut2 = np.full(65536, 0xFFFF, np.uint16)
        self.consistent = True
        self.learned_frames = 0

    def learn(self, idx: np.ndarray, grey: np.ndarray) -> bool:
        """Record one frame's (index, grey) pairs; False if they contradict what we knew."""
        i = idx.ravel()
        g = grey.ravel()
        u, first = np.unique(i, return_index=True)
        new = u[self.known[u] == 0]
        self.lum[u] = np.where(self.known[u] != 0, self.lum[u], g[first])
        self.known[u] = 1
        self.learned_frames += 1
        if not np.array_equal(self.lum[i], g):
            self.consistent = False
            return False
        if new.size:
            k = self.known.astype(bool)
            pair = np.maximum(self.lum[:, None], self.lum[None, :])
            self.lut2[:] = np.where(k[:, None] & k[None, :], pair, 0xFFFF).ravel()
        return True


_PALETTES: dict[str, _Palette] = {}


@numba.njit(cache=True, nogil=True)
def _known_since(scr, ref, known):
    """True if every index of ``scr`` is known, given that every index of ``ref`` is.

    Compares 8 pixels at a time (uint64 words); only words that differ from ``ref`` are
    looked up in ``known``. Consecutive Atari frames differ in few places, so this costs
    about a twentieth of a full lookup pass.
    """
    n = scr.size
    s = scr.reshape(n)
    s64 = s.view(np.uint64)
    r64 = ref.reshape(n).view(np.uint64)
    for k in range(n // 8):
        if s64[k] != r64[k]:
            for p in range(8 * k, 8 * k + 8):
                if known[s[p]] == 0:
                    return False
    for p in range(8 * (n // 8), n):  # noqa: SIM110 (numba: no generators in all())
        if known[s[p]] == 0:
            return False
    return True


class AtariEnv(gymnasium.Env):
    """DQN-preprocessed Atari game; a gymnasium ``Env`` with uint8 ``(4, 84, 84)`` observations.

    Args:
        game: ROM name (``"pong"``, ``"Pong"``, ``"space_invaders"``).
        seed: seeds ALE and the no-op generator; ``reset(seed=...)`` reseeds (and reloads
            the ROM, as ``ale_py`` does). ``None`` draws fresh entropy.
        frame_skip: action repeat; emulator frames per agent step (4).
        noop_max: on a full reset play ``U{1..noop_max}`` NOOP *frames* (0 = none), as
            gymnasium's ``AtariPreprocessing`` does.
        repeat_action_probability: ALE sticky actions (0 = deterministic emulator).
        terminal_on_life_loss: report a life loss as ``terminated``; the game continues
            at the next ``reset()``. ``info["game_over"]`` is the real end.
        max_episode_frames: truncate (``truncated=True``) once the game has run this many
            emulator frames (108000 = 30 minutes); ``None`` = never.
        full_action_space: 18 legal actions instead of the game's minimal set.
        mode, difficulty: ALE game mode / difficulty (``None`` = default).
        screen_size: side of the square resized frame (84).
        frame_stack: frames in the observation (4).
        copy_obs: return a fresh array per step (default). ``False`` returns the internal
            stack, overwritten by the next step/reset: copy it into your own storage.
        palette_lut: read frames as palette indices (``getScreen``, a copy) and turn them
            into luminance with a table learnt from ALE at run time (see :class:`_Palette`),
            instead of ``getScreenGrayscale`` per frame. Same observations, bit for bit;
            ``False`` = the plain greyscale path (tests compare the two).

    ``info``: ``lives``, ``game_over`` (bool), ``episode_frame_number`` (frames since the
    game started, no-op frames included). Rewards are raw game scores (not clipped).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        game: str,
        seed: int | None = None,
        *,
        frame_skip: int = 4,
        noop_max: int = 30,
        repeat_action_probability: float = 0.0,
        terminal_on_life_loss: bool = False,
        max_episode_frames: int | None = 108_000,
        full_action_space: bool = False,
        mode: int | None = None,
        difficulty: int | None = None,
        screen_size: int = 84,
        frame_stack: int = 4,
        copy_obs: bool = True,
        render_mode: str | None = None,
        palette_lut: bool = True,
    ):
        if int(frame_skip) < 1:
            raise EnvError(f"frame_skip must be >= 1, got {frame_skip}")
        if int(noop_max) < 0:
            raise EnvError(f"noop_max must be >= 0, got {noop_max}")
        if not 0.0 <= float(repeat_action_probability) <= 1.0:
            raise EnvError(
                f"repeat_action_probability must be in [0, 1], got {repeat_action_probability}"
            )
        if int(frame_stack) < 1:
            raise EnvError(f"frame_stack must be >= 1, got {frame_stack}")
        if max_episode_frames is not None and int(max_episode_frames) < 1:
            raise EnvError(f"max_episode_frames must be >= 1 or None, got {max_episode_frames}")
        if render_mode not in (None, "rgb_array"):
            raise EnvError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.game = rom_name(game)
        self._rom = _rom_path(game)
        self.frame_skip = int(frame_skip)
        self.noop_max = int(noop_max)
        self.repeat_action_probability = float(repeat_action_probability)
        self.terminal_on_life_loss = bool(terminal_on_life_loss)
        self.max_episode_frames = None if max_episode_frames is None else int(max_episode_frames)
        self.copy_obs = bool(copy_obs)
        self.render_mode = render_mode
        self._mode = mode
        self._difficulty = difficulty

        # Static and process-wide: set before the constructor, which prints ALE's banner
        # ("A.L.E: Arcade Learning Environment ... [Powered by Stella]") at Info level, once
        # per worker process otherwise. Errors still print.
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale = ale_py.ALEInterface()
        self.ale.setFloat("repeat_action_probability", self.repeat_action_probability)
        self._seed_and_load(seed)

        actions = (
            self.ale.getLegalActionSet() if full_action_space else self.ale.getMinimalActionSet()
        )
        self._actions = list(actions)
        self._n_actions = len(self._actions)
        self.action_space = spaces.Discrete(self._n_actions)
        self.observation_space = spaces.Box(
            0, 255, (int(frame_stack), int(screen_size), int(screen_size)), np.uint8
        )

        H, W = self.ale.getScreenDims()
        self._buf0 = np.zeros((H, W), np.uint8)  # last frame of the step
        self._buf1 = np.zeros((H, W), np.uint8)  # second-to-last frame
        self._ref = np.zeros((H, W), np.uint8)  # last index screen known to be all learnt
        self._grey0 = np.zeros((H, W), np.uint8)  # greyscale fallbacks / pooled scratch
        self._grey1 = np.zeros((H, W), np.uint8)
        self._pooled = np.zeros((H, W), np.uint8)
        # the fast path's delta state (_lut_pool_resize_push): the (index) screens behind
        # _pooled, which rows changed, and whether _pooled/_fw/_prev are that kernel's own
        self._prev = np.zeros((2, H, W), np.uint8)
        self._row_changed = np.zeros(H, np.uint8)
        self._delta_ok = False
        self._stack = np.zeros(self.observation_space.shape, np.uint8)
        self._fw = np.zeros(work_size(H, W, int(screen_size)), np.float32)
        y_idx, y_w = area_tables(H, int(screen_size))
        x_idx, x_w = area_tables(W, int(screen_size))
        self._tables = (x_idx, x_w, y_idx, y_w)
        self.palette_lut = bool(palette_lut)
        # the fast path compares 8-pixel words of whole rows (ALE's screens are 160 wide)
        fast_ok = palette_lut and W % 8 == 0
        self._palette = _PALETTES.setdefault(self._rom, _Palette()) if fast_ok else None
        self.fallback_frames = 0  # frames read with getScreenGrayscale on the fast path

        self._frames = 0  # emulator frames since the game (not the life) started
        self._lives = 0
        self._game_over = True  # next reset() must start a new game
        self._needs_reset = True

    # -- seeding -----------------------------------------------------------------------

    def _seed_and_load(self, seed: int | None) -> None:
        """Same derivation as ale_py's AtariEnv.seed_game, then load the ROM (applies it)."""
        ss = np.random.SeedSequence(seed)
        np_seed, ale_seed = ss.generate_state(n_words=2)
        self._np_random = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(np_seed))))
        self._np_random_seed = int(np_seed)
        self.ale.setInt("random_seed", np.int32(ale_seed))
        self.ale.loadROM(self._rom)
        if self._mode is not None:
            self.ale.setMode(int(self._mode))
        if self._difficulty is not None:
            self.ale.setDifficulty(int(self._difficulty))

    # -- gymnasium API -----------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new game (NOOP starts), or continue after a life loss (see class doc).

        ``options={"full_reset": True}`` forces a new game even after a life loss.
        """
        if seed is not None:
            self._seed_and_load(int(seed))
            self._game_over = True
        full = self._game_over or bool(options and options.get("full_reset"))
        ale = self.ale
        if full:
            ale.reset_game()
            self._frames = 0
            n = int(self._np_random.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
            noop = ale_py.Action.NOOP
            for _ in range(n):
                ale.act(noop)
                self._frames += 1
                if ale.game_over():
                    ale.reset_game()
                    self._frames = 0
            grey = self._grey0
            ale.getScreenGrayscale(grey)
            pal = self._palette
            if pal is not None and pal.consistent:
                ale.getScreen(self._ref)
                self._learn(self._ref, grey)
            x_idx, x_w, y_idx, y_w = self._tables
            _pool_resize_push(
                grey, grey, self._stack, x_idx, x_w, y_idx, y_w, self._pooled, self._fw,
                True,
            )  # fmt: skip
            self._delta_ok = False  # _pooled and _fw now hold a greyscale frame's work
        else:  # life lost, game goes on: restart the stack from the newest frame
            st = self._stack
            st[:-1] = st[-1]
        self._lives = ale.lives()
        self._game_over = False
        self._needs_reset = False
        info = {"lives": self._lives, "game_over": False, "episode_frame_number": self._frames}
        return (self._stack.copy() if self.copy_obs else self._stack), info

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One agent step = ``frame_skip`` emulator frames with the same action."""
        if self._needs_reset:
            raise RuntimeError("AtariEnv.step() called before reset() or after the episode ended")
        a = int(action)
        if a < 0 or a >= self._n_actions:
            raise EnvError(f"action {action!r} outside Discrete({self._n_actions})")
        ale = self.ale
        act = self._actions[a]
        fs = self.frame_skip
        buf0 = self._buf0
        buf1 = self._buf1
        pal = self._palette
        fast = pal is not None and pal.consistent
        reward = 0.0
        game_over = False
        grabbed1 = False
        for t in range(fs):
            reward += ale.act(act)
            if ale.game_over():
                game_over = True
                self._frames += t + 1
                break
            if t == fs - 2:
                if not fast:
                    ale.getScreenGrayscale(buf1)
                else:
                    ale.getScreen(buf1)
                    if not _known_since(buf1, self._ref, pal.known):
                        # an index not seen yet: read this frame's grey while it is current
                        ale.getScreenGrayscale(self._grey1)
                        self._learn(buf1, self._grey1)
                grabbed1 = True
        else:
            self._frames += fs
        x_idx, x_w, y_idx, y_w = self._tables
        b = buf1 if grabbed1 else buf0
        if fast:
            ale.getScreen(buf0)
            ok = _lut_pool_resize_push(
                buf0, b, pal.lut2, self._stack, x_idx, x_w, y_idx, y_w, self._pooled, self._fw,
                self._prev, self._row_changed, self._delta_ok,
            )  # fmt: skip
            if not ok:  # buf0 has an index not seen yet: learn it from this (current) frame
                ale.getScreenGrayscale(self._grey0)
                self._learn(buf0, self._grey0)
                ok = pal.consistent and _lut_pool_resize_push(
                    buf0, b, pal.lut2, self._stack, x_idx, x_w, y_idx, y_w, self._pooled,
                    self._fw, self._prev, self._row_changed, False,
                )  # fmt: skip
            self._delta_ok = ok
            if ok:
                self._ref, self._buf0 = buf0, self._ref  # buf0 is all known: next reference
            else:  # contradiction in ALE's table (see _Palette): greys from what we have
                g1 = pal.lum[b].astype(np.uint8) if grabbed1 else self._grey0
                _pool_resize_push(
                    self._grey0, g1, self._stack, x_idx, x_w, y_idx, y_w,
                    self._pooled, self._fw, False,
                )  # fmt: skip
        else:
            self._delta_ok = False
            ale.getScreenGrayscale(buf0)
            _pool_resize_push(
                buf0, b, self._stack, x_idx, x_w, y_idx, y_w, self._pooled, self._fw,
                False,
            )  # fmt: skip
        lives = ale.lives()
        terminated = game_over
        if self.terminal_on_life_loss and lives < self._lives:
            terminated = True
        self._lives = lives
        truncated = (
            not game_over
            and self.max_episode_frames is not None
            and self._frames >= self.max_episode_frames
        )
        if game_over or truncated:
            self._game_over = True
        if terminated or truncated:
            self._needs_reset = True
        info = {"lives": lives, "game_over": game_over, "episode_frame_number": self._frames}
        return (
            (self._stack.copy() if self.copy_obs else self._stack),
            reward,
            terminated,
            truncated,
            info,
        )

    def _learn(self, idx: np.ndarray, grey: np.ndarray) -> None:
        self.fallback_frames += 1
        if not self._palette.learn(idx, grey):
            import warnings

            warnings.warn(
                f"AtariEnv({self.game!r}): ALE mapped one palette index to two greys; "
                "palette_lut turned off (getScreenGrayscale from now on)",
                RuntimeWarning,
                stacklevel=3,
            )

    def render(self):
        if self.render_mode == "rgb_array":
            return self.ale.getScreenRGB()
        return None

    # -- helpers -----------------------------------------------------------------------

    @property
    def n_actions(self) -> int:
        return self._n_actions

    def get_action_meanings(self) -> list[str]:
        return [a.name for a in self._actions]

    def __repr__(self) -> str:
        return (
            f"AtariEnv({self.game!r}, frame_skip={self.frame_skip}, noop_max={self.noop_max}, "
            f"sticky={self.repeat_action_probability}, life_loss={self.terminal_on_life_loss})"
        )
