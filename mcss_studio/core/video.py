"""Frame-exact readers for video files and image folders (the FrameSource implementations).

Why not OpenCV's CAP_PROP_POS_FRAMES: on long-GOP and B-frame files it lands on the wrong frame
(the "frame drift" users of other tools complain about). VideoReader instead demuxes the file
once on open (packets only, no decoding) to index every frame's presentation timestamp (pts) and
which frames are keyframes. Frame i is the i-th smallest pts. `read(i)` seeks to the keyframe at
or before i, decodes forward until the frame with that pts, and checks what it got: an overshot
seek steps back one keyframe; a timestamp that is not in the index switches the reader to a slow,
always-correct mode that decodes from the start and counts frames. The decoder position is kept,
so reading i+1 after i (scrubbing forwards, playback) never seeks.

Readers are not thread-safe: use one reader per thread (they are cheap to open again).

Opening again is cheap: what the demux finds is remembered (core/video_index.py, keyed by the
file's content identity), and a reader of a file already indexed takes the index from there and
opens the container only when it first decodes. A sequence whose pixels come from the crop cache
(the embedding index) then never touches its videos.

Truncated files (decided: serve what is complete, never guess): a packet that runs past the end
of the file is dropped from the index, so `frame_count` counts only complete frames and every one
of them reads exactly (avi and mkv cut in the middle work this way; `truncated` is True when the
reader noticed the cut, mkv's demuxer hides it). A file whose index cannot be read at all (an
mp4/mov cut before its moov atom, i.e. any mp4 not written with faststart) raises UserInputError
on open. A frame that still fails to decode raises UserInputError naming the file and the frame;
nothing hangs (demuxing and decoding only ever move forward through a finite file).
"""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from .errors import UserInputError
from .framesource import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, FrameSource, natural_key
from .video_index import INDEX_MEMO, StreamIndex, file_identity

DEFAULT_IMAGE_FOLDER_FPS = 30.0


def open_frame_source(path: str | os.PathLike[str], fps: float | None = None) -> FrameSource:
    """A FrameSource for a video file or a folder of images.

    `fps` overrides the rate of an image folder (default 30); videos use their stream's rate.
    """
    p = Path(path)
    if p.is_dir():
        return ImageFolderSource(p, fps=DEFAULT_IMAGE_FOLDER_FPS if fps is None else fps)
    if not p.exists():
        raise UserInputError(p, "file not found")
    if p.suffix.lower() not in VIDEO_EXTENSIONS:
        raise UserInputError(
            p,
            f"unsupported file type {p.suffix or '(none)'}; use a video "
            f"({', '.join(VIDEO_EXTENSIONS)}) or a folder of images",
        )
    return VideoReader(p)


# ---------------------------------------------------------------------------------------------
# video files
# ---------------------------------------------------------------------------------------------


