"""The limited-supervision protocol runs every variant and prints one table (tiny settings)."""

import shutil

import pytest
import torch

from mcss_studio.core.errors import UserInputError
from mcss_studio.core.runlog import read_events
from trainer.bench import (
    ORACLE,
    TRAIN_SUBJECTS,
    VARIANTS,
    format_table,
    limited_supervision,
)

torch.set_num_threads(1)


def test_limited_supervision_table(tmp_path, monkeypatch):
    from mcss_studio.core.synth import generate

    data = generate(tmp_path / "data", preset="tiny", seed=0)  # subjects S1 (train), S9 (test)
    tiny = dict(crop_size=32, width=8, embedding_dim=16, pose_hidden=32, orientation_hidden=16,
                steps=3, tau=3, instants_per_sequence=3, labelled_batch=8, eval_stride=3,
                log_every=1, init_checkpoint="")  # the preset's backbone is width 16
    result = limited_supervision("standard", seed=0, work_dir=str(tmp_path / "work"),
                                 overrides=tiny, data=data)
    rows = result["rows"]
    assert result["config"]["instant_sampling"] == "window"
    assert [r["steps"] for r in rows] == [3] * len(VARIANTS) + [6]  # the ceiling trains longer
    assert [r["variant"] for r in rows] == list(VARIANTS) + [ORACLE]
    assert all(r["status"] == "done" for r in rows)
    assert all(r["labels"] == "S1" for r in rows[:-1])
    runs = tmp_path / "work" / "runs"  # named by preset: another preset's runs keep theirs
    assert {p.name for p in runs.iterdir()} == {f"standard-{v}-S1-seed0" for v in VARIANTS} | {
        f"standard-{ORACLE}-{'+'.join(TRAIN_SUBJECTS)}-seed0"}
    wanted = {"mpjpe", "n_mpjpe", "p_mpjpe", "rot_err_deg", "mpjpe_true_rot", "train_p_mpjpe",
              "map@10", "chance_map@10", "hit@1_kappa0.05", "chance_hit@1_kappa0.05",
              "strict_hit@10", "chance_strict_hit@10"}
    assert all(r["metrics"]["mpjpe"] > 0 and wanted <= set(r["metrics"]) for r in rows)
    assert result["threads"] == 2 and torch.get_num_threads() == 1  # pinned, then restored
    # the ceiling labels every frame; the others every label_every-th (10 in the presets)
    assert rows[-1]["labelled_frames"] > 5 * rows[0]["labelled_frames"]
    table = format_table(result)
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 * (2 + len(VARIANTS) + 1)
    pose, retrieval = lines[:len(lines) // 2], lines[len(lines) // 2:]
    assert "N-MPJPE" in pose[0] and "train P-MPJPE" in pose[0] and "+0.0%" in pose[2]
    assert pose[-1].startswith(f"| all {rows[-1]['labelled_frames']} frames | {ORACLE} |")
    assert pose[-1].endswith("% | - |")  # compared with the S1 baseline; no gap of its own
    chance = rows[0]["metrics"]["chance_hit@1"]
    assert "mAP@10 k.05" in retrieval[0] and f"({chance:.3f})" in retrieval[2]
    assert "regime (S1): baseline P-MPJPE train" in table
    # pinned threads, per-step batches, seeded mining: the same seed gives the same table
    # again, and a rerun in the same folder replaces each row's run instead of adding to it
    again = limited_supervision("standard", seed=0, work_dir=str(tmp_path / "work"),
                                overrides=tiny, data=data)
    assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in rows]
    for run in runs.iterdir():
        kinds = [r["event"] for r in read_events(run / "events.jsonl")]
        assert kinds.count("start") == 1 and kinds[-1] == "status"
    # an earlier run that cannot be removed (read-only folder, ...) is a one-line error
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refuse)
    with pytest.raises(UserInputError, match="standard-baseline-S1-seed0: cannot write"):
        limited_supervision("standard", seed=0, work_dir=str(tmp_path / "work"),
                            overrides=tiny, data=data)


