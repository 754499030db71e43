"""Deterministic video writer (PyAV) for fixtures, synthetic data and exports.

Why PyAV and not cv2.VideoWriter: OpenCV cannot write H.264 here, cannot set the keyframe spacing
or B-frames, and stamps containers with encoder versions and times. Here every codec runs
single-threaded with bit-exact muxing, so the same frames give the same bytes on the same machine.

Codecs (the container follows from the codec, whatever the file extension says, so pick a
matching one):

- ``"h264"``: libx264, yuv420p, mp4/mov/mkv. ``gop`` = keyframe interval (scene-cut keyframes
  are then disabled so the spacing is exact), ``bframes`` = max consecutive B-frames,
  ``quality`` = CRF (0..51, lower is better, default 18).
- ``"mp4v"``: MPEG-4 part 2 in mp4/mov/mkv; ``quality`` = max quantiser (1..31, default 3).
- ``"xvid"``: MPEG-4 part 2 with the XVID fourcc in avi; ``quality`` as mp4v.
- ``"mjpg"``: Motion JPEG in avi (every frame a keyframe); ``quality`` as mp4v.
- ``"ffv1"``: lossless FFV1 in mkv/avi (RGB kept exactly); ``quality`` ignored.

All yuv420 codecs (h264, mp4v, xvid, mjpg) need even width and height; odd sizes raise
UserInputError rather than being silently padded or cropped. ffv1 accepts any size.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .atomic import CommitOnExit, remove_stale_temps, temp_path, write_error, writing
from .errors import UserInputError

CODECS = ("h264", "mp4v", "xvid", "mjpg", "ffv1")

# codec name -> (ffmpeg encoder, pixel format, allowed file extensions)
_CODEC_SPECS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "h264": ("libx264", "yuv420p", (".mp4", ".mov", ".mkv")),
    "mp4v": ("mpeg4", "yuv420p", (".mp4", ".mov", ".mkv", ".avi")),
    "xvid": ("mpeg4", "yuv420p", (".avi", ".mkv")),
    "mjpg": ("mjpeg", "yuvj420p", (".avi", ".mkv", ".mov")),
    "ffv1": ("ffv1", "bgr0", (".mkv", ".avi")),
}


def _fps_fraction(fps: float) -> Fraction:
    """Exact rational frame rate: 29.97002997 -> 30000/1001, 25.0 -> 25."""
    return Fraction(fps).limit_denominator(1001)


class VideoWriter(CommitOnExit):
    """Write RGB uint8 frames to a video file; the file appears complete or not at all.

    Frames go to a temporary name next to ``path``; `close()` renames it into place. If the
    writer is abandoned by an exception inside a ``with`` block, the temporary file is removed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        width: int,
        height: int,
        codec: str = "h264",
        gop: int | None = None,
        bframes: int | None = None,
        quality: int | None = None,
    ) -> None:
        self.path = Path(path)
        if codec not in _CODEC_SPECS:
            raise UserInputError(self.path, f"unknown codec {codec!r}; use one of {CODECS}")
        encoder, pix_fmt, exts = _CODEC_SPECS[codec]
        if self.path.suffix.lower() not in exts:
            raise UserInputError(
                self.path, f"codec {codec} needs a file ending in one of {', '.join(exts)}"
            )
        if not (fps > 0 and np.isfinite(fps)):
            raise UserInputError(self.path, f"frame rate must be positive, got {fps}")
        if width <= 0 or height <= 0:
            raise UserInputError(self.path, f"bad frame size {width}x{height}")
        if pix_fmt.startswith("yuv") and (width % 2 or height % 2):
            raise UserInputError(
                self.path, f"codec {codec} needs an even frame size, got {width}x{height}"
            )
        if gop is not None and gop < 1:
            raise UserInputError(self.path, f"gop must be >= 1, got {gop}")
        if bframes is not None and bframes < 0:
            raise UserInputError(self.path, f"bframes must be >= 0, got {bframes}")
        self.codec = codec
        self.fps = float(fps)
        self.width = int(width)
        self.height = int(height)
        self.frames_written = 0
        self._rate = _fps_fraction(fps)
        self._pix_fmt = pix_fmt
        self._tmp = temp_path(self.path)  # the format is named below, not taken from it
        with writing(self.path, name_file=False):  # unwritable folder: one line, not a trace
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.path.parent)
            # fflags=+bitexact: no library version strings in the container, same bytes every run
            self._container = av.open(
                str(self._tmp),
                mode="w",
                format=_container_format(self.path.suffix.lower()),
                options={"fflags": "+bitexact"},
            )
        try:
            self._stream = self._container.add_stream(
                encoder, rate=self._rate, options=_encoder_options(codec, gop, bframes, quality)
            )
            ctx = self._stream.codec_context
            ctx.width = self.width
            ctx.height = self.height
            ctx.pix_fmt = pix_fmt
            ctx.time_base = 1 / self._rate
            ctx.thread_count = 1  # single-threaded: identical bytes regardless of core count
            if gop is not None:
                ctx.gop_size = gop
            if bframes is not None and codec != "mjpg":
                ctx.max_b_frames = bframes
            if codec == "xvid":
                ctx.codec_tag = "XVID"
            if codec == "mjpg":
                ctx.color_range = 2  # full-range JPEG levels
        except Exception:
            self.abort()
            raise
        self._closed = False

    # -- writing ------------------------------------------------------------------------------
    def write(self, rgb: np.ndarray) -> None:
        """Append one RGB uint8 HxWx3 frame."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        frame_array = np.asarray(rgb)
        if frame_array.dtype != np.uint8 or frame_array.shape != (self.height, self.width, 3):
            raise ValueError(
                f"{self.path}: expected uint8 frame of shape {(self.height, self.width, 3)}, "
                f"got {frame_array.dtype} {frame_array.shape}"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_array), format="rgb24")
        frame.pts = self.frames_written
        frame.time_base = self._stream.codec_context.time_base
        with writing(self.path, name_file=False):  # a full disk: one line, the caller aborts
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.frames_written == 0:
                self._container.start_encoding()  # a valid, empty file rather than none
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except OSError as exc:  # a full disk while flushing: nothing half-written stays
            self.abort()
            raise write_error(self.path, exc, name_file=False) from None
        except Exception:
            self.abort()
            raise
        with writing(self.path, name_file=False):
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the half-written temporary file."""
        self._closed = True
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - already failing; the temp file goes anyway
            pass
        self._tmp.unlink(missing_ok=True)



def _container_format(suffix: str) -> str:
    return {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}[suffix]


def _encoder_options(
    codec: str, gop: int | None, bframes: int | None, quality: int | None
) -> dict[str, str]:
    """AVOptions per codec; everything that could vary between runs is pinned."""
    if codec == "h264":
        # mbtree's lookahead gave run-to-run byte differences at some widths (e.g. 96, 320)
        params = ["threads=1", "sliced-threads=0", "no-mbtree=1"]
        if gop is not None:
            params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
        if bframes is not None:
            params.append(f"bframes={bframes}")
        return {
            "preset": "veryfast",
            "crf": str(18 if quality is None else quality),
            "x264-params": ":".join(params),
        }
    if codec in ("mp4v", "xvid", "mjpg"):
        q = 3 if quality is None else quality
        return {"qmin": "1", "qmax": str(q), "flags": "+bitexact"}
    return {"flags": "+bitexact"}  # ffv1
