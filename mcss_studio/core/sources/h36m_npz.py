"""Read VideoPose3D's `data_3d_h36m.npz` without trusting its pickle.

That file stores a Python dict ({subject: {action: (T, 32, 3) float array in metres}}) as a
0-d object array, i.e. a pickle inside the .npy member of the zip. `np.load(allow_pickle=True)`
would execute whatever the pickle names, so a downloaded file could run code. Here the .npy
member is parsed by hand and its pickle is loaded with an unpickler that can only build numpy
arrays and dtypes (plus the built-in containers pickle encodes without naming any callable).
"""

from __future__ import annotations

import importlib
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserInputError

POSITIONS_KEY = "positions_3d"


def _numpy_callable(name: str) -> Any:
    """numpy's private array-rebuilding helpers live in numpy._core (2.x) or numpy.core (1.x)."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(name)


_ALLOWED: dict[tuple[str, str], Any] = {}
for _module in ("numpy._core.multiarray", "numpy.core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _numpy_callable("_reconstruct")
    _ALLOWED[(_module, "scalar")] = _numpy_callable("scalar")
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
# protocol-2 pickles written by Python 3 encode bytes as _codecs.encode(str, "latin1")
_ALLOWED[("_codecs", "encode")] = importlib.import_module("_codecs").encode


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the few globals needed to rebuild numpy arrays."""

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UserInputError(
                self._source,
                f"refusing to unpickle {module}.{name}: the file may try to run code "
                "(only numpy arrays are accepted)",
            ) from None


def _read_object_member(source: Path, data: bytes) -> Any:
    """The Python object stored in one .npy member with an object dtype."""
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    except ValueError as exc:
        raise UserInputError(source, f"not a valid .npy member ({exc})") from None
    if dtype.hasobject:
        try:
            array = _ArrayOnlyUnpickler(fp, source).load()
        except UserInputError:
            raise
        except Exception as exc:  # a broken pickle can raise almost anything
            raise UserInputError(source, f"corrupt pickled data ({type(exc).__name__})") from None
    else:
        fp.seek(0)
        array = np.load(fp, allow_pickle=False)
    if isinstance(array, np.ndarray) and array.shape == () and array.dtype.hasobject:
        return array.item()
    if isinstance(array, np.ndarray) and tuple(array.shape) != tuple(shape):
        raise UserInputError(source, "array shape does not match its header")
    return array


def load_positions_3d(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """{subject: {action: (T, J, 3) numeric array in the file's units (metres)}}, validated.

    Arrays keep their stored dtype (float32 in VideoPose3D's file): the whole dataset in float64
    would need twice the memory, and callers convert only the action they open.
    """
    source = Path(path)
    try:
        with zipfile.ZipFile(source) as archive:
            member = f"{POSITIONS_KEY}.npy"
            if member not in archive.namelist():
                raise UserInputError(source, f"has no '{POSITIONS_KEY}' array")
            data = archive.read(member)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserInputError(source, f"not a readable .npz file ({exc})") from None
    doc = _read_object_member(source, data)
    if not isinstance(doc, dict):
        raise UserInputError(source, f"'{POSITIONS_KEY}' is not a dict of subjects")
    result: dict[str, dict[str, np.ndarray]] = {}
    for subject, actions in doc.items():
        if not isinstance(subject, str) or not isinstance(actions, dict):
            raise UserInputError(source, f"subject {subject!r} is not a dict of actions")
        result[subject] = {}
        for action, positions in actions.items():
            if not isinstance(action, str) or not isinstance(positions, np.ndarray):
                raise UserInputError(source, f"{subject}/{action!r} is not an array")
            if positions.ndim != 3 or positions.shape[2] != 3 or positions.dtype.kind not in "fiu":
                raise UserInputError(
                    source,
                    f"{subject}/{action}: expected (frames, joints, 3) numbers, got shape "
                    f"{list(positions.shape)}",
                )
            result[subject][action] = positions
    return result