def test_bench_overrides_are_typed_and_checked(capsys):
    from trainer.cli import main
    from trainer.config import parse_overrides

    assert parse_overrides(["crop_size=128", "amp=false", "lr=1e-4", "labelled-subjects=S1,S5"]
                           ) == {"crop_size": 128, "amp": False, "lr": 1e-4,
                                 "labelled_subjects": ["S1", "S5"]}
    for bad in (["crop_size=big"], ["no_such=1"], ["crop_size"], ["mining=sideways"]):
        assert main(["bench", "limited-supervision", "--set", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mcss-train: error: --set:") and "\n" not in err


def _result(seed, base, mcss, preset="quick", ceiling=None):
    def row(variant, mpjpe):
        return {"variant": variant, "labels": "S1", "labelled_frames": 10, "status": "done",
                "metrics": {"mpjpe": mpjpe + 10, "n_mpjpe": mpjpe, "p_mpjpe": 50.0,
                            "train_p_mpjpe": 20.0, "hit@1": 0.5, "chance_hit@1": 0.125,
                            "map@10": 0.25}}
    rows = [row("baseline", base), row("mcss", mcss)]
    if ceiling is not None:
        rows.append({**row(ORACLE, ceiling), "labels": "S1+S5", "labelled_frames": 100})
    return {"preset": preset, "seed": seed, "kappa": 0.1, "test_subjects": ["S9"], "rows": rows}


def test_summarize_averages_seeds_and_keeps_each_seeds_change(tmp_path, capsys):
    import json

    from trainer.cli import main

    files = []
    # N-MPJPE: baseline 200 / 220, mcss 180 / 231, ceiling 150 / 170
    for seed, (base, mcss, ceil) in enumerate([(200.0, 180.0, 150.0), (220.0, 231.0, 170.0)]):
        files.append(tmp_path / f"s{seed}.json")
        files[-1].write_text(json.dumps(_result(seed, base, mcss, ceiling=ceil)))
    assert main(["bench", "summarize", *map(str, files)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    mcss_row = next(line for line in lines if line.startswith("| S1 | mcss |"))
    # means of 190/241 and 180/231; sample sd of 180, 231 is 51 / sqrt(2)
    assert "| 215.5 ± 36.1 | 205.5 ± 36.1 | 50.0 ± 0.0 |" in mcss_row
    # (210 - 205.5) / 210 of the means; gap of the means (210 - 205.5) / (210 - 160)
    assert mcss_row.endswith("| +2.1% | +9% |")
    assert "seed 0, 1 (mean ± sd)" in out
    assert "mcss (S1) per seed: N-MPJPE vs baseline +10.0%, -5.0%; gap closed +40%, -22%" in out
    retrieval_row = [line for line in lines if line.startswith("| S1 | mcss |")][1]
    assert "| 0.500 ± 0.000 (0.125) |" in retrieval_row
    assert "regime (S1): baseline P-MPJPE train 20.0 / test 50.0 = 0.40; ceiling N-MPJPE " \
        "160.0 vs baseline 210.0: +23.8%" in out


def test_gap_closed_hand_cases():
    from trainer.bench import gap_closed

    assert gap_closed(200.0, 180.0, 150.0) == pytest.approx(0.4)
    assert gap_closed(200.0, 210.0, 150.0) == pytest.approx(-0.2)
    assert gap_closed(200.0, 180.0, 210.0) is None  # no gap: the ceiling is not ahead
    assert gap_closed(200.0, 180.0, None) is None


def test_summarize_refuses_other_files(tmp_path, capsys):
    import json

    from trainer.cli import main

    good = tmp_path / "good.json"
    good.write_text(json.dumps(_result(0, 200.0, 190.0)))
    other = tmp_path / "full.json"
    other.write_text(json.dumps(_result(1, 200.0, 190.0, preset="full")))
    junk = tmp_path / "junk.json"
    junk.write_text('{"rows": [{"variant": "x"}]}')
    for files, problem in (([good, other], "another preset"), ([good, junk], "not a result file"),
                           ([tmp_path / "nope.json"], "file not found")):
        assert main(["bench", "summarize", *map(str, files)]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and str(files[-1]) in err and "\n" not in err


def test_a_signal_stops_the_whole_bench(tmp_path, monkeypatch):
    """Ctrl-C / SIGTERM during one run ends the bench (partial table, handlers restored)
    instead of stopping that run and going on with the next."""
    import os
    import signal

    import trainer.bench as bench
    from mcss_studio.core.synth import generate

    data = generate(tmp_path / "data", preset="tiny", seed=0)
    real_fit = bench.fit

    def fit_then_signal(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives between two runs
        return result

    monkeypatch.setattr(bench, "fit", fit_then_signal)
    before = signal.getsignal(signal.SIGTERM)
    tiny = dict(crop_size=32, width=8, embedding_dim=16, pose_hidden=32, orientation_hidden=16,
                steps=2, tau=3, instants_per_sequence=3, labelled_batch=8, eval_stride=3)
    result = limited_supervision("quick", seed=0, work_dir=str(tmp_path / "work"),
                                 overrides=tiny, data=data)
    assert result["stopped"] and len(result["rows"]) == 1 and result["planned_runs"] == 5
    assert "STOPPED: 1 of 5 runs" in format_table(result)
    assert signal.getsignal(signal.SIGTERM) == before


def test_training_fit_uses_the_labelled_frames_subsampled(monkeypatch):
    import numpy as np

    import trainer.bench as bench
    from trainer.data import LabelledFrame

    seen = {}

    def fake_evaluate(model, sequences, retrieval, frames):
        assert retrieval is False
        seen.clear()
        seen.update(frames)
        return {"p_mpjpe": 42.0}

    monkeypatch.setattr(bench, "evaluate", fake_evaluate)
    few = [LabelledFrame("a", t, np.zeros((17, 3))) for t in range(0, 100, 10)]
    assert bench.training_fit(None, [], few) == 42.0 and seen == {"a": list(range(0, 100, 10))}
    many = [LabelledFrame(s, t, np.zeros((17, 3))) for s in "ab" for t in range(600)]
    bench.training_fit(None, [], many)  # 1200 labels > 500: every 3rd
    assert seen["a"] == list(range(0, 600, 3)) and len(seen["b"]) == 200
