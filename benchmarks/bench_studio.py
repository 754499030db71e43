"""Studio responsiveness on the demo project, measured side by side in one run.

    xvfb-run -a .venv/bin/python benchmarks/bench_studio.py [DEMO] [--checkpoint CKPT]
        [--seconds 20] [--jumps 100] [--soak-minutes 10] [--training [--repeat N]]

Reports: display fps during playback with live inference vs without; random-jump latency until
all views show the frame, through proxies vs seeking the videos directly; the worst UI
event-loop stall during playback with inference, beside the full garbage collections that ran
in the window; resident memory after 1 minute of looping playback with inference vs after
--soak-minutes; and inference throughput on CUDA if present.
With --training (only that): the same playback with live inference, the training panel on
screen, first alone and then with a training run of the demo project competing (the panel's
"quick" preset, started from the panel as a user would), then the time a graceful Stop takes
until the trainer's checkpoint is written; --repeat N measures the pair N times in turn (a
new run each time) and prints the worst stall of each, with the count of gaps over 50 ms.
Without a checkpoint, the default model (ModelConfig() defaults, random weights) is used: the
speed of a network does not depend on its weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def default_checkpoint(tmp: Path) -> Path:
    import torch

    from mcss_studio.core.checkpoint import save_checkpoint
    from mcss_studio.core.model import MCSSModel, ModelConfig

    torch.manual_seed(0)
    return save_checkpoint(tmp / "default-model.safetensors", MCSSModel(ModelConfig()),
                           meta={"crop_size": 128})


class StallProbe:
    """A 5 ms timer on the UI thread; the worst gap beyond its interval is the worst stall."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.interval = 0.005
        self.last = None
        self.gaps: list[float] = []

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.gaps.append(now - self.last - self.interval)
        self.last = now

    def start(self) -> None:
        self.gaps, self.last = [], None
        self.timer.start(int(self.interval * 1000))

    def stop(self) -> float:
        self.timer.stop()
        return max(self.gaps) if self.gaps else float("nan")


class FullCollections:
    """Python's full (generation 2) garbage collections, timed as they happen: one holds the
    GIL for tens to hundreds of ms, so a window's worst stall is read beside them."""

    def __init__(self) -> None:
        import gc
        import threading

        self._started: dict[int, float] = {}
        self.done: list[tuple[float, float]] = []  # (start, seconds)
        self._thread_id = threading.get_ident
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        key = self._thread_id()
        if phase == "start":
            self._started[key] = time.perf_counter()
        elif info.get("generation") == 2 and key in self._started:
            start = self._started.pop(key)
            self.done.append((start, time.perf_counter() - start))

    def since(self, t0: float) -> list[float]:
        """Durations (s) of the full collections that started at t0 or later."""
        return [d for start, d in self.done if start >= t0]


FULL_GC = FullCollections()

# A separate process that sleeps 1 ms at a time and notes each wake-up late by more than 10 ms.
# It needs a core for microseconds, so a late wake-up means the machine itself paused (a
# virtual machine's host running something else) or every core was busy: the floor under
# a window's worst stall that no change to the Studio moves.
_PAUSE_PROBE = """
import sys, time
last = time.perf_counter()
while True:
    time.sleep(0.001)
    now = time.perf_counter()
    if now - last > 0.011:
        print(f"{last:.6f} {now - last - 0.001:.6f}", flush=True)
    last = now
"""


class MachinePauses:
    """The pause probe's late wake-ups (perf_counter is CLOCK_MONOTONIC, shared by processes on
    Linux) and the time the host stole from this virtual machine (/proc/stat), per window."""

    def __init__(self, folder: Path) -> None:
        import subprocess

        self.log = folder / "machine-pauses.txt"
        self._out = open(self.log, "w")  # noqa: SIM115 - the probe writes until the bench ends
        self.proc = subprocess.Popen([sys.executable, "-c", _PAUSE_PROBE], stdout=self._out)

    def between(self, t0: float, t1: float) -> list[float]:
        """Lateness (s) of the probe's wake-ups that started in [t0, t1]."""
        self._out.flush()
        pauses = []
        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and t0 <= float(parts[0]) <= t1:
                pauses.append(float(parts[1]))
        return pauses

    @staticmethod
    def stolen_ms() -> float:
        """Milliseconds of CPU time the host stole, summed over cores, since boot (nan where
        the system does not say)."""
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()
            return 1000.0 * int(fields[8]) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._out.close()


