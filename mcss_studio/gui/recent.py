"""The recently opened folders, kept in the user's Qt settings (newest first, at most ten).

MCSS_STUDIO_SETTINGS names an INI file to use instead (tests, portable use).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 10
ORG, APP = "mcss-studio", "MCSS Studio"


def user_settings() -> QSettings:
    """The Studio's settings store."""
    path = os.environ.get("MCSS_STUDIO_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(ORG, APP)


class RecentFolders:
    """Read and extend the recent-folder list; with remember=False (headless screenshots) it is
    read but never changed."""

    def __init__(self, remember: bool = True) -> None:
        self.remember = remember

    def paths(self) -> list[str]:
        value = user_settings().value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add(self, path: Path) -> None:
        if not self.remember:
            return
        p = str(Path(path).resolve())
        recent = [r for r in self.paths() if r != p]
        user_settings().setValue("recent", [p, *recent][:MAX_RECENT])
