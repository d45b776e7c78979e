"""EnvError: the one exception type nbasync.envs raises for bad ids, options and spaces."""

from __future__ import annotations

from ..errors import UserInputError


class EnvError(UserInputError):
    """A bad environment id, option or space; the message is one line and names the culprit."""