class VideoReader:
    """Frame-exact random and sequential access to one video stream (RGB uint8 HxWx3)."""

    # Decode forward instead of seeking when the decoder is at most this many frames before the
    # keyframe a seek would land on (a seek costs about as much as decoding a few frames).
    FORWARD_SLACK = 2

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserInputError(self.path, "file not found")
        size = self.path.stat().st_size
        if size == 0:
            raise UserInputError(self.path, "file is empty")
        self._gen: Iterator[av.VideoFrame] | None = None  # decoder output after the last seek
        self._pos = -1  # index of the last frame taken from self._gen (-1: nothing yet)
        # (index, decoded frame) last returned: a repeated read converts it again, never decodes
        self._last: tuple[int, av.VideoFrame] | None = None
        self.seek_count = 0  # seeks done so far (tests and benchmarks check scrubbing cost)
        self._seek_key_pos = 0
        self._epoch = 0  # bumped whenever the decoder is repositioned
        self._opened: av.container.InputContainer | None = None  # opened on first decode
        self._memo_key = file_identity(self.path)
        known = INDEX_MEMO.get(self._memo_key)
        if known is not None:
            self._adopt(known)
            return
        self._opened = self._open_container()
        try:
            self._build_index(size)
        except Exception:
            self._opened.close()
            raise
        INDEX_MEMO.put(self._memo_key, self._index_facts())

    # -- opening and indexing -----------------------------------------------------------------
    @property
    def _container(self) -> av.container.InputContainer:
        if self._opened is None:
            self._opened = self._open_container()
        return self._opened

    @_container.setter
    def _container(self, container: av.container.InputContainer) -> None:
        self._opened = container

    @property
    def _stream(self) -> av.video.stream.VideoStream:
        return self._container.streams.video[0]

    def _index_facts(self) -> StreamIndex:
        return StreamIndex(
            width=self.width, height=self.height, fps=self.fps, truncated=self.truncated,
            frame_pts=np.asarray(self._frame_pts, np.int64), slow=self._slow,
            key_indices=np.asarray(self._key_indices, np.int64), frame_count=self.frame_count)

    def _adopt(self, facts: StreamIndex) -> None:
        """Take a remembered index of this very file instead of demuxing it again."""
        self.width, self.height, self.fps = facts.width, facts.height, facts.fps
        self.truncated, self._slow = facts.truncated, facts.slow
        self.frame_count = facts.frame_count
        self._frame_pts = facts.frame_pts.tolist()
        self._key_indices = facts.key_indices.tolist()
        self._pts_to_index = {} if self._slow else {p: i for i, p in enumerate(self._frame_pts)}

    def _open_container(self) -> av.container.InputContainer:
        try:
            container = av.open(str(self.path), mode="r")
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            raise UserInputError(self.path, f"not a readable video ({_short(exc)})") from None
        if not container.streams.video:
            container.close()
            raise UserInputError(self.path, "contains no video stream (or no frames)")
        container.streams.video[0].thread_type = "AUTO"  # threads change speed, never pixels
        return container

    def _build_index(self, file_size: int) -> None:
        """Demux every packet once (no decoding) to find each frame's pts and the keyframes."""
        stream = self._stream
        ctx = stream.codec_context
        if ctx.width <= 0 or ctx.height <= 0:
            raise UserInputError(self.path, "video stream has no frame size (not a video?)")
        self.width = int(ctx.width)
        self.height = int(ctx.height)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        pts_list: list[int] = []
        key_pts: list[int] = []
        missing_pts = False
        self.truncated = False
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue  # the demuxer's end-of-stream marker, or pre-roll to drop
                pos = packet.pos
                if pos is not None and pos >= 0 and pos + packet.size > file_size:
                    self.truncated = True  # runs past the end of the file: incomplete frame
                    continue
                if packet.is_corrupt:
                    self.truncated = True
                    continue
                if packet.pts is None:
                    missing_pts = True
                    pts_list.append(len(pts_list))
                    continue
                pts_list.append(int(packet.pts))
                if packet.is_keyframe:
                    key_pts.append(int(packet.pts))
        except av.error.FFmpegError as exc:
            # A broken tail: keep what was demuxed so far; decoding will confirm it.
            self.truncated = True
            if not pts_list:
                raise UserInputError(self.path, f"not a readable video ({_short(exc)})") from None
        if not pts_list:
            raise UserInputError(self.path, "video has no frames")
        self._frame_pts = sorted(pts_list)
        # Timestamps we cannot trust (missing, repeated, no keyframe at the start): slow mode.
        self._slow = (
            missing_pts
            or len(set(pts_list)) != len(pts_list)
            or not key_pts
            or min(key_pts) != self._frame_pts[0]
        )
        if self._slow:
            self.frame_count = self._count_by_decoding()
            self._pts_to_index: dict[int, int] = {}
            self._key_indices: list[int] = [0]
        else:
            self.frame_count = len(self._frame_pts)
            self._pts_to_index = {pts: i for i, pts in enumerate(self._frame_pts)}
            self._key_indices = sorted({self._pts_to_index[p] for p in key_pts})
        if self.frame_count == 0:
            raise UserInputError(self.path, "no frame can be decoded (corrupt video?)")
        if self.fps <= 0:
            self.fps = 30.0

    def _count_by_decoding(self) -> int:
        """Exact frame count when timestamps cannot be trusted: decode everything once."""
        self._seek_start()
        count = 0
        try:
            for _ in self._container.decode(self._stream):
                count += 1
        except av.error.FFmpegError:
            self.truncated = True
        self._seek_start()
        return count

    @property
    def keyframe_indices(self) -> list[int]:
        """Frame indices of the keyframes (seek points); [0] in slow mode."""
        return list(self._key_indices)

    @property
    def slow_mode(self) -> bool:
        """True when timestamps were unusable and every seek decodes from the start."""
        return self._slow

    # -- decoding -----------------------------------------------------------------------------
    def _seek_start(self) -> None:
        """Back to the first packet; reopening is the one way that needs no timestamps."""
        self._drop_generator()
        self._close_container()
        self._opened = self._open_container()

    def _close_container(self) -> None:
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def _drop_generator(self) -> None:
        if self._gen is not None:
            self._gen.close()  # type: ignore[attr-defined]
        self._gen = None
        self._pos = -1
        self._epoch += 1

    def _decoded(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """(index, frame) pairs from the current decoder position onwards."""
        assert self._gen is not None
        while True:
            try:
                frame = next(self._gen)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                raise UserInputError(
                    self.path, f"frame {self._pos + 1} cannot be decoded ({_short(exc)})"
                ) from None
            if self._slow:
                index = self._pos + 1
            else:
                pts = frame.pts
                index = self._pts_to_index.get(pts) if pts is not None else None
                if index is None:
                    raise _Inconsistent()
            yield index, frame

    def _position_for(self, index: int) -> None:
        """Leave the decoder where the next frames it yields lead up to `index`."""
        if self._gen is not None and 0 <= self._pos < index:
            if self._slow:
                return  # slow mode only ever decodes forward
            key = self._key_indices[bisect.bisect_right(self._key_indices, index) - 1]
            if self._pos >= key - self.FORWARD_SLACK:
                return  # close enough: decode forward, no seek
        if self._slow:
            self._seek_start()
            self._gen = self._container.decode(self._stream)
            return
        kpos = bisect.bisect_right(self._key_indices, index) - 1
        self._seek_to_key(kpos)

    def _seek_to_key(self, kpos: int) -> None:
        self._drop_generator()
        self.seek_count += 1
        pts = self._frame_pts[self._key_indices[max(kpos, 0)]]
        try:
            self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            # some demuxers refuse a seek to their very start: reopening gets there too
            self._container.close()
            self._container = self._open_container()
        self._gen = self._container.decode(self._stream)
        self._seek_key_pos = kpos

    def _frames_from(self, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
        """Frames start..stop-1 in order, exact; handles overshoot and inconsistent timestamps.

        If another read moves the decoder while this generator is suspended, it repositions
        itself before continuing, so interleaving reads with an iteration stays exact.
        """
        want = start
        retries = 0
        need_position = True
        while want < stop:
            if need_position:
                self._position_for(want)
            need_position = True
            epoch = self._epoch
            try:
                for index, frame in self._decoded():
                    if not self._slow and self._pos < 0 and index > want:
                        raise _Overshoot()
                    self._pos = index
                    if index < want:
                        continue
                    if index != want:
                        raise _Inconsistent()  # a frame went missing between two indices
                    self._last = (index, frame)
                    yield index, frame.to_ndarray(format="rgb24")
                    want += 1
                    if want >= stop:
                        return
                    if self._epoch != epoch or self._pos != want - 1:
                        break  # someone else moved the decoder while we were suspended
                else:
                    raise UserInputError(
                        self.path,
                        f"frame {want} cannot be decoded (stream ended early; file truncated?)",
                    )
            except _Overshoot:
                retries += 1
                kpos = self._seek_key_pos - 1
                if kpos < 0 or retries > 64:
                    self._go_slow()
                else:
                    self._seek_to_key(kpos)  # step back one keyframe and decode from there
                    need_position = False
            except _Inconsistent:
                if self._slow:
                    raise UserInputError(self.path, f"frame {want} cannot be decoded") from None
                self._go_slow()

    def _go_slow(self) -> None:
        """Timestamps lied: fall back to counting frames from the start (always correct)."""
        self._slow = True
        self._key_indices = [0]
        self._drop_generator()
        count = self._count_by_decoding()
        self.frame_count = min(self.frame_count, count)
        INDEX_MEMO.put(self._memo_key, self._index_facts())  # the next reader starts slow

    # -- FrameSource --------------------------------------------------------------------------
    def read(self, index: int) -> np.ndarray:
        """RGB uint8 HxWx3 of frame `index`, identical to what iter_frames yields for it."""
        index = self._check_index(index)
        if self._last is not None and self._last[0] == index:
            return self._last[1].to_ndarray(format="rgb24")
        for _, rgb in self._frames_from(index, index + 1):
            return rgb
        raise UserInputError(self.path, f"frame {index} cannot be decoded")

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Sequential decode of frames [start, stop)."""
        stop = self.frame_count if stop is None else min(int(stop), self.frame_count)
        start = max(0, int(start))
        if start >= stop:
            return
        for _, rgb in self._frames_from(start, stop):
            yield rgb

    def _check_index(self, index: int) -> int:
        i = int(index)
        if not 0 <= i < self.frame_count:
            raise IndexError(f"{self.path}: frame {index} out of range 0..{self.frame_count - 1}")
        return i

    def close(self) -> None:
        self._drop_generator()
        self._last = None
        self._close_container()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.frame_count


class _Overshoot(Exception):
    """A seek landed after the wanted frame."""


class _Inconsistent(Exception):
    """Decoded timestamps do not match the packet index."""


def _short(exc: BaseException) -> str:
    """The library's reason without its repetition of the file name."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:160]


# ---------------------------------------------------------------------------------------------
# image folders
# ---------------------------------------------------------------------------------------------


class ImageFolderSource:
    """Frames from a folder of images sorted by natural name order; all must share one size."""

    def __init__(self, folder: str | os.PathLike[str], fps: float = DEFAULT_IMAGE_FOLDER_FPS):
        self.path = Path(folder)
        if not self.path.is_dir():
            raise UserInputError(self.path, "folder not found")
        files = [
            f
            for f in self.path.iterdir()
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
        ]
        if not files:
            raise UserInputError(
                self.path, f"folder has no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        self.files = sorted(files, key=lambda f: natural_key(f.name))
        first = _image_size(self.files[0])
        for f in self.files[1:]:
            size = _image_size(f)
            if size != first:
                raise UserInputError(
                    f,
                    f"image size {size[0]}x{size[1]} differs from {first[0]}x{first[1]} "
                    f"of {self.files[0].name}",
                )
        self.width, self.height = first
        self.fps = float(fps)
        self.frame_count = len(self.files)

    def read(self, index: int) -> np.ndarray:
        i = int(index)
        if not 0 <= i < self.frame_count:
            raise IndexError(f"{self.path}: frame {index} out of range 0..{self.frame_count - 1}")
        return _load_rgb(self.files[i], (self.width, self.height))

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        stop = self.frame_count if stop is None else min(int(stop), self.frame_count)
        for i in range(max(0, int(start)), stop):
            yield self.read(i)

    def close(self) -> None:
        pass

    def __enter__(self) -> ImageFolderSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.frame_count


def _load_rgb(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode one image to RGB uint8 (grey and alpha converted, 16-bit scaled down)."""
    data = np.fromfile(path, dtype=np.uint8)  # works with non-ASCII paths, unlike cv2.imread
    # pixels as stored: an EXIF rotation would make frames disagree with the header sizes
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise UserInputError(path, "image cannot be decoded (corrupt or not an image)")
    if (img.shape[1], img.shape[0]) != size:
        raise UserInputError(
            path, f"image size {img.shape[1]}x{img.shape[0]} differs from {size[0]}x{size[1]}"
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; decodes the image only for unusual formats."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError as exc:
        raise UserInputError(path, f"cannot read image ({exc.strerror})") from None
    size = _header_size(head)
    if size is None:
        whole = len(head) < 64 * 1024
        data = np.frombuffer(head, np.uint8) if whole else np.fromfile(path, np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            raise UserInputError(path, "image cannot be decoded (corrupt or not an image)")
        size = (int(img.shape[1]), int(img.shape[0]))
    return size


def _header_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from PNG, BMP or JPEG headers; None if not recognised."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return (w, h) if w > 0 and h > 0 else None
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return (abs(w), abs(h)) if w and h else None
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                return None
            marker = head[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            length = struct.unpack(">H", head[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", head[i + 5 : i + 9])
                return (w, h) if w > 0 and h > 0 else None
            i += 2 + length
    return None
