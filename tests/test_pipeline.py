"""The prediction pipeline and the input contract, without Qt: a checkpoint + frames of a
sequence -> per-view camera poses, world pose, 2D per view, embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mcss_studio.core import open_sequence
from mcss_studio.core.cache import build_cache, crop_square, crop_squares
from mcss_studio.core.checkpoint import read_metadata
from mcss_studio.core.contract import input_contract
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.joints import JOINT_NAMES
from mcss_studio.core.media import MediaAccess
from mcss_studio.core.model import ModelConfig
from mcss_studio.core.pipeline import PosePipeline
from tests.gui_fixtures import make_checkpoint, make_recording


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("pipe") / "rec", frames=6)


def test_contract_reads_the_trainers_metadata_and_defaults():
    cfg = ModelConfig(embedding_dim=16, ray_input=True)
    c = input_contract({"crop_size": 64, "train_config": {"crop_margin": 0.35}}, cfg)
    assert (c.crop_size, c.crop_margin, c.uses_rays, c.embedding_dim) == (64, 0.35, True, 16)
    assert c.joint_names[0] == "hip" and len(c.joint_names) == 17
    plain = input_contract({}, ModelConfig())
    assert (plain.crop_size, plain.crop_margin, plain.uses_rays) == (128, 0.2, False)
    # a margin at the top level wins over the train config's
    assert input_contract({"crop_margin": 0.1, "train_config": {"crop_margin": 0.3}},
                          cfg).crop_margin == 0.1


@pytest.mark.parametrize("meta, problem", [
    ({"crop_size": 0}, "crop size"),
    ({"train_config": {"crop_margin": -1}}, "crop margin"),
    ({"joint_names": ["a", "b"]}, "joint_names"),
])
def test_contract_refuses_bad_metadata_naming_the_file(meta, problem):
    with pytest.raises(UserInputError, match=problem) as err:
        input_contract(meta, ModelConfig(), "m.safetensors")
    assert "m.safetensors" in str(err.value)


def test_pipeline_predicts_all_views_of_several_frames(recording, tmp_path):
    pipeline = PosePipeline.load(make_checkpoint(tmp_path / "m.safetensors"), device="cpu")
    seq = open_sequence(recording)
    media = MediaAccess(seq, None)  # no caches: crops are cut from the full frames
    try:
        preds = pipeline.predict_frames(media, [1, 4])
        single = pipeline.predict_frame(media, 4)
    finally:
        media.close()
    assert [p.frame for p in preds] == [1, 4]
    for p in preds:
        assert p.pose_cam.shape == (3, 17, 3) and p.embedding.shape == (3, 16)
        assert p.pose_world.shape == (17, 3) and p.points2d.shape == (3, 17, 2)
        assert p.regions.shape == (3, 4)
        # calibrated: the 2D skeleton is the world pose projected into each view
        for c, cam in enumerate(seq.cameras):
            assert np.allclose(p.points2d[c], cam.calibration.project(p.pose_world))
    # a frame in a batch of two gets the same answer as alone
    assert np.allclose(preds[1].pose_cam, single.pose_cam, atol=1e-4)
    assert np.allclose(preds[1].embedding, single.embedding, atol=1e-5)


def test_pipeline_refuses_a_missing_checkpoint(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        PosePipeline.load(tmp_path / "none.safetensors")


def test_crop_cache_is_used_only_at_the_checkpoints_crop_size(recording, tmp_path, monkeypatch):
    seq = open_sequence(recording)
    build_cache(seq, tmp_path / "cache", crop_size=128, margin=0.2, proxies=False)
    media = MediaAccess(seq, tmp_path / "cache")
    try:
        media.attach_caches()
        assert (media.crop_cache.crop_size, media.crop_cache.margin) == (128, 0.2)
        # a 64-px model (margin 0.2 like the cache): squares and pixels cut for 64 px from the
        # full frames, not the cache's 128-px crops downscaled
        pipeline = PosePipeline.load(make_checkpoint(tmp_path / "m64.safetensors", crop_size=64),
                                     device="cpu")
        crops, regions = pipeline.crops(media, 3)
        sizes = [(c.width, c.height) for c in seq.cameras]
        expected = crop_squares(media.person_boxes(3)[:, None], 0.2, sizes, 64)[:, 0]
        assert crops.shape == (3, 64, 64, 3) and np.array_equal(regions, expected)
        for c in range(3):
            assert np.array_equal(crops[c], crop_square(media.full_frame(c, 3), expected[c], 64))
        # the cache's own size and margin: its crops as they are, no frame decoded
        monkeypatch.setattr(media, "full_frame", lambda c, t: pytest.fail("decoded a frame"))
        crops, regions = media.crops(3, 128, 0.2)
        assert np.array_equal(regions, media.crop_cache.boxes[:, 3])
        assert all(np.array_equal(crops[c], media.crop_cache.get(c, 3)) for c in range(3))
    finally:
        media.close()


def renamed_joints(path: Path, names: list[str]) -> Path:
    """The checkpoint at `path` with other joint names in its metadata, as a checkpoint from
    elsewhere would have them (save_checkpoint always writes the Studio's)."""
    from safetensors.torch import load_file, save_file

    document = read_metadata(path)
    save_file(load_file(str(path)), str(path),
              metadata={"mcss": json.dumps({**document, "joint_names": names})})
    return path


def _swapped_wrists() -> list[str]:
    names = list(JOINT_NAMES)
    names[13], names[16] = names[16], names[13]
    return names


@pytest.mark.parametrize("names, problem", [
    (_swapped_wrists(), "another order, at 13: r_wrist (Studio: l_wrist), 16: l_wrist "
                        "(Studio: r_wrist)"),
    ([*JOINT_NAMES[:10], "nose", *JOINT_NAMES[11:]], "joints nose instead of head"),
])
def test_pipeline_refuses_joints_other_than_the_studios(tmp_path, names, problem):
    path = renamed_joints(make_checkpoint(tmp_path / "other.safetensors"), names)
    with pytest.raises(UserInputError) as err:
        PosePipeline.load(path, device="cpu")
    message = str(err.value)
    assert "other.safetensors" in message and problem in message and "\n" not in message
    # the same model with the Studio's names loads
    ok = renamed_joints(make_checkpoint(tmp_path / "ok.safetensors"), list(JOINT_NAMES))
    assert PosePipeline.load(ok, device="cpu").contract.joint_names == JOINT_NAMES


def test_other_margin_without_known_boxes_undoes_the_caches_margin(tmp_path):
    # no calibration, no box file: the person is only known through the cache's squares
    rec = make_recording(tmp_path / "bare", frames=4, calibrated=False)
    seq = open_sequence(rec)
    build_cache(seq, tmp_path / "cache", crop_size=32, margin=0.2, proxies=False)
    media = MediaAccess(seq, tmp_path / "cache")
    try:
        media.attach_caches()
        assert media.person_boxes(2) is not None and seq.boxes is None
        cached = np.asarray(media.crop_cache.boxes[:, 2], dtype=np.float64)
        regions = media.crop_regions(2, 32, 0.5)
        # a cached square of side s holds a person of side s / 1.2; with margin 0.5 the model's
        # square is s / 1.2 * 1.5 = 1.25 s around the same centre (not 1.5 s: 0.2 then 0.5)
        side = cached[:, 2] - cached[:, 0]
        np.testing.assert_allclose(regions[:, 2] - regions[:, 0], 1.25 * side, atol=1.0)
        np.testing.assert_allclose(regions[:, :2] + regions[:, 2:], cached[:, :2] + cached[:, 2:],
                                   atol=2.0)
    finally:
        media.close()


def test_viewing_rays_of_many_crops_are_each_crops_own(tmp_path):
    from mcss_studio.core.camera import Calibration
    from mcss_studio.core.model import crop_rays
    from mcss_studio.core.pipeline import viewing_rays

    plain = Calibration(K=np.array([[500.0, 0, 320], [0, 510, 240], [0, 0, 1]]), R=np.eye(3),
                        t=np.zeros(3))
    bent = Calibration(K=np.array([[800.0, 0, 300], [0, 800, 250], [0, 0, 1]]), R=np.eye(3),
                       t=np.zeros(3), dist=np.array([-0.2, 0.05, 0.001, 0, 0]))
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 400, (10, 2))
    regions = np.concatenate([corner, corner + rng.uniform(50, 200, (10, 1))], axis=1)
    cals = [plain, bent] * 5  # frame by frame, view by view, as the pipeline passes them
    rays = viewing_rays(regions, cals)
    assert rays.shape == (10, 3) and rays.dtype == np.float32
    for i in range(10):  # each crop with its own camera, distortion included
        assert np.array_equal(rays[i], crop_rays(regions[i], cals[i].K, cals[i].dist))
    assert not np.allclose(rays[1], crop_rays(regions[1], plain.K, plain.dist))