PAUSES: list[MachinePauses] = []  # started by main()


def machine_column(t0: float, stolen0: float) -> str:
    """'pauses over 20 ms (worst) / ms stolen' for the window that started at t0."""
    if not PAUSES:
        return "-"
    late = [g for g in PAUSES[0].between(t0, time.perf_counter()) if g > 0.02]
    worst = f" ({1000 * max(late):.0f} ms)" if late else ""
    return f"{len(late)}{worst} / {MachinePauses.stolen_ms() - stolen0:.0f}"


def idle_stall(probe: StallProbe, seconds: float) -> tuple[float, str]:
    """The worst stall of the event loop doing nothing (paused, nothing loading): the floor
    that the machine's load alone puts under every figure; and the machine's pauses then."""
    t0, stolen0 = time.perf_counter(), MachinePauses.stolen_ms()
    probe.start()
    pump(seconds)
    return probe.stop(), machine_column(t0, stolen0)


WORST_PASS_CPU = [0.0]  # the UI thread's CPU seconds in the costliest event-loop pass so far


def pump(seconds: float) -> None:
    """Run the event loop for `seconds`, noting the CPU time of its costliest pass: on an idle
    machine a stall is that long; on a loaded one the wall-clock stall adds the waits for a
    core, the CPU time does not."""
    from PySide6.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        cpu0 = time.thread_time()
        QApplication.processEvents()
        WORST_PASS_CPU[0] = max(WORST_PASS_CPU[0], time.thread_time() - cpu0)
        time.sleep(0.001)


def wait_for(cond, timeout: float, what: str) -> None:
    from PySide6.QtWidgets import QApplication

    from mcss_studio.gui.screenshot import wait_until

    wait_until(QApplication.instance(), cond, timeout, what)


def play(window, seconds: float, speed: float = 1.0, probe: StallProbe | None = None) -> dict:
    """Loop playback for `seconds`; distinct frames shown per second, inference answers/s."""
    shown = [0]
    answers = [0]
    grid, state = window.grid, window.state
    def count_shown(_t: int) -> None:
        shown[0] += 1

    def count_answer(pred) -> None:
        answers[0] += pred is not None

    on_shown = grid.frameShown.connect(count_shown)
    on_pred = state.predictionChanged.connect(count_answer)
    state.set_speed(speed)
    dropped0 = window.session.inference.dropped
    if probe is not None:
        probe.start()
    state.set_playing(True)
    WORST_PASS_CPU[0] = 0.0
    t0, ui0, cpu0 = time.perf_counter(), time.thread_time(), time.process_time()
    stolen0 = MachinePauses.stolen_ms()
    pump(seconds)
    state.set_playing(False)
    elapsed = time.perf_counter() - t0
    ui_cpu, cpu = time.thread_time() - ui0, time.process_time() - cpu0
    stall = probe.stop() if probe is not None else float("nan")
    full_gc = FULL_GC.since(t0)
    long_gaps = sum(g > 0.05 for g in probe.gaps) if probe is not None else 0
    grid.frameShown.disconnect(on_shown)
    state.predictionChanged.disconnect(on_pred)
    state.set_speed(1.0)
    return {"display_fps": shown[0] / elapsed, "inference_fps": answers[0] / elapsed,
            "dropped": window.session.inference.dropped - dropped0, "stall_ms": stall * 1000,
            "long_gaps": long_gaps,
            "full_gc": f"{len(full_gc)} ({1000 * max(full_gc):.0f} ms)" if full_gc else "0",
            "machine": machine_column(t0, stolen0),
            "pass_cpu_ms": WORST_PASS_CPU[0] * 1000,
            # load-independent cost: CPU the UI thread spent per shown frame (it also idles in
            # pump()'s 1 ms sleeps, so this is an upper bound), and the whole process's CPU use
            "ui_ms_per_frame": 1000 * ui_cpu / max(shown[0], 1), "cpu_cores": cpu / elapsed}


