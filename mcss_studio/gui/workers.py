"""Background work: full-resolution decode, live inference, detector keypoints for labelling
assist, cache builds, demo generation.

Nothing here runs on the UI thread. Decode and inference keep only the newest request: when the
UI asks faster than a worker answers, older requests are dropped instead of queueing up, so the
answer is always about a frame the user is looking at now. A request names the media it is
about; one whose media was closed meanwhile (the user switched sequences) is dropped quietly:
that is no error, and nothing reaches the user or stderr.

The workers run Python too, and a Python thread waits for the interpreter lock (GIL) while
another holds it: by default up to 5 ms per wait before the holder is asked to let go. A repaint
enters Python once per widget and item it paints, so with decode, inference and the 3D render
busy, those waits added up to stalls of 40-150 ms. `prefer_ui_thread` shortens the wait to
half a millisecond (measured: `benchmarks/bench_studio.py --training`, README).
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QThread, Signal

from ..core.errors import UserInputError
from ..core.keypoint_store import KeypointStore, keypoints_path, load_keypoints
from ..core.media import MediaAccess, MediaClosedError
from ..core.pipeline import PosePipeline

GIL_SWITCH_INTERVAL_S = 0.0005  # how long a thread waits for the GIL before it asks for it


def prefer_ui_thread() -> None:
    """Let a thread that wants the GIL (the UI thread entering a paint) have it within
    GIL_SWITCH_INTERVAL_S instead of Python's 5 ms; a shorter interval already set is kept.
    Process-wide: called when the Studio's workers start."""
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def _lower_thread_priority(nice: int) -> None:
    """Raise the calling thread's nice value (Linux: per thread), so that on a machine with few
    cores the UI thread wins the CPU over decoding and inference; elsewhere do nothing."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError:
        pass


class LatestRequestWorker(QThread):
    """A thread that processes the most recent submitted request; older pending ones are dropped."""

    done = Signal(object)  # result of process()
    failed = Signal(str)  # one-line message for a dialog or the status bar
    nice = 10  # background work yields the CPU to the UI thread

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: object | None = None
        self._has_pending = False
        self._stopping = False
        self._busy = False
        self.dropped = 0
        self.processed = 0

    def submit(self, request: object) -> None:
        with self._cond:
            if self._has_pending:
                self.dropped += 1
            self._pending = request
            self._has_pending = True
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.wait(10000)

    def idle(self) -> bool:
        with self._cond:
            return not self._has_pending and not self._busy

    def run(self) -> None:
        _lower_thread_priority(self.nice)
        while True:
            with self._cond:
                while not self._has_pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                request, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            try:
                result = self.process(request)
                if result is not None:
                    self.done.emit(result)
            except MediaClosedError:
                self.dropped += 1  # about a sequence that is no longer shown
            except UserInputError as exc:
                self.failed.emit(str(exc))
            except Exception as exc:  # noqa: BLE001 - a worker must survive and report
                traceback.print_exc()
                self.failed.emit(f"{type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._busy = False
                self.processed += 1

    def process(self, request: object) -> object | None:  # pragma: no cover - abstract
        raise NotImplementedError


class FrameDecodeWorker(LatestRequestWorker):
    """Full-resolution frames of all views, decoded with the frame-exact readers.

    Request: (media, t); result: (media, t, [RGB per camera]).
    """

    def process(self, request):
        media, t = request
        if media.closed:
            raise MediaClosedError(media.sequence.path)
        frames = [media.full_frame(c, t) for c in range(len(media.sequence.cameras))]
        return media, t, frames


class InferenceWorker(LatestRequestWorker):
    """Runs the prediction pipeline (core/pipeline.py) on all views of one frame in one batch.

    Requests: ("load", checkpoint path) or ("frame", media, t). Loads are never dropped by frames:
    a load replaces everything pending, and a frame request after it waits for the load. A
    result is a Prediction whose extra["media"] names the media it is about.
    """

    loaded = Signal(object, str)  # checkpoint path, device name
    loadFailed = Signal(object, str)  # checkpoint path, one-line message naming it

    def __init__(self, parent=None, device: str = "auto") -> None:
        super().__init__(parent)
        self.device = device
        self.pipeline: PosePipeline | None = None
        self.cpu_threads: int | None = None
        self.warmup_batch = 4  # the Session sets it to the number of views
        self._load_lock = threading.Lock()
        self._load_request: Path | None = None
        self._unloads = 0  # a load that started before an unload must not bring its model back

    def load(self, path: Path) -> None:
        with self._load_lock:
            self._load_request = Path(path)
        self.submit(("load",))

    def unload(self) -> None:
        """Forget the model and any load still pending or running (answers stop until the next
        load)."""
        with self._load_lock:
            self._load_request = None
            self._unloads += 1
            self.pipeline = None

    def request_frame(self, media: MediaAccess, t: int) -> None:
        if self.pipeline is None and self._load_request is None:
            return
        self.submit(("frame", media, int(t)))

    def process(self, request):
        with self._load_lock:
            load, self._load_request = self._load_request, None
            unloads = self._unloads
        if load is not None:
            try:
                self._load(load, unloads)
            except UserInputError as exc:
                self.loadFailed.emit(load, str(exc))
            if request[0] == "load":
                return None
        with self._load_lock:
            pipeline = self.pipeline  # once: unload() on the UI thread may clear it meanwhile
        if request[0] != "frame" or pipeline is None:
            return None
        _, media, t = request
        prediction = pipeline.predict_frame(media, t)
        prediction.extra["media"] = media
        return prediction

    def _load(self, path: Path, unloads: int) -> None:
        if self.cpu_threads is None:
            import torch

            # leave a core to the UI thread and the decoders: playback must not stutter
            self.cpu_threads = max(1, (os.cpu_count() or 2) - 1)
            torch.set_num_threads(self.cpu_threads)
        pipeline = PosePipeline.load(path, self.device, self.warmup_batch)
        with self._load_lock:
            if unloads != self._unloads:
                return  # unloaded while loading
            self.pipeline = pipeline
        self.loaded.emit(path, pipeline.device_name)


@dataclass
class FrameKeypoints:
    """A detector's 2D joints of every view of one frame: joints (C, 17, 2) native px (NaN:
    none), confidence (C, 17); `origin` "store" (the recording's keypoint store) or "detector"
    (run for this request)."""

    media: MediaAccess
    frame: int
    joints: np.ndarray
    confidence: np.ndarray
    origin: str


def mediapipe_detector():
    """The default detector factory (imports mediapipe in the worker thread, on first use)."""
    from ..core.pose_detector import MediaPipeDetector

    return MediaPipeDetector()


class DetectorWorker(LatestRequestWorker):
    """Keypoints for labelling assist. Request: (media, t); result: FrameKeypoints. From the
    recording's keypoint store when it holds the frame (`mcss-data keypoints` made it), else
    by running the detector on every view here, never on the UI thread. The detector is built
    on first use from `factory` (default MediaPipe; tests inject a fake), whose `detector_id`
    names the store it reads."""

    def __init__(self, parent=None, factory: Callable[[], object] | None = None) -> None:
        super().__init__(parent)
        self.factory = factory or mediapipe_detector
        self._detector = None
        self._store: tuple[tuple, KeypointStore | None] | None = None  # (file identity, store)

    @property
    def detector_id(self) -> str:
        from ..core.pose_detector import DETECTOR_ID

        return getattr(self.factory, "detector_id", DETECTOR_ID)

    def set_factory(self, factory: Callable[[], object]) -> None:
        """Use another detector from the next request on (set while the worker is idle)."""
        self.factory, self._detector, self._store = factory, None, None

    def process(self, request):
        media, t = request
        if media.closed:
            raise MediaClosedError(media.sequence.path)
        store = self._keypoint_store(media)
        found = None if store is None else store.frame(t)
        if found is not None:
            return FrameKeypoints(media, t, found[0], found[1], "store")
        if self._detector is None:
            self._detector = self.factory()
        views = [self._detector.detect(media.full_frame(c, t))
                 for c in range(len(media.sequence.cameras))]
        return FrameKeypoints(media, t, np.stack([v.joints for v in views]),
                              np.stack([v.confidence for v in views]), "detector")

    def _keypoint_store(self, media: MediaAccess) -> KeypointStore | None:
        """The store of this media's recording, read again only when its file changed."""
        if media.cache_dir is None:
            return None
        path = keypoints_path(media.cache_dir, media.sequence)
        try:
            st = path.stat()
            identity = (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            return None
        if self._store is None or self._store[0] != identity:
            self._store = (identity, load_keypoints(path, media.sequence, self.detector_id))
        return self._store[1]

    def stop(self) -> None:
        super().stop()
        close = getattr(self._detector, "close", None)
        if close is not None:
            close()


class TaskWorker(QThread):
    """Runs one function with a progress callback off the UI thread (cache build, demo data)."""

    progress = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[Callable[[int, int], None]], object], parent=None) -> None:
        super().__init__(parent)
        self.fn = fn
        self.cancelled = False
        self.error: BaseException | None = None  # why it failed, set before `failed` is sent

    def _progress(self, done: int, total: int) -> None:
        if self.cancelled:
            raise KeyboardInterrupt("cancelled")
        self.progress.emit(int(done), int(total))

    def run(self) -> None:
        _lower_thread_priority(10)
        try:
            result = self.fn(self._progress)
        except UserInputError as exc:
            self.error = exc
            self.failed.emit(str(exc))
        except (KeyboardInterrupt, MediaClosedError) as exc:
            self.error = exc
            self.cancelled = True  # stopped, or its sequence was closed: nothing to report
            self.failed.emit("cancelled")
        except Exception as exc:  # noqa: BLE001 - reported, never crashes the window
            self.error = exc
            traceback.print_exc()
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.succeeded.emit(result)


class _CallWorker(QThread):
    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__()
        self.fn = fn
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the UI thread
            self.error = exc


def run_off_ui_thread(fn: Callable[[], object]) -> object:
    """Call fn in a worker thread and wait for it while the window keeps painting.

    For short-but-unbounded work whose result the caller needs at once (opening a recording
    demuxes every video to index its frames: seconds on long files). User input is held back
    meanwhile, so nothing re-enters the caller; fn's exception is re-raised here.
    """
    worker = _CallWorker(fn)
    loop = QEventLoop()
    worker.finished.connect(loop.quit)  # queued to this thread: cannot fire before exec()
    worker.start()
    loop.exec(QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
    worker.wait()
    if worker.error is not None:
        raise worker.error
    return worker.result
