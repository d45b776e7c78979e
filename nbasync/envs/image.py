"""Image observations from any gymnasium environment, in the layout nbasync's conv net takes.

Owns :class:`ImageObs`: a wrapper that turns an image observation of any layout into uint8
``(channels * frame_stack, size, size)``, channels first, oldest frame first:

* layout: (H, W, C) channels-last (gymnasium's usual), (C, H, W) channels-first, or (H, W)
  greyscale; told apart by where a 1-, 3- or 4-channel axis is (``layout=`` overrides);
* ``grey=True``: luminance 0.299 R + 0.587 G + 0.114 B (ITU-R 601, as OpenCV), rounded;
* ``size``: area resize to size x size with the Atari pipeline's kernel
  (``atari._resize_into``: the same rule as OpenCV's INTER_AREA), per channel;
* ``frame_stack``: the last k frames, stacked along channels (a new episode fills the stack
  with its first frame, as the Atari pipeline does).

The work is one numba call per step into preallocated buffers. The environment's own
speed and the network's input size are the costs to watch; a 96 x 96 x 3 frame (CarRacing)
takes a few microseconds here.
"""

from __future__ import annotations

import gymnasium
import numba
import numpy as np
from gymnasium import spaces

from .atari import _resize_into, area_tables, work_size
from .errors import EnvError
from .vector import SeededObservationWrapper

__all__ = ["ImageObs", "image_layout"]

_CHANNEL_COUNTS = (1, 3, 4)


def image_layout(shape: tuple[int, ...]) -> str:
    """ "hw", "hwc" or "chw" for an image shape; EnvError when it is not an image."""
    if len(shape) == 2:
        return "hw"
    if len(shape) == 3:
        if shape[2] in _CHANNEL_COUNTS and shape[0] not in _CHANNEL_COUNTS:
            return "hwc"
        if shape[0] in _CHANNEL_COUNTS:
            return "chw"
        if shape[2] in _CHANNEL_COUNTS:
            return "hwc"
    raise EnvError(f"observations of shape {shape} are not an image (H,W), (H,W,C) or (C,H,W)")


@numba.njit(cache=True, nogil=True)
def _grey_into(rgb, out):
    """(3, H, W) uint8 -> (H, W) uint8 luminance, rounded half up."""
    _, H, W = rgb.shape
    for i in range(H):
        for j in range(W):
            v = 0.299 * rgb[0, i, j] + 0.587 * rgb[1, i, j] + 0.114 * rgb[2, i, j]
            out[i, j] = np.uint8(min(255.0, v + 0.5))


class ImageObs(SeededObservationWrapper):
    """uint8 (C * frame_stack, size, size) channels-first observations; see the module doc.

    Args:
        env: an environment with a uint8 Box image observation space.
        seed: the first ``reset()`` without a seed uses it (as :class:`Float32Obs`).
        grey: convert RGB(A) to one luminance channel.
        size: resize to size x size (None: keep H x W).
        frame_stack: frames per observation (1: only the newest).
        layout: "hwc", "chw" or "hw" (None: inferred by :func:`image_layout`).
    """

    def __init__(
        self,
        env: gymnasium.Env,
        seed: int | None = None,
        *,
        grey: bool = False,
        size: int | None = None,
        frame_stack: int = 1,
        layout: str | None = None,
    ):
        super().__init__(env, seed)
        space = env.observation_space
        if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
            raise EnvError(f"ImageObs needs a uint8 Box observation space, got {space}")
        self.layout = image_layout(tuple(space.shape)) if layout is None else layout
        if self.layout not in ("hw", "hwc", "chw"):
            raise EnvError(f"layout must be 'hw', 'hwc' or 'chw', got {layout!r}")
        if self.layout == "hw":
            C, (H, W) = 1, space.shape
        elif self.layout == "hwc":
            H, W, C = space.shape
        else:
            C, H, W = space.shape
        if int(frame_stack) < 1:
            raise EnvError(f"frame_stack must be >= 1, got {frame_stack}")
        if size is not None and int(size) < 1:
            raise EnvError(f"size must be >= 1, got {size}")
        if grey and C not in (3, 4):
            raise EnvError(f"grey needs RGB(A) observations, got {C} channel(s)")
        self.grey = bool(grey)
        self.frame_stack = int(frame_stack)
        self.in_hw = (int(H), int(W))
        self.out_hw = self.in_hw if size is None else (int(size), int(size))
        self.frame_channels = 1 if self.grey else int(C)
        self._chw = np.zeros((int(C), int(H), int(W)), np.uint8)  # the frame, channels first
        self._grey = np.zeros((int(H), int(W)), np.uint8)
        self._stack = np.zeros((self.frame_channels * self.frame_stack, *self.out_hw), np.uint8)
        h, w = self.out_hw
        self._tables = (*area_tables(int(W), w), *area_tables(int(H), h))
        self._fw = np.zeros(work_size(int(H), int(W), h), np.float32)
        self._every_row = np.zeros(0, np.uint8)
        self.observation_space = spaces.Box(0, 255, self._stack.shape, np.uint8)
        self._fill = True

    def reset(self, *, seed=None, options=None):
        self._fill = True  # a new episode: its first frame fills the whole stack
        return super().reset(seed=seed, options=options)

    def observation(self, observation):
        obs = np.asarray(observation)
        chw = self._chw
        if self.layout == "hw":
            chw[0] = obs
        elif self.layout == "hwc":
            chw[...] = obs.transpose(2, 0, 1)
        else:
            chw[...] = obs
        frames = chw[:3] if self.grey else chw
        if self.grey:
            _grey_into(frames, self._grey)
            frames = self._grey[None]
        k = self.frame_channels
        stack = self._stack
        if not self._fill:  # shift: oldest frame first, the newest goes last
            stack[:-k] = stack[k:].copy()
        x_idx, x_w, y_idx, y_w = self._tables
        for c in range(k):
            if self.out_hw == self.in_hw:
                stack[-k + c] = frames[c]
            else:
                _resize_into(
                    np.ascontiguousarray(frames[c]), stack[stack.shape[0] - k + c], x_idx, x_w,
                    y_idx, y_w, self._fw, self._every_row,
                )  # fmt: skip
        if self._fill:
            for s in range(self.frame_stack - 1):
                stack[s * k : (s + 1) * k] = stack[-k:]
            self._fill = False
        return stack.copy()
