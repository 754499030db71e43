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


def test_evaluate_prints_each_figure_beside_its_chance_level(dataset, tmp_path, capsys):
    from pathlib import Path

    demo = Path(__file__).resolve().parents[1] / "assets" / "demo_model.safetensors"
    assert main(["evaluate", str(demo), str(dataset), "--stride", "3", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    lines = {line.split(":")[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    assert "(chance " in lines["hit@1"] and "(chance " in lines["strict_hit@1"]
    assert "chance_hit@1" not in lines and "(chance" not in lines["mpjpe"]


def test_neighbours_answers_the_index_query(dataset, tmp_path, capsys):
    from pathlib import Path

    from mcss_studio.core import open_dataset
    from mcss_studio.core.embedding_store import build_index
    from mcss_studio.core.embeddings import NeighbourFilter

    demo = Path(__file__).resolve().parents[1] / "assets" / "demo_model.safetensors"
    cache = tmp_path / "cache"
    assert main(["neighbours", str(demo), str(dataset), "--sequence", "S9_wave_1", "--camera",
                 "cam2", "--frame", "6", "-k", "4", "--min-dt", "2", "--subjects", "same",
                 "--cache-dir", str(cache), "--device", "cpu", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    index = build_index(open_dataset(dataset), cache, demo)
    found = index.query(index.row("S9_wave_1", 2, 6), 4,
                        NeighbourFilter(min_dt=2, subject="same"))
    assert [(n["sequence"], n["frame"]) for n in answer["neighbours"]] == \
        [(index.key(r)[0], index.key(r)[2]) for r in found.rows]
    assert all(n["camera"] != "cam2" and n["correct"] in (True, False)
               for n in answer["neighbours"])
    assert main(["neighbours", str(demo), str(dataset), "--camera", "cam7", "--frame", "0",
                 "--cache-dir", str(cache)]) == 2
    assert "no camera 'cam7'" in capsys.readouterr().err
