"""`mcss-train` end to end on the tiny synthetic dataset: fit, evaluate, embed, user errors."""

import json

import numpy as np
import pytest
import torch

from mcss_studio.core.runlog import read_events
from trainer.cli import main

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from mcss_studio.core.synth import generate

    return generate(tmp_path_factory.mktemp("synth") / "data", preset="tiny", seed=0)


def test_fit_evaluate_embed(tmp_path, dataset, capsys):
    config = tmp_path / "fit.toml"
    config.write_text(f'data = "{dataset.as_posix()}"\ncrop_size = 32\nwidth = 8\n'
                      "embedding_dim = 16\npose_hidden = 32\norientation_hidden = 16\n"
                      "steps = 50\ntau = 3\ninstants_per_sequence = 4\nlabelled_batch = 8\n")
    events = tmp_path / "events.jsonl"
    code = main(["fit", "--config", str(config), "--steps", "4", "--log-every", "2",
                 "--run-dir", str(tmp_path / "runs"), "--run-id", "x", "--events", str(events),
                 "--cache-dir", str(tmp_path / "cache"), "--progress", "off"])
    assert code == 0
    records = read_events(events)
    assert records[0]["config"]["steps"] == 4  # the flag overrides the file
    assert records[-1]["event"] == "status" and records[-1]["status"] == "done"
    assert [r["step"] for r in records if r["event"] == "step"] == [2, 4]
    checkpoint = tmp_path / "runs" / "x" / "checkpoints" / "last.safetensors"
    capsys.readouterr()
    assert main(["evaluate", str(checkpoint), str(dataset), "--json", "--stride", "3",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["mpjpe"] > 0 and 0 <= metrics["hit@1"] <= 1
    out = tmp_path / "emb.npz"
    assert main(["embed", str(checkpoint), str(dataset), str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--subjects", "S9"]) == 0
    with np.load(out) as npz:
        assert npz["embedding"].shape[1] == 16
        assert len(npz["embedding"]) == len(npz["frame"]) == len(npz["sequence"])
        assert set(npz["sequence"]) <= {"S9_walk_1", "S9_wave_1"}


def test_user_errors_exit_2_with_one_line(tmp_path, dataset, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("mining = 'sideways'\n")
    assert main(["fit", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.toml" in err and "mining" in err and len(err.splitlines()) == 1
    assert main(["evaluate", str(tmp_path / "none.safetensors"), str(dataset)]) == 2
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    assert main(["embed", str(junk), str(dataset), str(tmp_path / "e.npz")]) == 2
    assert not (tmp_path / "e.npz").exists()


def test_sequences_carry_the_crops_viewing_rays(tmp_path, dataset):
    from mcss_studio.core import open_dataset
    from mcss_studio.core.cache import CropCache
    from mcss_studio.core.model import crop_rays
    from trainer.sources import load_sequences

    seq = load_sequences(dataset, ["S1"], tmp_path / "cache", 32, 0.2)[0]
    assert seq.rays is not None and len(seq.rays) == seq.num_cameras
    assert seq.rays[0].shape == (seq.num_frames, 3)
    opened = open_dataset(dataset).for_subjects(["S1"])[0].open()
    try:
        cache = CropCache.open(tmp_path / "cache", opened)
        calib = opened.cameras[1].calibration
        assert np.allclose(seq.rays[1], crop_rays(cache.boxes[1], calib.K, calib.dist))
        # the ray points at the person: it agrees with the projected root joint's direction
        root = calib.to_camera(opened.joints3d[:, 0])
        direction = root[:, :2] / root[:, 2:3]
        assert np.abs(seq.rays[1][:, :2] - direction).max() < 0.5 * seq.rays[1][:, 2].max()
    finally:
        opened.close()
    assert seq.ray_features(np.array([0, 2]), np.array([1, 0])).shape == (2, 3)
