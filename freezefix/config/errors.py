"""The resolver's errors and the keys mmengine gives a meaning in config files."""

from __future__ import annotations

from pathlib import Path

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
DEPRECATION_KEY = "_deprecation_"


class ConfigError(Exception):
    """A config that mmengine would not load either; the message names the file at fault."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


class TimedOut(ConfigError):
    """Config code that did not finish in time: a busy machine is no verdict on the file."""


class NotAnalysable(Exception):
    """A config freezefix deliberately does not analyse (with the reason)."""
