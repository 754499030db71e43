"""Background work: full-resolution decode, live inference, cache builds, demo generation.

Nothing here runs on the UI thread. Decode and inference keep only the newest request: when the
UI asks faster than a worker answers, older requests are dropped instead of queueing up, so the
answer is always about a frame the user is looking at now.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QThread, Signal

from ..core.errors import UserInputError
from ..core.joints import NUM_JOINTS
from ..core.model import crop_rays
from .posing import place_in_world, project_views
from .state import Prediction


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
        frames = [media.full_frame(c, t) for c in range(len(media.sequence.cameras))]
        return media, t, frames


class InferenceWorker(LatestRequestWorker):
    """Runs the Predictor on all views of one frame in one batch.

    Requests: ("load", checkpoint path) or ("frame", media, t). Loads are never dropped by frames:
    a load replaces everything pending, and a frame request after it waits for the load.
    """

    loaded = Signal(object, str)  # checkpoint path, device name
    loadFailed = Signal(str)  # one-line message naming the checkpoint

    def __init__(self, parent=None, device: str = "auto") -> None:
        super().__init__(parent)
        self.device = device
        self.predictor = None
        self.crop_size = 128
        self.cpu_threads: int | None = None
        self.warmup_batch = 4  # the window sets it to the number of views
        self._load_lock = threading.Lock()
        self._load_request: Path | None = None

    def load(self, path: Path) -> None:
        with self._load_lock:
            self._load_request = Path(path)
        self.submit(("load",))

    def request_frame(self, media, t: int) -> None:
        if self.predictor is None and self._load_request is None:
            return
        self.submit(("frame", media, int(t)))

    def process(self, request):
        with self._load_lock:
            load, self._load_request = self._load_request, None
        if load is not None:
            try:
                self._load(load)
            except UserInputError as exc:
                self.loadFailed.emit(str(exc))
            except Exception as exc:  # noqa: BLE001 - incompatible files fail in many ways
                self.loadFailed.emit(
                    f"{load}: cannot load checkpoint ({type(exc).__name__}: {exc})"
                )
            if request[0] == "load":
                return None
        if request[0] != "frame" or self.predictor is None:
            return None
        _, media, t = request
        return self.infer(media, t)

    def _load(self, path: Path) -> None:
        import torch

        from ..core.inference import Predictor

        if self.cpu_threads is None:
            # leave a core to the UI thread and the decoders: playback must not stutter
            self.cpu_threads = max(1, (os.cpu_count() or 2) - 1)
            torch.set_num_threads(self.cpu_threads)

        if not Path(path).is_file():
            raise UserInputError(path, "checkpoint file does not exist")
        predictor = Predictor(path, device=self.device)
        size = int(_crop_size_of(predictor))
        # the probe checks the model's answer and warms it up at the batch size of the views:
        # a first call at a new batch size holds the interpreter for a few hundred ms
        batch = max(1, self.warmup_batch)
        probe = predictor.predict(np.zeros((batch, size, size, 3), dtype=np.uint8))
        shape = tuple(np.shape(probe.get("pose_cam")))
        if shape != (batch, NUM_JOINTS, 3):
            raise UserInputError(
                path,
                f"model predicts poses of shape {shape[1:]}, the Studio needs ({NUM_JOINTS}, 3)",
            )
        self.predictor, self.crop_size = predictor, size
        self.loaded.emit(path, str(getattr(predictor, "device_name", self.device)))

    def infer(self, media, t: int) -> Prediction:
        start = time.perf_counter()
        crops, regions = media.crops(t, self.crop_size)
        seq = media.sequence
        cals = [c.calibration for c in seq.cameras]
        rays = None  # where each crop sits in its image: needed for the camera-frame orientation
        if getattr(self.predictor, "uses_rays", False) and all(c is not None for c in cals):
            rays = np.stack(
                [crop_rays(np.asarray(r, float), c.K, c.dist) for r, c in zip(regions, cals)]
            )
        out = self.predictor.predict(crops, rays=rays)
        pose_cam = np.asarray(out["pose_cam"], dtype=np.float64)
        pose_world = None
        if len(cals) >= 2 and all(c is not None for c in cals):
            pose_world = place_in_world(pose_cam, cals, regions)
        points2d = project_views(pose_cam, pose_world, cals, regions)
        emb = out.get("embedding")
        return Prediction(
            frame=t,
            pose_cam=pose_cam,
            pose_world=pose_world,
            points2d=points2d,
            embedding=None if emb is None else np.asarray(emb),
            seconds=time.perf_counter() - start,
            extra={"regions": regions, "media": media},
        )


def _crop_size_of(predictor) -> int:
    for name in ("crop_size", "input_size"):
        value = getattr(predictor, name, None)
        if isinstance(value, int) and value > 0:
            return value
    meta = getattr(predictor, "meta", None) or {}
    if isinstance(meta, dict):
        for key in ("crop_size", "input_size"):
            if isinstance(meta.get(key), int):
                return meta[key]
        cfg = meta.get("config")
        if isinstance(cfg, dict) and isinstance(cfg.get("crop_size"), int):
            return cfg["crop_size"]
    return 128


class TaskWorker(QThread):
    """Runs one function with a progress callback off the UI thread (cache build, demo data)."""

    progress = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[[Callable[[int, int], None]], object], parent=None) -> None:
        super().__init__(parent)
        self.fn = fn
        self.cancelled = False

    def _progress(self, done: int, total: int) -> None:
        if self.cancelled:
            raise KeyboardInterrupt("cancelled")
        self.progress.emit(int(done), int(total))

    def run(self) -> None:
        _lower_thread_priority(10)
        try:
            result = self.fn(self._progress)
        except UserInputError as exc:
            self.failed.emit(str(exc))
        except KeyboardInterrupt:
            self.failed.emit("cancelled")
        except Exception as exc:  # noqa: BLE001 - reported, never crashes the window
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
