"""The two kinds of failure a user is told about in one line, and their exit codes.

Owns the exit-code policy of every nbasync command (a leaf: imports nothing of nbasync):

    0    success
    2    bad input: a setting, id, file or option the user gave (``UserInputError``, the
         base of the layers' own input errors: ``ConfigError``, ``EnvError``,
         ``RunFileError``)
    3    the run failed for another reason (``RunFailedError``): divergence, a worker that died
         or stalled, a full disk. One line; the last good checkpoint is kept.
    1    a bug in nbasync: Python's own traceback (never turned into one line)
    130  Ctrl-C ("interrupted"); 143 SIGTERM ("terminated (SIGTERM)"): one line each, the last
         checkpoint kept

A worker that raised one of nbasync's own error types ends the run with that type's one
line; a worker that raised anything else is a bug, and its traceback is shown.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_RUN_FAILED = 3


class UserInputError(ValueError):
    """Bad input from the user; ``str()`` is one line naming the culprit. The layers'
    own input errors (``ConfigError``, ``EnvError``, ``RunFileError``) derive from it."""


class ConfigError(UserInputError):
    """A bad setting; its message is one line that names the setting. Defined here (a
    leaf) so that the modules below ``config`` (``build``, ``algos``) can raise it too;
    ``nbasync.config`` re-exports it."""


class RunFailedError(RuntimeError):
    """A run that could not go on (not the user's input, not a bug); ``str()`` is one line.

    ``details`` may carry more text (for example a worker's traceback) for logs and tests;
    the command line prints only the one line.
    """

    exit_code = EXIT_RUN_FAILED

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


class DivergedError(RunFailedError):
    """The shared parameters turned non-finite, or workers kept producing non-finite
    gradients (every such update is skipped, so theta stays finite until then)."""
