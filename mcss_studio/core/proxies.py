"""Display proxies: small JPEG copies of every frame so the GUI player can scrub instantly.

Why: decoding a random 1080p long-GOP frame costs up to a whole GOP of decoding; a proxy is one
small JPEG decode. Layout per sequence, in ``cache/proxies/<sequence.key>/``:

- ``<cam>.blob``  concatenated JPEG files (quality 90, longest side 480 by default, aspect kept)
- ``<cam>.idx``   int64 (T, 2) raw array: byte offset and length of frame t in the blob;
  length 0 means the frame has no proxy (not written, or its decode failed)
- ``<cam>.json``  frame count, native and proxy size, quality, and ``complete``

Writers put everything under ``*.partial`` names and rename on `close()` (the index last, the old
index removed first), so a reader sees either no proxy, the previous one, or the new one — never
a half-written one. An interrupted build leaves the partial files, and a new `ProxyWriter` with
the same settings picks them up and skips the frames already written (resume).

Readers memory-map the blob and the index: nothing but the requested JPEG is ever read into RAM.
Writers use ordinary file I/O only (a write through a memory map on a full disk is SIGBUS, not an
error); a full disk or unwritable folder raises a one-line UserInputError and leaves the partial
files for a resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .atomic import CommitOnExit, atomic_open, write_all, writing
from .errors import UserInputError
from .imageops import fast_area_resize
from .sequence import MultiviewSequence

DEFAULT_MAX_SIDE = 480
DEFAULT_QUALITY = 90
_FORMAT_VERSION = 1


class ProxyMissingError(LookupError):
    """The proxy of this frame (or camera) has not been built."""


def proxy_dir(cache_dir: str | os.PathLike[str], seq: MultiviewSequence) -> Path:
    """Where a sequence's proxies live inside a project's cache folder."""
    return Path(cache_dir) / "proxies" / seq.key


def proxy_size(width: int, height: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """Proxy (width, height): longest side at most max_side, aspect kept, never upscaled."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _paths(directory: Path, camera_index: int) -> dict[str, Path]:
    stem = directory / str(camera_index)
    return {
        "blob": stem.with_suffix(".blob"),
        "idx": stem.with_suffix(".idx"),
        "meta": stem.with_suffix(".json"),
        "blob_tmp": stem.with_suffix(".blob.partial"),
        "idx_tmp": stem.with_suffix(".idx.partial"),
        "meta_tmp": stem.with_suffix(".json.partial"),
    }


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class ProxyWriter(CommitOnExit):
    """Builds one camera's proxy files; frames may arrive in any order, each at most once.

    Resumes a matching partial build (or a finished but incomplete one) found in `directory`.
    Use as a context manager: an exception leaves the partial files for a later resume.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        camera_index: int,
        num_frames: int,
        max_side: int = DEFAULT_MAX_SIDE,
        native_size: tuple[int, int] | None = None,
        quality: int = DEFAULT_QUALITY,
    ) -> None:
        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        if max_side <= 0:
            raise ValueError(f"max_side must be positive, got {max_side}")
        self.directory = Path(directory)
        self.camera_index = int(camera_index)
        self.num_frames = int(num_frames)
        self.max_side = int(max_side)
        self.quality = int(quality)
        self.native_size: tuple[int, int] | None = (
            None if native_size is None else (int(native_size[0]), int(native_size[1]))
        )
        self._p = _paths(self.directory, self.camera_index)
        self._closed = False
        self._complete = False
        with writing(self.directory):
            self.directory.mkdir(parents=True, exist_ok=True)
            self._prepare_partial()
            # the index lives in RAM and each entry is also pwritten: no writable memory map
            self._idx = np.fromfile(self._p["idx_tmp"], dtype=np.int64).reshape(num_frames, 2)
            self._idx_fd = os.open(self._p["idx_tmp"], os.O_WRONLY)
            self._blob = open(self._p["blob_tmp"], "r+b")  # noqa: SIM115 - closed in close/abort
        self._blob.seek(0, os.SEEK_END)

    # -- resume -------------------------------------------------------------------------------
    def _settings_match(self, meta: dict | None) -> bool:
        if not meta or meta.get("version") != _FORMAT_VERSION:
            return False
        same = (
            meta.get("frames") == self.num_frames
            and meta.get("max_side") == self.max_side
            and meta.get("quality") == self.quality
        )
        if self.native_size is not None and meta.get("native_width") is not None:
            same = same and (meta["native_width"], meta["native_height"]) == self.native_size
        return same

    def _prepare_partial(self) -> None:
        """Reuse matching partial files, or reopen an incomplete final build, else start fresh."""
        p = self._p
        partial_ok = (
            p["idx_tmp"].is_file()
            and p["blob_tmp"].is_file()
            and p["idx_tmp"].stat().st_size == self.num_frames * 16
            and self._settings_match(_read_json(p["meta_tmp"]))
        )
        if not partial_ok:
            final_meta = _read_json(p["meta"])
            if (
                p["idx"].is_file()
                and p["blob"].is_file()
                and p["idx"].stat().st_size == self.num_frames * 16
                and self._settings_match(final_meta)
                and not (final_meta or {}).get("complete", False)
            ):
                # an incomplete final build: take it back as partial (index first, so no final
                # index ever points into a blob that is being appended to)
                os.replace(p["idx"], p["idx_tmp"])
                os.replace(p["blob"], p["blob_tmp"])
                p["meta"].unlink(missing_ok=True)
                partial_ok = True
        if partial_ok:
            idx = np.fromfile(p["idx_tmp"], dtype=np.int64).reshape(-1, 2)
            ends = idx[:, 0] + idx[:, 1]
            valid_end = int(ends[idx[:, 1] > 0].max()) if (idx[:, 1] > 0).any() else 0
            if p["blob_tmp"].stat().st_size < valid_end:  # blob lost data: cannot trust it
                partial_ok = False
            else:
                os.truncate(p["blob_tmp"], valid_end)  # drop a half-appended JPEG
        if not partial_ok:
            np.zeros((self.num_frames, 2), np.int64).tofile(p["idx_tmp"])
            p["blob_tmp"].write_bytes(b"")
        self._write_meta(p["meta_tmp"], complete=False)

    def _write_meta(self, path: Path, complete: bool) -> None:
        nw, nh = self.native_size if self.native_size is not None else (None, None)
        pw, ph = proxy_size(nw, nh, self.max_side) if nw else (None, None)
        meta = {
            "version": _FORMAT_VERSION,
            "frames": self.num_frames,
            "native_width": nw,
            "native_height": nh,
            "width": pw,
            "height": ph,
            "max_side": self.max_side,
            "quality": self.quality,
            "complete": complete,
        }
        with atomic_open(path) as fh:
            json.dump(meta, fh, indent=1)

    # -- writing ------------------------------------------------------------------------------
    def has(self, t: int) -> bool:
        """Whether frame t already has a proxy (e.g. from a resumed build)."""
        return bool(self._idx[t, 1] > 0)

    def missing(self) -> np.ndarray:
        """Frame indices still without a proxy."""
        return np.flatnonzero(self._idx[:, 1] == 0)

    def add(self, t: int, rgb: np.ndarray) -> None:
        """Encode native frame t (RGB uint8 HxWx3) as a proxy JPEG; a no-op if already there."""
        if self._closed:
            raise ValueError("ProxyWriter is closed")
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} out of range 0..{self.num_frames - 1}")
        if self._idx[t, 1] > 0:
            return
        h, w = rgb.shape[:2]
        if self.native_size is None:
            self.native_size = (w, h)
            self._write_meta(self._p["meta_tmp"], complete=False)
        elif (w, h) != self.native_size:
            raise ValueError(f"frame {t} is {w}x{h}, expected {self.native_size}")
        pw, ph = proxy_size(w, h, self.max_side)
        small = rgb
        if (pw, ph) != (w, h):
            small = fast_area_resize(rgb, (pw, ph))
        ok, jpeg = cv2.imencode(
            ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        )
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for frame {t}")
        offset = self._blob.tell()
        entry = np.array([offset, len(jpeg)], np.int64)
        with writing(self._p["blob_tmp"]):
            self._blob.write(jpeg.tobytes())
            self._blob.flush()  # bytes first, then the index entry that points at them
        with writing(self._p["idx_tmp"]):
            write_all(self._idx_fd, entry.tobytes(), t * 16)
        self._idx[t] = entry

    def close(self) -> bool:
        """Make the files final (missing frames stay length 0); True if every frame is there."""
        if self._closed:
            return self._complete
        complete = not (self._idx[:, 1] == 0).any()
        self._closed = True
        p = self._p
        with writing(p["blob_tmp"]):
            try:
                self._blob.close()  # flushes; a full disk fails here, before anything is final
            finally:
                os.close(self._idx_fd)
            p["idx"].unlink(missing_ok=True)  # no final index may point into the replaced blob
            p["meta"].unlink(missing_ok=True)
            os.replace(p["blob_tmp"], p["blob"])
            os.replace(p["idx_tmp"], p["idx"])
            # the final meta last: only a store whose blob and index are both in place may
            # claim to be complete (a kill before this line leaves a store that is rebuilt)
            self._write_meta(p["meta"], complete=complete)
            p["meta_tmp"].unlink(missing_ok=True)
        self._complete = complete
        return complete

    def abort(self) -> None:
        """Stop without finalising; the partial files stay for a resume."""
        if self._closed:
            return
        self._closed = True
        os.close(self._idx_fd)
        try:
            self._blob.close()
        except OSError:  # its buffer could not be flushed (disk full): resume truncates the blob
            pass



class ProxyStore:
    """Reads a sequence's proxies through memory maps; cameras are opened on first use.

    ``ProxyStore(cache_dir, seq)`` finds ``cache_dir/proxies/<seq.key>``;
    ``ProxyStore.open(directory)`` takes that folder directly. Not thread-safe for `refresh`;
    concurrent `read`s are fine. After a rebuild, call `refresh()` to see the new files.
    """

    def __init__(
        self, cache_dir: str | os.PathLike[str], seq: MultiviewSequence | None = None
    ) -> None:
        self.directory = Path(cache_dir) if seq is None else proxy_dir(cache_dir, seq)
        self._cams: dict[int, tuple[np.ndarray, np.ndarray, dict] | None] = {}

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> ProxyStore:
        return cls(directory)

    def _camera(self, camera_index: int) -> tuple[np.ndarray, np.ndarray, dict] | None:
        c = int(camera_index)
        if c not in self._cams:
            self._cams[c] = self._load(c)
        return self._cams[c]

    def _load(self, c: int) -> tuple[np.ndarray, np.ndarray, dict] | None:
        p = _paths(self.directory, c)
        meta = _read_json(p["meta"])
        if meta is None or not p["idx"].is_file() or not p["blob"].is_file():
            return None
        frames = int(meta.get("frames", 0))
        if frames <= 0 or p["idx"].stat().st_size != frames * 16:
            raise UserInputError(p["idx"], "proxy index does not match its metadata; rebuild")
        idx = np.memmap(p["idx"], dtype=np.int64, mode="r", shape=(frames, 2))
        blob_size = p["blob"].stat().st_size
        if (idx[:, 0] + idx[:, 1]).max(initial=0) > blob_size:
            raise UserInputError(p["blob"], "proxy blob is shorter than its index; rebuild")
        blob = (
            np.memmap(p["blob"], dtype=np.uint8, mode="r")
            if blob_size
            else np.zeros(0, np.uint8)
        )
        return idx, blob, meta

    def refresh(self) -> None:
        """Forget opened cameras so the next read sees rebuilt files."""
        self._cams.clear()

    def available(self, camera_index: int) -> bool:
        """Whether this camera has final proxy files (possibly with some frames missing)."""
        return self._camera(camera_index) is not None

    def complete(self, camera_index: int) -> bool:
        """Whether every frame of this camera has a proxy."""
        cam = self._camera(camera_index)
        return cam is not None and bool(cam[2].get("complete"))

    def has(self, camera_index: int, t: int) -> bool:
        cam = self._camera(camera_index)
        return cam is not None and 0 <= t < len(cam[0]) and bool(cam[0][t, 1] > 0)

    def num_frames(self, camera_index: int) -> int:
        cam = self._camera(camera_index)
        return 0 if cam is None else len(cam[0])

    def size(self, camera_index: int) -> tuple[int, int]:
        """Proxy (width, height) of this camera."""
        meta = self._meta(camera_index)
        return int(meta["width"]), int(meta["height"])

    def scale(self, camera_index: int) -> float:
        """Proxy pixels per native pixel (x); multiply native overlay coordinates by it."""
        return self.scale_xy(camera_index)[0]

    def scale_xy(self, camera_index: int) -> tuple[float, float]:
        """(x, y) proxy pixels per native pixel; they differ only by rounding of the size."""
        meta = self._meta(camera_index)
        return meta["width"] / meta["native_width"], meta["height"] / meta["native_height"]

    def _meta(self, camera_index: int) -> dict:
        cam = self._camera(camera_index)
        if cam is None:
            raise ProxyMissingError(f"no proxies for camera {camera_index} in {self.directory}")
        if not cam[2].get("native_width"):
            raise ProxyMissingError(f"proxies of camera {camera_index} have no frames yet")
        return cam[2]

    def read(self, camera_index: int, t: int) -> np.ndarray:
        """Proxy of native frame t: RGB uint8; raises ProxyMissingError if not built."""
        cam = self._camera(camera_index)
        if cam is None:
            raise ProxyMissingError(f"no proxies for camera {camera_index} in {self.directory}")
        idx, blob, _ = cam
        if not 0 <= t < len(idx):
            raise IndexError(f"frame {t} out of range 0..{len(idx) - 1}")
        offset, length = (int(v) for v in idx[t])
        if length == 0:
            raise ProxyMissingError(f"camera {camera_index} frame {t} has no proxy")
        bgr = cv2.imdecode(blob[offset : offset + length], cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserInputError(
                _paths(self.directory, camera_index)["blob"], f"proxy of frame {t} is corrupt"
            )
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cams.clear()


ProgressCallback = Callable[[int, int], "bool | None"]


def build_proxies(
    seq: MultiviewSequence,
    cache_dir: str | os.PathLike[str],
    max_side: int = DEFAULT_MAX_SIDE,
    progress: ProgressCallback | None = None,
) -> bool:
    """Build (or resume) every camera's proxies by one sequential decode per camera.

    Proxies are indexed by synchronised frame t (frame t + offset of the camera's file).
    `progress(done, total)` is called after each frame; returning False stops the build, leaving
    resumable partial files. Returns True when every camera is complete.
    """
    directory = proxy_dir(cache_dir, seq)
    total = seq.num_frames * len(seq.cameras)
    done = 0
    all_complete = True
    for c, cam in enumerate(seq.cameras):
        store_meta = _read_json(_paths(directory, c)["meta"])
        if store_meta and store_meta.get("complete") and store_meta.get("frames") == seq.num_frames:
            if store_meta.get("max_side") == max_side:
                done += seq.num_frames
                if progress is not None:
                    progress(done, total)
                continue
        writer = ProxyWriter(
            directory, c, seq.num_frames, max_side, native_size=(cam.width, cam.height)
        )
        try:
            missing = writer.missing()
            done += seq.num_frames - len(missing)
            start = int(missing[0]) if len(missing) else seq.num_frames
            stop = int(missing[-1]) + 1 if len(missing) else seq.num_frames
            for t, rgb in enumerate(seq.iter_frames(c, start, stop), start=start):
                if writer.has(t):
                    continue
                writer.add(t, rgb)
                done += 1
                if progress is not None and progress(done, total) is False:
                    writer.abort()
                    return False
        except BaseException:
            writer.abort()
            raise
        all_complete = writer.close() and all_complete
    return all_complete
