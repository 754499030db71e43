"""Limited-supervision benchmark (DESIGN.md section 2) on the synthetic Human3.6M analogue.

Baseline (lambda = 0) vs the same with the unlabelled images in its batches (BatchNorm
exposure, no metric loss) vs MCSS (temporal negatives) vs MCSS with random negatives, all else
equal (same network, labelled batches, steps, seed), plus the all-labels ceiling. Labels from S1
(full preset also S1+S5 and S1+S5+S6); unlabelled multi-view video from all train subjects;
metrics on the test subjects S9 S11 (trainer.evaluate): MPJPE / N-MPJPE / P-MPJPE (mm), median
orientation error, MPJPE with the true orientation, P-MPJPE on the labelled training frames, and
cross-view retrieval at kappa 0.1 and 0.05 and same-instant, each beside its chance level. The
regime (does the baseline generalise worse than it fits; is the ceiling far ahead) is printed
with the table, and each method's share of the baseline-to-ceiling N-MPJPE gap.
Threads are pinned (`threads`, default 2) so a seed gives the same table twice on one machine.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from mcss_studio.core.atomic import writing
from mcss_studio.core.runlog import EventWriter
from mcss_studio.core.train_presets import BENCH_CONFIGS, BENCH_VARIANTS

from .config import TrainConfig
from .data import labels_from_ground_truth
from .evaluate import KAPPA, evaluate
from .train import StopFlag, fit

TRAIN_SUBJECTS = ["S1", "S5", "S6", "S7", "S8"]
TEST_SUBJECTS = ["S9", "S11"]

# The bench's settings live in core (the Studio's training panel offers them too); why each
# value is what it is is written there. The presets differ in data: quick renders 5 actions x
# 100 frames at 160x120 (the person ~45 px tall, crops upsampled); full is synth's `benchmark`
# preset (10 actions x 150 frames at 384x288, ~110 px tall) with all three label sets, and 4x
# the steps. standard is synth's `standard` preset (13 actions x 100 frames at 256x192, the
# varied Human3.6M-like motion), windowed instant sampling (every anchor has in-window
# negatives), sized for about 25 minutes a seed on a 2-core CPU. Both train the ceiling twice
# as long as the rows (oracle_step_factor): it learns from every frame of five subjects, and
# at the rows' length it was not done (full, seed 3: N-MPJPE 117.8 mm at 2400 steps, 110.6 at
# 4800).
PRESETS: dict[str, dict] = {
    "quick": {
        "label_sets": [["S1"]],
        "quick_data": {"actions": ["walk", "wave", "squat", "kick", "bend"], "frames": 100,
                       "size": (160, 120), "cameras": 4},
        "config": BENCH_CONFIGS["quick"],
    },
    "full": {
        "label_sets": [["S1"], ["S1", "S5"], ["S1", "S5", "S6"]],
        "synth": "benchmark",
        "oracle_step_factor": 2,
        "config": BENCH_CONFIGS["full"],
    },
    "standard": {
        "label_sets": [["S1"]],
        "synth": "standard",
        "oracle_step_factor": 2,
        "config": BENCH_CONFIGS["standard"],
    },
}
VARIANTS = BENCH_VARIANTS
# The ceiling any semi-supervised method chases: the baseline network given 3D labels for every
# frame of every train subject. Run once per bench (it does not depend on the label set).
ORACLE = "supervised_all"
ORACLE_CHANGES = dict(lambda_metric=0.0, label_every=1)
HEADLINE = "n_mpjpe"  # the paper's metric for this protocol (Rhodin et al. 2018)
POSE_COLUMNS = [("mpjpe", "MPJPE"), ("n_mpjpe", "N-MPJPE"), ("p_mpjpe", "P-MPJPE"),
                ("rot_err_deg", "rot err (deg)"), ("mpjpe_true_rot", "MPJPE true rot"),
                ("train_p_mpjpe", "train P-MPJPE")]
RETRIEVAL_COLUMNS = [("hit@1", "Hit@1"), ("hit@5", "Hit@5"), ("hit@10", "Hit@10"),
                     ("map@10", "mAP@10"), ("hit@1_kappa0.05", "Hit@1 k.05"),
                     ("hit@5_kappa0.05", "Hit@5 k.05"), ("hit@10_kappa0.05", "Hit@10 k.05"),
                     ("map@10_kappa0.05", "mAP@10 k.05"), ("strict_hit@1", "same-instant Hit@1"),
                     ("strict_hit@10", "same-instant Hit@10")]
DEFAULT_THREADS = 2


def make_dataset(work: Path, spec: dict, seed: int) -> Path:
    """The synthetic benchmark dataset under `work` (reused when already generated).

    The full and standard presets render synth's preset named by spec["synth"]. The quick
    preset renders the same
    subjects and splits with fewer actions, shorter takes and smaller frames (a plan of the
    generator's own, written atomically the same way), so that it takes a minute, not a quarter
    of an hour, on a small CPU.
    """
    quick = spec.get("quick_data")
    name = f"data-{'quick' if quick else spec['synth']}-{seed}"
    data = work / name
    if (data / "manifest.json").is_file():
        return data
    from mcss_studio.core import synth

    if not quick:
        return synth.generate(data, preset=spec["synth"], seed=seed, workers=0)
    from mcss_studio.core.synth.generate import DatasetPlan, SequencePlan, write_plan
    from mcss_studio.core.synth.presets import splits_for

    subjects = tuple(TRAIN_SUBJECTS + TEST_SUBJECTS)
    sequences = tuple(SequencePlan(f"{s}_{a}_1", s, a, 0, quick["frames"])
                      for s in subjects for a in quick["actions"])
    plan = DatasetPlan("benchmark", seed, quick["cameras"], 25.0, tuple(quick["size"]),
                       sequences, splits_for(subjects))
    return write_plan(data, plan)


def _label_sets(spec: dict, train: list, store: str | Path | None, every: int
                ) -> tuple[dict | list, dict | None]:
    """The preset's label sets (lists of subjects), or {"store rN": labels} from a store."""
    if store is None:
        return spec["label_sets"], None
    from .data import labels_from_store
    from .train import _check_store_labels

    labels, record = labels_from_store(store)
    _check_store_labels(str(store), labels, train)
    return {f"store r{record['revision']}": labels}, record


def limited_supervision(
    preset: str = "quick", seed: int = 0, work_dir: str | None = None, device: str = "auto",
    overrides: dict | None = None, data: str | Path | None = None,
    threads: int = DEFAULT_THREADS, labels: str | Path | None = None,
) -> dict:
    """Train every variant for every label set (+ the all-labels ceiling); returns
    {preset, rows: [...], ...}. `overrides` replace preset settings (e.g. a GPU-sized model);
    torch runs on `threads` threads throughout (restored afterwards). `labels`, a label store
    of the dataset `data` (made in the Studio or by `mcss-data labels import-gt`), replaces
    the preset's label sets by its frames; its revision is in the result."""
    from .sources import load_sequences

    spec = PRESETS[preset]
    tmp = None
    stop: StopFlag | None = None
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mcss-bench-")
        work_dir = tmp.name
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        data = Path(data) if data else make_dataset(work, spec, seed)
        base = TrainConfig(**{**spec["config"], **(overrides or {})}, seed=seed, device=device,
                           data=str(data), run_dir=str(work / "runs"))
        cache = work / "cache"
        train = load_sequences(data, TRAIN_SUBJECTS, cache, base.crop_size, base.crop_margin)
        test = load_sequences(data, TEST_SUBJECTS, cache, base.crop_size, base.crop_margin)
        data_seconds = time.perf_counter() - t0
        label_sets, store_record = _label_sets(spec, train, labels, base.label_every)
        plan = [(variant, changes, label_set) for label_set in label_sets
                for variant, changes in VARIANTS.items()]
        oracle_steps = base.steps * spec.get("oracle_step_factor", 1)
        plan.append((ORACLE, {**ORACLE_CHANGES, "steps": oracle_steps}, TRAIN_SUBJECTS))
        rows = []
        stop = StopFlag()  # one Ctrl-C / SIGTERM ends the whole bench, not just the current run
        stop.install()
        for variant, changes, label_set in plan:
            if stop.event.is_set():
                break
            name = label_set if isinstance(label_set, str) else "+".join(label_set)
            # the preset in the name: two presets' runs in one --work-dir must not share folders
            config = replace(base, **changes, run_id=f"{preset}-{variant}-{name}-seed{seed}",
                             labelled_subjects=[] if isinstance(label_set, str)
                             else list(label_set))
            run_labels = (label_sets[label_set] if isinstance(label_set, str)
                          else labels_from_ground_truth(train, label_set, config.label_every))
            start = time.perf_counter()
            run_folder = work / "runs" / config.run_id
            if run_folder.exists():  # a rerun replaces the row's run: no appended events, no
                with writing(run_folder):  # triplet log or checkpoints of the one before
                    shutil.rmtree(run_folder)
            events = EventWriter(run_folder / "events.jsonl")
            try:
                result = fit(config, events, sequences=train, labels=run_labels,
                             test_sequences=test, stop=stop, progress=False)
            finally:
                events.close()
            metrics = dict(result.metrics)
            if result.status == "done" and result.model is not None:
                metrics["train_p_mpjpe"] = training_fit(result.model, train, run_labels)
            rows.append({"variant": variant, "labels": name,
                         "labelled_frames": len(run_labels), "status": result.status,
                         "steps": result.step,
                         "seconds": round(time.perf_counter() - start, 1),
                         "metrics": metrics})
        return {"preset": preset, "seed": seed, "kappa": KAPPA, "data": str(data),
                "train_subjects": TRAIN_SUBJECTS, "test_subjects": TEST_SUBJECTS,
                "config": base.to_dict(), "data_seconds": round(data_seconds, 1), "rows": rows,
                "stopped": stop.event.is_set(), "planned_runs": len(plan), "threads": threads,
                "label_store": store_record}
    finally:
        torch.set_num_threads(threads_before)
        if stop is not None:
            stop.restore()
        if tmp is not None:
            tmp.cleanup()


TRAIN_FIT_FRAMES = 500  # at most this many labelled instants are re-predicted (the ceiling's
# labels are every train frame; a fixed subsample measures its fit as well, in a fraction of time)


def training_fit(model, train, labels) -> float:
    """P-MPJPE on the labelled training frames (all cameras; every n-th of them when there are
    more than TRAIN_FIT_FRAMES): how well the run fits its labels, to set beside the test
    P-MPJPE (the generalisation gap semi-supervision can close)."""
    frames: dict[str, list[int]] = {}
    every = max(1, -(-len(labels) // TRAIN_FIT_FRAMES))
    for lab in labels[::every]:
        frames.setdefault(lab.sequence, []).append(lab.frame)
    return evaluate(model, train, retrieval=False, frames=frames)["p_mpjpe"]


def _cell(value: float | None, spread: float | None, key: str) -> str:
    if value is None:
        return "-"
    text = f"{value:.1f}" if ("mpjpe" in key or "deg" in key) else f"{value:.3f}"
    return text + (f" ± {spread:.1f}" if spread is not None and ("mpjpe" in key or "deg" in key)
                   else f" ± {spread:.3f}" if spread is not None else "")


def _ceiling(rows: list[dict]) -> float | None:
    return next((r["metrics"].get(HEADLINE) for r in rows if r["variant"] == ORACLE), None)


def gap_closed(baseline: float | None, method: float | None, ceiling: float | None
               ) -> float | None:
    """Share of the baseline-to-ceiling gap a method closes: (b - m) / (b - c); None without a
    gap (the ceiling not ahead of the baseline)."""
    if baseline is None or method is None or ceiling is None or baseline - ceiling <= 0:
        return None
    return (baseline - method) / (baseline - ceiling)


def format_table(result: dict) -> str:
    """Two Markdown tables (pose; retrieval with chance levels in brackets) and the regime.

    The pose table's last columns: the N-MPJPE change against the same-label baseline and the
    share of the baseline-to-ceiling gap closed. A summary (average_results) shows ± the
    sample standard deviation over seeds."""
    rows = result["rows"]
    spread_of = lambda r, k: (r.get("spread") or {}).get(k)  # noqa: E731
    baselines = {r["labels"]: r["metrics"].get(HEADLINE) for r in rows
                 if r["variant"] == "baseline"}
    first = next(iter(baselines), None)
    ceiling = _ceiling(rows)

    def label(r: dict) -> str:
        return f"all {r['labelled_frames']} frames" if r["variant"] == ORACLE else r["labels"]

    header = ["labels", "method"] + [n for _, n in POSE_COLUMNS] + [
        "N-MPJPE vs baseline", "gap closed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        m = r["metrics"]
        cells = [label(r), r["variant"]] + [_cell(m.get(k), spread_of(r, k), k)
                                            for k, _ in POSE_COLUMNS]
        base = baselines.get(first if r["variant"] == ORACLE else r["labels"])
        value = m.get(HEADLINE)
        cells.append(f"{100 * (base - value) / base:+.1f}%" if base and value is not None
                     else "-")
        gap = None if r["variant"] == ORACLE else gap_closed(base, value, ceiling)
        cells.append("-" if gap is None else f"{100 * gap:+.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    header = ["labels", "method"] + [n for _, n in RETRIEVAL_COLUMNS]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        m = r["metrics"]
        cells = [label(r), r["variant"]]
        for k, _ in RETRIEVAL_COLUMNS:
            chance = m.get(f"chance_{k}")
            cells.append(_cell(m.get(k), spread_of(r, k), k)
                         + ("" if chance is None else f" ({chance:.3f})"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\npreset {result['preset']}, seed {result['seed']}, pose metrics in mm on "
                 f"{', '.join(result['test_subjects'])}; retrieval in brackets: the chance level "
                 "(expected figure of a random ranking of the same gallery); kappa 0.1 and 0.05 "
                 "on unit-scale Procrustes-aligned poses; same-instant: +-2 frames"
                 + (f"; {ORACLE}: the baseline network with 3D labels on every train frame "
                    f"(the ceiling; compared with the {first} baseline)" if ceiling else ""))
    lines += regime_lines(rows, ceiling)
    if result.get("stopped"):
        lines.append(f"\nSTOPPED: {len(rows)} of {result.get('planned_runs', '?')} runs "
                     "(the last one unfinished has no metrics)")
    gaps = result.get("gap_per_seed", {})
    for name, changes in result.get("per_seed", {}).items():
        lines.append(f"\n{name} per seed: N-MPJPE vs baseline "
                     + ", ".join(f"{c:+.1f}%" for c in changes)
                     + ("; gap closed " + ", ".join(f"{g:+.0f}%" for g in gaps[name])
                        if name in gaps else ""))
    return "\n".join(lines)


def regime_lines(rows: list[dict], ceiling: float | None) -> list[str]:
    """Whether a limited-label result can mean anything (DESIGN.md section 2): the baseline
    must fit its labels better than it generalises, and the ceiling must be far ahead."""
    out = []
    for r in rows:
        if r["variant"] != "baseline":
            continue
        m = r["metrics"]
        train, test, base = m.get("train_p_mpjpe"), m.get("p_mpjpe"), m.get(HEADLINE)
        parts = []
        if train is not None and test:
            parts.append(f"baseline P-MPJPE train {train:.1f} / test {test:.1f} = "
                         f"{train / test:.2f}")
        if ceiling is not None and base:
            parts.append(f"ceiling N-MPJPE {ceiling:.1f} vs baseline {base:.1f}: "
                         f"{100 * (base - ceiling) / base:+.1f}%")
        if parts:
            out.append(f"regime ({r['labels']}): " + "; ".join(parts))
    return out


def load_results(paths: list[str]) -> list[dict]:
    """Bench JSON files (--json) -> results; a file that is not one is a one-line error."""
    from mcss_studio.core.errors import UserInputError

    results = []
    for path in paths:
        try:
            result = json.loads(Path(path).read_text(encoding="utf-8"))
            rows = result["rows"]
            if not all({"variant", "labels", "metrics"} <= set(r) for r in rows):
                raise KeyError("rows")
        except FileNotFoundError:
            raise UserInputError(path, "file not found") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise UserInputError(path, "not a result file of mcss-train bench --json") from None
        results.append(result)
    return results


def average_results(results: list[dict], sources: list[str] | None = None) -> dict:
    """The mean of several seeds' results (same preset, same rows), with each metric's sample
    standard deviation over seeds in `spread`; `per_seed` keeps each seed's N-MPJPE change
    against its own baseline and `gap_per_seed` each seed's share of the ceiling gap."""
    from mcss_studio.core.errors import UserInputError

    def shape(r: dict) -> list:
        return [r.get("preset")] + [(row["variant"], row["labels"]) for row in r["rows"]]

    for i, r in enumerate(results[1:], 1):
        if shape(r) != shape(results[0]):
            name = sources[i] if sources else f"result {i}"
            raise UserInputError(name, "another preset or other rows than the first file")
    rows = []
    for k, row in enumerate(results[0]["rows"]):
        keys = set.intersection(*(set(r["rows"][k]["metrics"]) for r in results))
        values = {key: [r["rows"][k]["metrics"][key] for r in results] for key in sorted(keys)}
        metrics = {key: sum(v) / len(v) for key, v in values.items()}
        spread = ({key: _sample_sd(v) for key, v in values.items()} if len(results) > 1
                  else {})
        rows.append({**row, "metrics": metrics, "spread": spread})
    per_seed: dict[str, list[float]] = {}
    gap_per_seed: dict[str, list[float]] = {}
    for r in results:
        base = {row["labels"]: row["metrics"].get(HEADLINE) for row in r["rows"]
                if row["variant"] == "baseline"}
        ceiling = _ceiling(r["rows"])
        for row in r["rows"]:
            b = base.get(row["labels"])
            value = row["metrics"].get(HEADLINE)
            if row["variant"] in ("baseline", ORACLE) or not b or value is None:
                continue
            name = f"{row['variant']} ({row['labels']})"
            per_seed.setdefault(name, []).append(100 * (b - value) / b)
            gap = gap_closed(b, value, ceiling)
            if gap is not None:
                gap_per_seed.setdefault(name, []).append(100 * gap)
    seeds = ", ".join(str(r.get("seed")) for r in results)
    return {**results[0], "seed": f"{seeds} (mean ± sd)", "rows": rows, "per_seed": per_seed,
            "gap_per_seed": gap_per_seed}


def _sample_sd(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def dump(result: dict) -> str:
    return json.dumps(result, indent=2)
