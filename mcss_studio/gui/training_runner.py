"""The trainer subprocess, owned by the Session: start, resume, stop (graceful), kill.

`mcss-train fit` runs as a separate process (QProcess: no network ports, no threads of ours) on
a config the Studio writes into `runs/<id>/config.toml`; its merged stdout and stderr go
straight into `runs/<id>/trainer.log` (Qt writes them, the UI thread copies nothing) and its
event stream into `runs/<id>/events.jsonl`, which the training panel follows. The launch record
(`launch.json`, core/runs.py) gets each start, the stop request and how the process ended, so a
kill or crash shows as a failed run with its log even though the trainer wrote no status. Stop
sends SIGTERM: the trainer finishes its step, saves `checkpoints/last.safetensors` and reports
"stopped". The trainer runs at a lower CPU priority with one core left free, so the UI, playback
and live inference stay responsive. The Studio never imports trainer/: it runs it by module name.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QIODevice, QObject, QProcess, QProcessEnvironment, Signal

from ..core.errors import UserInputError
from ..core.runs import (
    CONFIG_FILE,
    LOG_FILE,
    Launch,
    LaunchRecord,
    fit_command,
    new_run_id,
    read_launch,
    write_launch,
    write_run_config,
)
from .state import StudioState

# The trainer runs at the lowest priority (nice 19 and, on Linux, SCHED_IDLE): below the
# Studio's background threads too, not beside them. Those threads take the GIL on and off; one
# that holds it and waits for a core behind the trainer's threads holds the UI thread off with
# it (a 111 ms stall was that, with both at nice 10). The trainer gets every core the Studio
# leaves idle.
TRAINER_NICE = 19
SHUTDOWN_WAIT_MS = 60000  # closing the Studio: the trainer's last step and checkpoint


def lower_priority(pid: int) -> None:
    """Put process `pid` (its main thread, and the threads it starts later) at TRAINER_NICE
    and, where the system has it, the idle scheduling class; where refused, it runs as is.
    A TRAINER_NICE of 0 leaves it at the Studio's priority, idle class included: scripts
    that must finish runs on a loaded machine (scripts/training_screenshots.py) set that."""
    if TRAINER_NICE <= 0:
        return
    try:
        if hasattr(os, "setpriority"):
            os.setpriority(os.PRIO_PROCESS, pid, TRAINER_NICE)
        if hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        pass  # it ended already, or the system refuses


def trainer_environment() -> QProcessEnvironment:
    """The Studio's environment, with trainer/ importable from a checkout (the folder holding
    mcss_studio/ also holds trainer/) and torch threads leaving one core to the Studio."""
    env = QProcessEnvironment.systemEnvironment()
    root = Path(__file__).resolve().parents[2]
    if (root / "trainer" / "cli.py").is_file():
        paths = [str(root)] + [p for p in env.value("PYTHONPATH", "").split(os.pathsep) if p]
        env.insert("PYTHONPATH", os.pathsep.join(dict.fromkeys(paths)))
    if not env.contains("MCSS_THREADS"):
        env.insert("MCSS_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
    env.insert("PYTHONUNBUFFERED", "1")  # the log tail shows lines as they are printed
    return env


class TrainingRunner(QObject):
    """At most one trainer process at a time; `state.training_run` names its run folder."""

    ended = Signal(object)  # run folder: the process is gone (the launch record says how)

    def __init__(self, state: StudioState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.process: QProcess | None = None
        self.run_dir: Path | None = None
        self.record: LaunchRecord | None = None
        self.python = sys.executable

    @property
    def busy(self) -> bool:
        return self.process is not None

    # -- starting -----------------------------------------------------------------------------
    def start(self, project: Path, settings: dict, name: str = "", labels: dict | None = None
              ) -> Path:
        """Write runs/<id>/config.toml for `settings` (TrainConfig names; data, run folder and
        cache are the project's) and start the trainer on it. Returns the run folder."""
        self._refuse_second(Path(project))
        runs = Path(project) / "runs"
        run_id = new_run_id(runs, name)
        run_dir = runs / run_id
        full = dict(settings, run_dir=str(runs.resolve()), run_id=run_id,
                    cache_dir=str((Path(project) / "cache" / "training").resolve()))
        config = write_run_config(run_dir, full)
        self._launch(run_dir, LaunchRecord(dict(labels or {}), []), fit_command(config,
                                                                                python=self.python))
        return run_dir

    def resume(self, run_dir: Path, checkpoint: Path) -> None:
        """Continue run `run_dir` from `checkpoint` (any of its checkpoints), appending to its
        events; the curves after the checkpoint's step are replaced."""
        run_dir = Path(run_dir)
        self._refuse_second(run_dir)
        config = run_dir / CONFIG_FILE
        if not config.is_file():
            raise UserInputError(config, "no config.toml in the run folder: cannot resume it")
        if not Path(checkpoint).is_file():
            raise UserInputError(checkpoint, "checkpoint not found")
        record = read_launch(run_dir) or LaunchRecord()
        self._launch(run_dir, record, fit_command(config, Path(checkpoint), self.python),
                     str(checkpoint))

    def _refuse_second(self, where: Path) -> None:
        if self.busy:
            raise UserInputError(where, f"run {self.run_dir.name} is still training: stop it "
                                 "first")

    def _launch(self, run_dir: Path, record: LaunchRecord, argv: list[str],
                resume: str = "") -> None:
        launch = Launch(command=argv, started=time.time(), resume=resume)
        record.launches.append(launch)
        write_launch(run_dir, record)
        proc = QProcess(self)
        proc.setProgram(argv[0])
        proc.setArguments(argv[1:])
        proc.setWorkingDirectory(str(run_dir))
        proc.setProcessEnvironment(trainer_environment())
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.setStandardOutputFile(str(run_dir / LOG_FILE), QIODevice.OpenModeFlag.Append)
        # as it starts, before its threads exist: they inherit it
        proc.started.connect(lambda: lower_priority(int(proc.processId())))
        proc.finished.connect(lambda code, status: self._finished(proc, code, status))
        proc.errorOccurred.connect(lambda error: self._error(proc, error))
        self.process, self.run_dir, self.record = proc, run_dir, record
        self.state.set_training_run(run_dir)
        self.state.set_run(run_dir)
        proc.start()

    # -- stopping -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Graceful: SIGTERM; the trainer saves a checkpoint after its current step."""
        if self.process is None or self.record is None or self.run_dir is None:
            return
        self.record.launches[-1].stop_requested = True
        write_launch(self.run_dir, self.record)
        self.process.terminate()

    def kill(self) -> None:
        """At once, without a checkpoint (a trainer that does not answer Stop)."""
        if self.process is not None:
            self.process.kill()

    def shutdown(self) -> None:
        """The Studio closes: stop the trainer and wait for its checkpoint, then kill it."""
        proc = self.process
        if proc is None:
            return
        self.stop()
        if not proc.waitForFinished(SHUTDOWN_WAIT_MS):
            proc.kill()
            proc.waitForFinished(5000)

    # -- the end ------------------------------------------------------------------------------
    def _finished(self, proc: QProcess, code: int, status: QProcess.ExitStatus) -> None:
        crashed = status == QProcess.ExitStatus.CrashExit  # then `code` is the signal (Linux)
        self._record_end(proc, code, crashed)

    def _error(self, proc: QProcess, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.run_dir is not None:
            with open(self.run_dir / LOG_FILE, "a", encoding="utf-8") as fh:
                fh.write(f"mcss-studio: cannot start {proc.program()}: {proc.errorString()}\n")
            self._record_end(proc, None, False)

    def _record_end(self, proc: QProcess, code: int | None, crashed: bool) -> None:
        if proc is not self.process or self.record is None or self.run_dir is None:
            return  # already recorded (errorOccurred and finished both came)
        launch = self.record.launches[-1]
        launch.ended, launch.exit_code, launch.crashed = time.time(), code, crashed
        run_dir = self.run_dir
        try:
            write_launch(run_dir, self.record)
        except UserInputError as exc:
            self.state.report_error(str(exc))
        self.process, self.run_dir, self.record = None, None, None
        proc.deleteLater()
        self.state.set_training_run(None)
        self.ended.emit(run_dir)
