"""TOML reading that works on Python 3.10 (tomli) and 3.11+ (tomllib)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .errors import UserInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a garbled file becomes a one-line UserInputError."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise UserInputError(path, f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(path, f"not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise UserInputError(path, "not valid TOML (not UTF-8 text)") from None
