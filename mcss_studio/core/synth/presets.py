"""Named dataset sizes: tiny (tests, seconds), demo (the README demo, < 1 min), benchmark (minutes),
standard (the benchmark's Human3.6M-like "varied" motion, minutes).

tiny, demo and benchmark use the original "cyclic" motion and give the same bytes for a seed as
they always did; standard is where the motion closer to Human3.6M lives (core/synth/motion.py).

Sizes were picked by measurement on a 2-core CPU (see benchmarks/bench_synth_render.py): the
person is ray cast only inside its box, so cost grows with the body's pixel area, not the frame.
At 384x288 the person is about 110 px tall, close to the 128 px training crop. Preset widths are
multiples of 128: libx264's macroblock tree was seen to give run-to-run byte differences at other
widths (96, 320), which would break the same-seed-same-bytes promise.
"""

from __future__ import annotations

from dataclasses import dataclass

from .motion import ACTIONS, VARIED_ACTIONS

# DESIGN.md section 2: the Human3.6M protocol on the synthetic benchmark
TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")
LABELLED_SUBJECTS: tuple[str, ...] = ("S1",)

MIN_FPS, MAX_FPS = 25.0, 50.0
MIN_SIDE, MAX_SIDE = 64, 1920


@dataclass(frozen=True)
class Preset:
    """What a preset renders: every subject performs every action `takes` times."""

    subjects: tuple[str, ...]
    actions: tuple[str, ...]
    takes: int
    seconds: float  # length of each take
    fps: float
    size: tuple[int, int]  # width, height
    cameras: int
    description: str
    motion: str = "cyclic"  # motion.MOTION_STYLES


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        subjects=("S1", "S9"),
        actions=("walk", "wave"),
        takes=1,
        seconds=0.48,
        fps=25.0,
        size=(128, 96),
        cameras=4,
        description="4 sequences x 12 frames, 128x96: for tests",
    ),
    "demo": Preset(
        subjects=("S1", "S9"),
        actions=("walk", "wave", "squat"),
        takes=1,
        seconds=4.0,
        fps=25.0,
        size=(384, 288),
        cameras=4,
        description="6 sequences x 100 frames, 4 cameras at 384x288: the built-in demo",
    ),
    "benchmark": Preset(
        subjects=TRAIN_SUBJECTS + TEST_SUBJECTS,
        actions=ACTIONS,
        takes=1,
        seconds=6.0,
        fps=25.0,
        size=(384, 288),
        cameras=4,
        description="7 subjects x 10 actions x 150 frames (10500 frames per camera), "
        "4 cameras at 384x288: the limited-supervision protocol",
    ),
    "standard": Preset(
        subjects=TRAIN_SUBJECTS + TEST_SUBJECTS,
        actions=VARIED_ACTIONS,
        takes=1,
        seconds=4.0,
        fps=25.0,
        size=(256, 192),
        cameras=4,
        description="7 subjects x 13 actions x 100 frames (9100 frames per camera), 4 cameras "
        "at 256x192, varied motion (turning, tempo drift, holds, transitions): the "
        "limited-supervision protocol sized for a 2-core CPU",
        motion="varied",
    ),
}


def splits_for(subjects: tuple[str, ...]) -> dict[str, list[str]]:
    """The DESIGN.md split restricted to the subjects a dataset actually has."""
    return {
        "train": [s for s in TRAIN_SUBJECTS if s in subjects],
        "test": [s for s in TEST_SUBJECTS if s in subjects],
        "labelled": [s for s in LABELLED_SUBJECTS if s in subjects],
    }