def jump_latencies(window, frames: list[int], direct: bool) -> np.ndarray:
    """Seconds from a jump until every view has painted the frame."""
    grid, state, media = window.grid, window.state, window.state.media
    out = []
    for t in frames:
        t0 = time.perf_counter()
        if direct:  # seek and decode each video, as a player without proxies must
            images = [media.full_frame(c, t) for c in range(len(grid.views))]
            state.blockSignals(True)
            state.frame = t
            state.blockSignals(False)
            for view, rgb in zip(grid.views, images):
                view.set_frame(rgb, 1.0, t, full_res=True)
        else:
            state.set_frame(t)
        for view in grid.views:
            view.repaint()
        assert all(v.frame_index == t for v in grid.views)
        out.append(time.perf_counter() - t0)
    return np.asarray(out)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def gpu_throughput(checkpoint: Path) -> str:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device here"
    from mcss_studio.core.inference import Predictor

    pred = Predictor(checkpoint, device="cuda")
    s = pred.contract.crop_size
    lines = [f"device {pred.device_name}"]
    for n in (4, 64, 256):
        crops = np.random.default_rng(0).integers(0, 255, (n, s, s, 3), dtype=np.uint8)
        for _ in range(3):
            pred.predict(crops)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        reps = 20
        for _ in range(reps):
            pred.predict(crops)
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / reps
        lines.append(f"batch {n:3d}: {n / dt:8.0f} crops/s ({dt * 1000:.1f} ms per batch)")
    return "; ".join(lines)


def training_competing(window, demo: Path, ckpt: Path, seconds: float, repeats: int) -> None:
    """Playback with inference and the training panel shown, alone and with a training run
    of the demo project competing, `repeats` times in turn (a new run each time); then how
    long each graceful stop took."""
    from mcss_studio.core.project import create_project, is_project

    if not is_project(demo):  # the Studio's demo is a project (Session.open_demo makes it one)
        create_project(demo, demo)
        window.open_path(demo)
        wait_for(lambda: not window.session.cache_busy, 900, "the cache build")
    window.open_checkpoint(ckpt)
    wait_for(lambda: window.state.checkpoint is not None, 300, "the checkpoint")
    window.training_dock.show()
    pump(1.0)  # the panel's first layout and paint (pyqtgraph, ~150 ms once) is not the floor
    panel, probe = window.training_panel, StallProbe()
    idle = idle_stall(probe, seconds)
    rows, stops = [], []
    for k in range(repeats):
        tag = f" ({k + 1})" if repeats > 1 else ""
        rows.append(("alone" + tag, play(window, seconds, probe=probe)))
        competing, device, stop = play_while_training(window, panel, seconds, probe)
        rows.append(("with a training run" + tag, competing))
        stops.append(stop)
    print(f"\nplayback at 1x with live inference and the training panel shown, {seconds:g} s "
          f"each; trainer: {device}, the quick preset's model")
    print(f"{'':30s}{'display fps':>12s}{'inference/s':>12s}{'worst stall':>13s}"
          f"{'gaps > 50 ms':>14s}{'worst pass CPU':>16s}{'CPU cores':>11s}"
          f"{'full GCs (worst)':>18s}{'machine pauses (worst) / ms stolen':>36s}")
    print(f"{'event loop idle (the floor)':30s}{'':12s}{'':12s}{idle[0] * 1000:10.1f} ms"
          f"{'':14s}{'':16s}{'':11s}{'':18s}{idle[1]:>36s}")
    for name, r in rows:
        print(f"{name:30s}{r['display_fps']:12.1f}{r['inference_fps']:12.1f}"
              f"{r['stall_ms']:10.1f} ms{r['long_gaps']:14d}{r['pass_cpu_ms']:13.1f} ms"
              f"{r['cpu_cores']:11.2f}{r['full_gc']:>18s}{r['machine']:>36s}")
    if repeats > 1:
        for kind in ("alone", "with a training run"):
            worst = [r["stall_ms"] for name, r in rows if name.startswith(kind)]
            print(f"worst stall {kind}, {repeats} repeats: max {max(worst):.1f} ms, median "
                  f"{np.median(worst):.1f} ms")
    rates = ", ".join(f"{r['trainer_steps_per_s'][0]:.1f} ({r['trainer_steps_per_s'][1]:.1f})"
                      for name, r in rows if "trainer_steps_per_s" in r)
    print(f"trainer steps/s during playback (and with the Studio paused just before): {rates}")
    for stop_s, last in stops:
        print(f"graceful stop: {stop_s:.1f} s until the trainer ended with status "
              f"{last.get('status')!r} at step {last.get('step')} (checkpoint written)")


