"""The limited-supervision protocol runs every variant and prints one table (tiny settings)."""

import torch

from trainer.bench import VARIANTS, format_table, limited_supervision

torch.set_num_threads(1)


def test_limited_supervision_table(tmp_path):
    from mcss_studio.core.synth import generate

    data = generate(tmp_path / "data", preset="tiny", seed=0)  # subjects S1 (train), S9 (test)
    tiny = dict(crop_size=32, width=8, embedding_dim=16, pose_hidden=32, orientation_hidden=16,
                steps=3, tau=3, instants_per_sequence=3, labelled_batch=8, eval_stride=3,
                log_every=1)
    result = limited_supervision("quick", seed=0, work_dir=str(tmp_path / "work"),
                                 overrides=tiny, data=data)
    rows = result["rows"]
    assert [r["variant"] for r in rows] == list(VARIANTS)
    assert all(r["status"] == "done" and r["labels"] == "S1" for r in rows)
    assert all(r["metrics"]["mpjpe"] > 0 and "map@10" in r["metrics"] for r in rows)
    table = format_table(result)
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(VARIANTS)
    assert "MPJPE" in lines[0] and "mAP@10" in lines[0] and "+0.0%" in lines[2]
