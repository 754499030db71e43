"""Read-ahead of display proxies during playback, off the UI thread.

Showing a proxy costs a JPEG decode, a colour conversion and a resize to the view's size, about
4 ms per view on a 2-core CPU: with four views and the 3D view's render in the same event-loop
pass the UI stalled past 50 ms. While playing, the grid asks this worker for the frames the
playback clock will show next; it decodes them and fits each to its view's size in a
background thread (OpenCV releases the GIL), so showing a frame that was read ahead is a blit.

Guarantees: a prepared frame is used only for the media, frame and view size it was made for
(anything else falls back to decoding on the UI thread, as before); the store holds only the
frames of the newest request, so memory stays a few frames per view however long the video.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtGui import QImage

from ...core.media import MediaAccess, MediaClosedError
from ..workers import LatestRequestWorker

READ_AHEAD = 3  # frames per view prepared ahead of the one shown


@dataclass(frozen=True)
class PreparedFrame:
    """One view's proxy of one frame: the RGB proxy (for zoomed views) and the proxy already
    fitted to `size` (w, h) as a 32-bit image that paints without conversion."""

    media: MediaAccess  # held, so that its id, the store's key, cannot go to another media
    rgb: np.ndarray
    scale: float  # proxy px per native px
    size: tuple[int, int]
    fitted: QImage
    pixels: np.ndarray  # the fitted image's memory, kept alive with it


def fit_to_view(rgb: np.ndarray, size: tuple[int, int]) -> tuple[QImage, np.ndarray]:
    """The frame resized to size (w, h) in the 32-bit layout the screen uses, and the array that
    holds its pixels. OpenCV's resize, about twice as fast as QImage.scaled with smooth
    transformation plus the format conversion. Area averaging only where it matters, shrinking
    to half or less: for a smaller shrink OpenCV's area resize is up to 6x slower than bilinear
    (0.64 vs 0.11 ms for 384x288 -> 380x285) and looks the same."""
    shrink_2x = 2 * size[0] <= rgb.shape[1]
    method = cv2.INTER_AREA if shrink_2x else cv2.INTER_LINEAR
    bgrx = cv2.cvtColor(cv2.resize(rgb, size, interpolation=method), cv2.COLOR_RGB2BGRA)
    image = QImage(bgrx.data, size[0], size[1], bgrx.strides[0], QImage.Format.Format_RGB32)
    return image, bgrx


def prepare(media: MediaAccess, cam: int, t: int, size: tuple[int, int]) -> PreparedFrame | None:
    """Decode camera cam's proxy of frame t and fit it to size; None without a proxy."""
    proxy = media.proxy_frame(cam, t)
    if proxy is None:
        return None
    rgb, scale = proxy
    fitted, pixels = fit_to_view(rgb, size)
    return PreparedFrame(media, rgb, scale, size, fitted, pixels)


class ProxyPrefetcher(LatestRequestWorker):
    """Prepares the proxies of the frames playback shows next; the grid takes them.

    Request: (media, frames, sizes) with sizes[c] the fitted size of view c (None: that view is
    zoomed or hidden and is not read ahead). Only the newest request is worked on.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._ready: dict[tuple, PreparedFrame] = {}  # (media id, cam, t) -> frame
        self._cleared = 0  # clear()s so far: work begun before one is not stored
        self.hits = 0  # frames the grid took from here (tests and the benchmark read them)

    def take(self, media: MediaAccess, cam: int, t: int, size: tuple[int, int] | None
             ) -> PreparedFrame | None:
        """The prepared frame for exactly this media, camera, frame and size, removed from the
        store; None if it is not ready (or was made for another size)."""
        with self._lock:
            frame = self._ready.pop((id(media), cam, t), None)
        if frame is None or frame.media is not media or frame.size != size:
            return None
        self.hits += 1
        return frame

    def clear(self) -> None:
        """Forget what is prepared, asked for or being prepared (playback paused): a frame
        the worker finishes afterwards is not kept."""
        with self._cond:
            self._pending, self._has_pending = None, False
        with self._lock:
            self._ready.clear()
            self._cleared += 1

    def process(self, request) -> None:
        media, frames, sizes = request
        wanted = {(id(media), c, t) for t in frames for c, s in enumerate(sizes) if s}
        with self._lock:  # frames of an older request, or of another sequence, go
            for key in [k for k in self._ready if k not in wanted]:
                del self._ready[key]
            cleared = self._cleared
        for t in frames:
            for cam, size in enumerate(sizes):
                if size is None or self._has((id(media), cam, t)) or self._superseded():
                    continue
                if media.closed:
                    raise MediaClosedError(media.sequence.path)
                frame = prepare(media, cam, t, size)
                if frame is not None:
                    with self._lock:
                        if self._cleared != cleared:
                            return None  # paused meanwhile
                        self._ready[(id(media), cam, t)] = frame
        return None

    def _has(self, key: tuple) -> bool:
        with self._lock:
            return key in self._ready

    def _superseded(self) -> bool:
        """A newer request is waiting: this one's remaining frames are no longer the next."""
        with self._cond:
            return self._has_pending
