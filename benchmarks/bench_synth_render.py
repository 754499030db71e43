"""Synthetic-dataset render throughput, measured side by side in one process.

For the benchmark preset's settings (or --size overrides) this renders a subset of its frames
(a few frames of every action, all cameras), once without and once with H.264 encoding, prints
frames per second per camera and the projected time of the full preset, and the ratio of the
sizes compared. `--contact-sheet PATH` also writes the demo preset's contact sheet (PNG or JPEG).

    .venv/bin/python benchmarks/bench_synth_render.py
    .venv/bin/python benchmarks/bench_synth_render.py --size 256x192 --size 320x240 --size 384x288
    .venv/bin/python benchmarks/bench_synth_render.py --contact-sheet docs/demo_contact_sheet.jpg
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mcss_studio.core.synth import PRESETS, plan_dataset
from mcss_studio.core.synth.body import build_shapes
from mcss_studio.core.synth.generate import build_views, make_subject, sequence_joints
from mcss_studio.core.synth.render import render_frame
from mcss_studio.core.video_writer import VideoWriter


def measure(size: tuple[int, int], frames_per_sequence: int, encode: bool) -> tuple[float, float]:
    """(CPU seconds per synchronised frame of all cameras, wall seconds per such frame).

    CPU time is what the work costs; wall time also counts whoever else shares the machine.
    """
    plan = plan_dataset("benchmark", seed=0, size=size)
    views = build_views(plan)
    # one take per action, subjects round-robin, so every action and body shape is sampled
    seqs = [
        next(s for s in plan.sequences if s.action == a and s.subject == plan.subjects[i % 7])
        for i, a in enumerate(dict.fromkeys(s.action for s in plan.sequences))
    ]
    cpu, wall, count = 0.0, 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for seq in seqs:
            subject = make_subject(plan.seed, seq.subject)
            joints = sequence_joints(plan, seq, subject)
            shapes = build_shapes(joints, subject.skeleton, subject.look.girth)
            writers = (
                [
                    VideoWriter(Path(tmp) / f"{seq.name}_{v.name}.mp4", plan.fps, v.width, v.height)
                    for v in views
                ]
                if encode
                else []
            )
            picks = np.linspace(0, seq.frames - 1, frames_per_sequence).astype(int)
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            for t in picks:
                for c, view in enumerate(views):
                    image = render_frame(view, shapes, t, subject.look, joints[t], t).image
                    if encode:
                        writers[c].write(image)
            for w in writers:
                w.close()
            cpu += time.process_time() - start_cpu
            wall += time.perf_counter() - start_wall
            count += len(picks)
    return cpu / count, wall / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", default=[], help="WxH (repeatable)")
    parser.add_argument("--frames", type=int, default=20, help="frames per sampled take")
    parser.add_argument("--contact-sheet", type=Path, help="also write the demo contact sheet")
    args = parser.parse_args()
    bench = PRESETS["benchmark"]
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.size] or [bench.size]
    plan = plan_dataset("benchmark")
    print(
        f"benchmark preset: {len(plan.sequences)} sequences, {plan.frames_per_camera} frames per "
        f"camera, {plan.cameras} cameras, default size {bench.size[0]}x{bench.size[1]}"
    )
    print("throughput in frames per second per camera (CPU time; wall time in brackets)")
    results = {}
    for size in sizes:
        render, render_wall = measure(size, args.frames, encode=False)
        total, total_wall = measure(size, args.frames, encode=True)
        results[size] = total
        full = plan.frames_per_camera
        print(
            f"{size[0]}x{size[1]}: render {1 / render:6.1f} ({1 / render_wall:6.1f}); "
            f"render+h264 {1 / total:6.1f} ({1 / total_wall:6.1f}); encode share "
            f"{(total - render) / total:4.0%}; full preset projected {total * full / 60:5.1f} min "
            f"CPU ({total_wall * full / 60:5.1f} min wall at the current load)"
        )
        cores = min(4, os.cpu_count() or 1)
        print(
            f"  generate(..., workers=0) renders in {cores} processes here: on an idle "
            f"machine the full preset takes about {total * full / 60 / cores:4.1f} min"
        )
    if len(results) > 1:
        base = results[sizes[0]]
        for size in sizes[1:]:
            print(
                f"time ratio {size[0]}x{size[1]} / {sizes[0][0]}x{sizes[0][1]}: "
                f"{results[size] / base:.2f}"
            )
    if args.contact_sheet:
        from mcss_studio.core.synth.sheet import contact_sheet

        sheet = contact_sheet("demo", seed=0, instants=4)
        args.contact_sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.contact_sheet), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(f"wrote {args.contact_sheet} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