def test_person_squares_are_computed_once_and_follow_corrected_boxes(recording, monkeypatch):
    from mcss_studio.core import media as media_module

    seq = open_sequence(recording)
    media = MediaAccess(seq, None)
    sizes = [(c.width, c.height) for c in seq.cameras]
    boxes = np.stack([np.tile([[20.0, 10.0, 60.0, 90.0]], (seq.num_frames, 1))
                      + 3 * np.arange(seq.num_frames)[:, None] + c for c in range(3)])
    media.set_person_boxes(boxes)
    calls = []
    real = media_module.crop_squares
    monkeypatch.setattr(media_module, "crop_squares",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    for t in range(seq.num_frames):  # the squares of each frame, as frame by frame
        expected = real(boxes[:, t:t + 1], 0.2, sizes, 64)[:, 0]
        assert np.array_equal(media.crop_regions(t, 64, 0.2), expected)
    assert len(calls) == 1  # once for the whole sequence
    media.crop_regions(2, 32, 0.2)  # another size: computed again
    assert len(calls) == 2
    boxes[:, 2] += 40  # the caller's array changed after it was set: no effect until set again
    assert np.array_equal(media.crop_regions(2, 64, 0.2),
                          real(boxes[:, 2:3] - 40, 0.2, sizes, 64)[:, 0])
    media.set_person_boxes(boxes)  # a correction: the new squares
    assert np.array_equal(media.crop_regions(2, 64, 0.2), real(boxes[:, 2:3], 0.2, sizes, 64)[:, 0])
    media.close()