def play_while_training(window, panel, seconds: float, probe: StallProbe):
    """Start a quick-preset run from the panel, play while it trains, stop it gracefully.
    Returns the playback figures, the trainer's device, and (seconds the stop took, the
    run's last event)."""
    from mcss_studio.core.runlog import read_events

    panel.form.apply_preset(next(iter(panel.form.presets)))  # quick
    panel.form.steps.setValue(100000)  # longer than the measurement: it competes throughout
    panel.form.remember.setChecked(False)
    panel.start_button.click()
    run = window.state.training_run
    if run is None:
        raise SystemExit(f"the training run did not start: {window.state.last_error}")
    wait_for(lambda: panel.histories.get(run) is not None and panel.histories[run].step > 0,
             900, "the first training step")
    history, paused = panel.histories[run], min(5.0, seconds / 3)
    step0 = history.step
    pump(paused)  # the Studio paused: the trainer has the cores the UI leaves
    paused_rate, step0 = (history.step - step0) / paused, history.step
    competing = play(window, seconds, probe=probe)
    # what the trainer (nice 19, idle class) got done meanwhile: the cost of the UI's priority
    competing["trainer_steps_per_s"] = (history.step - step0) / seconds, paused_rate
    device = panel.histories[run].device
    t0 = time.perf_counter()
    panel.stop_button.click()
    wait_for(lambda: window.state.training_run is None, 900, "the trainer to stop")
    return competing, device, (time.perf_counter() - t0, read_events(run / "events.jsonl")[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", nargs="?", type=Path, help="demo dataset (default: generate/use "
                    "the Studio's demo cache)")
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--seconds", type=float, default=20.0, help="playback per measurement")
    ap.add_argument("--jumps", type=int, default=100)
    ap.add_argument("--soak-minutes", type=float, default=10.0)
    ap.add_argument("--gpu-only", action="store_true", help="only the CUDA throughput")
    ap.add_argument("--training", action="store_true", help="only playback with a training "
                    "run competing (the training panel's stall)")
    ap.add_argument("--repeat", type=int, default=1, help="with --training: measure alone and "
                    "with a training run this many times in turn")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-studio-"))
    ckpt = args.checkpoint or default_checkpoint(tmp)
    if args.gpu_only:
        print("inference throughput:", gpu_throughput(ckpt))
        return 0
    PAUSES.append(MachinePauses(tmp))

    from PySide6.QtWidgets import QApplication

    from mcss_studio.core.media import default_cache_root
    from mcss_studio.gui.main_window import MainWindow

    os.environ.setdefault("MCSS_STUDIO_SETTINGS", str(tmp / "settings.ini"))
    app = QApplication.instance() or QApplication([])
    window = MainWindow(interactive=False)
    window.resize(1400, 800)
    window.show()
    demo = args.demo
    if demo is None:
        demo = default_cache_root() / "demo"
        if not (demo / "manifest.json").is_file():
            from mcss_studio.core.synth import generate

            print("generating the demo dataset ...", flush=True)
            generate(demo, preset="demo")
    if not window.open_path(demo):
        print(window.state.last_error)
        return 2
    wait_for(lambda: not window.session.cache_busy, 900, "the proxy/crop cache build")
    seq = window.state.sequence
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPU cores, load average {load[0]:.1f} (other processes "
          "compete for them; the 'worst pass CPU' and 'UI ms/frame' columns do not depend on that)")
    print(f"sequence {seq.name}: {len(seq.cameras)} views "
          f"({', '.join(f'{c.width}x{c.height}' for c in seq.cameras)}), {seq.num_frames} frames "
          f"at {seq.fps:g} fps; proxies: {window.state.media.has_proxies}")
    window.session.unload_checkpoint()
    pump(1.0)
    if args.training:
        training_competing(window, demo, ckpt, args.seconds, args.repeat)
        window.close()
        app.processEvents()
        return 0

    # 1. playback without and with inference
    probe = StallProbe()
    idle = idle_stall(probe, args.seconds / 2)
    no_inf = play(window, args.seconds, probe=probe)
    no_inf_fast = play(window, args.seconds / 2, speed=4.0)
    window.open_checkpoint(ckpt)
    wait_for(lambda: window.state.checkpoint is not None, 300, "the checkpoint")
    with_inf = play(window, args.seconds, probe=probe)
    with_inf_fast = play(window, args.seconds / 2, speed=4.0)
    print(f"\nplayback at 1x ({seq.fps:g} fps video), {args.seconds:g} s each, device "
          f"{window.state.device}, checkpoint {Path(ckpt).name}")
    print(f"{'':24s}{'display fps':>12s}{'inference/s':>12s}{'dropped':>9s}{'worst stall':>13s}"
          f"{'worst pass CPU':>16s}{'UI ms/frame':>13s}{'CPU cores':>11s}{'full GCs (worst)':>18s}"
          f"{'machine pauses (worst) / ms stolen':>36s}")
    for name, r in (("without inference, 1x", no_inf), ("with inference, 1x", with_inf),
                    ("without inference, 4x", no_inf_fast), ("with inference, 4x", with_inf_fast)):
        print(f"{name:24s}{r['display_fps']:12.1f}{r['inference_fps']:12.1f}{r['dropped']:9d}"
              f"{r['stall_ms']:10.1f} ms{r['pass_cpu_ms']:13.1f} ms{r['ui_ms_per_frame']:13.1f}"
              f"{r['cpu_cores']:11.2f}{r['full_gc']:>18s}{r['machine']:>36s}")
    print(f"{'event loop idle (floor)':24s}{'':12s}{'':12s}{'':9s}{idle[0] * 1000:10.1f} ms"
          f"{'':16s}{'':13s}{'':11s}{'':18s}{idle[1]:>36s}")
    print(f"ratio display fps with/without inference (1x): "
          f"{with_inf['display_fps'] / max(no_inf['display_fps'], 1e-9):.2f}")

    # 2. random jumps: proxies vs direct seeking
    window.session.unload_checkpoint()
    pump(0.5)
    rng = np.random.default_rng(0)
    frames = [int(v) for v in rng.integers(0, seq.num_frames, args.jumps)]
    proxy = jump_latencies(window, frames, direct=False) * 1000
    direct = jump_latencies(window, frames, direct=True) * 1000
    print(f"\nrandom jump until all {len(seq.cameras)} views show the frame ({args.jumps} jumps)")
    print(f"{'':22s}{'median ms':>10s}{'p95 ms':>9s}{'worst ms':>10s}")
    for name, lat in (("through proxies", proxy), ("seeking the videos", direct)):
        print(f"{name:22s}{np.median(lat):10.1f}{np.percentile(lat, 95):9.1f}{lat.max():10.1f}")
    print(f"median speed-up of proxies: {np.median(direct) / np.median(proxy):.1f}x")

    # 3. memory over a long loop with inference
    window.open_checkpoint(ckpt)
    wait_for(lambda: window.state.checkpoint is not None, 300, "the checkpoint")
    soak = args.soak_minutes * 60
    first = min(60.0, soak)
    play(window, first)
    rss1 = rss_mb()
    trace = [f"{first / 60:.0f} min {rss1:.0f}"]
    done = first
    while done < soak:
        step = min(60.0, soak - done)
        play(window, step)
        done += step
        trace.append(f"{done / 60:.0f} min {rss_mb():.0f}")
    rss2 = rss_mb()
    print("resident memory (MiB) per minute: " + ", ".join(trace))
    print(f"\nresident memory, looping playback with inference: after {first / 60:.1f} min "
          f"{rss1:.0f} MiB, after {soak / 60:.1f} min {rss2:.0f} MiB "
          f"(growth {rss2 - rss1:+.0f} MiB, {100 * (rss2 - rss1) / rss1:+.1f}%)")
    print("\ninference throughput on CUDA:", gpu_throughput(ckpt))
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    try:
        code = main()
    finally:
        for pauses in PAUSES:
            pauses.close()
    sys.stdout.flush()
    os._exit(code)  # skip interpreter teardown of Qt/vispy objects (nothing left to save)
