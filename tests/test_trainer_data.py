"""Batch sampler structure and determinism, label targets, flip augmentation, configuration."""

import numpy as np
import pytest
import torch

from mcss_studio.core.errors import UserInputError
from mcss_studio.core.model import canonical_frame
from trainer.config import TrainConfig, add_config_flags, config_from_args, load_config
from trainer.data import (
    BatchSampler,
    SamplerConfig,
    SequenceData,
    augment_images,
    flip_pose,
    labels_from_ground_truth,
    random_augmentation,
)
from trainer.fake import fake_sequences, render_crops


@pytest.fixture(scope="module")
def sequences():
    return fake_sequences(["S1", "S5", "S6"], frames=30, cameras=3, size=32)


def test_multiview_batch_structure(sequences):
    cfg = SamplerConfig(sequences_per_batch=2, instants_per_sequence=4, views_per_instant=3,
                        labelled_batch=5)
    labels = labels_from_ground_truth(sequences, ["S1"])
    sampler = BatchSampler(sequences, labels, cfg, seed=1)
    b = sampler.batch(0)
    assert b.mv_images.shape == (2 * 4 * 3, 32, 32, 3) and b.mv_images.dtype == torch.uint8
    assert len(set(b.mv_seq.tolist())) == 2
    for s, t in set(zip(b.mv_seq.tolist(), b.mv_time.tolist())):
        sel = (b.mv_seq == s) & (b.mv_time == t)
        assert sel.sum() == 3 and len(set(b.mv_cam[sel].tolist())) == 3  # distinct views
    # images are the cached crops at those indices
    i = 5
    s, t, c = int(b.mv_seq[i]), int(b.mv_time[i]), int(b.mv_cam[i])
    assert np.array_equal(b.mv_images[i].numpy(), sequences[s].crops[c][t])
    assert b.lab_images.shape == (5, 32, 32, 3)
    assert all(sequences[s].subject == "S1" for s in b.lab_ref[:, 0])


def test_anchor_and_its_in_sequence_negatives_share_the_mirror_decision(sequences):
    # Positives are other views of the anchor's instant; in-sequence negatives are its other
    # instants. If a negative could be mirrored while the anchor is not, "mirrored or not" would
    # separate them without any pose (the triplet loss then falls on that alone), so one
    # sequence's images in a batch are all mirrored or none is; sequences still differ.
    from trainer.mining import triplet_masks

    cfg = SamplerConfig(sequences_per_batch=3, instants_per_sequence=6, views_per_instant=2,
                        labelled_batch=0, instant_sampling="window", tau=2, tau_max=4)
    sampler = BatchSampler(sequences, [], cfg, seed=2)
    seen = set()
    for step in range(6):
        b = sampler.batch(step)
        pos, neg = triplet_masks(b.mv_seq, b.mv_time, b.mv_cam, 2, 4, other_sequences=False)
        same_flip = b.mv_flip[:, None] == b.mv_flip[None, :]
        assert bool(neg.any()) and bool(same_flip[pos].all()) and bool(same_flip[neg].all())
        seen.update(b.mv_flip.tolist())
    assert seen == {False, True}  # flips still happen


def test_batches_depend_only_on_seed_and_step(sequences):
    labels = labels_from_ground_truth(sequences, ["S1"])
    a = BatchSampler(sequences, labels, SamplerConfig(), seed=3)
    b = BatchSampler(sequences, labels, SamplerConfig(), seed=3)
    b.batch(0)
    b.batch(1)
    x, y = a.batch(7), b.batch(7)
    assert torch.equal(x.mv_images, y.mv_images) and torch.equal(x.lab_pose_cam, y.lab_pose_cam)
    assert not torch.equal(a.batch(8).mv_time, x.mv_time)
    other_rank = BatchSampler(sequences, labels, SamplerConfig(), seed=3, rank=1).batch(7)
    assert not torch.equal(other_rank.mv_time, x.mv_time)


def test_label_targets_are_root_relative_camera_poses(sequences):
    labels = labels_from_ground_truth(sequences, ["S5"], every=3)
    assert len(labels) == 10 and all(lab.sequence == "S5_0" for lab in labels)
    sampler = BatchSampler(sequences, labels, SamplerConfig(augment=False, labelled_batch=4))
    b = sampler.batch(0)
    for k in range(4):
        s, t, c = b.lab_ref[k]
        seq = sequences[s]
        world = seq.joints3d[t]
        cam = world @ seq.rotations[c].T + seq.translations[c]
        assert np.allclose(b.lab_pose_cam[k].numpy(), cam - cam[0], atol=1e-3)
    rot, canonical = canonical_frame(b.lab_pose_cam.numpy().astype(np.float64))
    assert np.allclose(canonical, b.lab_pose_canonical.numpy(), atol=1e-2)


def test_flip_with_joint_swap_matches_flipped_image_and_keeps_chirality():
    seq = fake_sequences(["S1"], frames=3, cameras=1, size=64)[0]
    pose = seq.pose_cam(seq.joints3d, np.zeros(3, int))
    image = render_crops(pose, 64, (0, 0, 0)).astype(np.float32)
    flipped = flip_pose(pose)
    # mirroring the image == rendering the flipped pose
    assert np.abs(render_crops(flipped, 64, (0, 0, 0)) - image[:, :, ::-1]).mean() < 2.0
    # swapping left/right keeps a body's handedness: the nose stays in front in the body frame
    nose_forward = canonical_frame(pose)[1][:, 9, 2]
    assert np.all(np.sign(canonical_frame(flipped)[1][:, 9, 2]) == np.sign(nose_forward))
    unswapped = pose * np.array([-1.0, 1.0, 1.0])
    assert np.all(np.sign(canonical_frame(unswapped)[1][:, 9, 2]) == -np.sign(nose_forward))
    assert np.allclose(flip_pose(flipped), pose)


def test_augment_flip_is_a_mirror_and_colour_keeps_range():
    x = torch.rand(4, 3, 16, 16)
    rng = np.random.default_rng(0)
    none = random_augmentation(rng, 4, SamplerConfig(augment=False))
    flip = torch.tensor([True, False, True, False])
    out = augment_images(x.clone(), flip, none)
    assert torch.allclose(out[0], x[0].flip(-1), atol=1e-5)
    assert torch.allclose(out[1], x[1], atol=1e-6)
    jitter = random_augmentation(rng, 4, SamplerConfig())
    out = augment_images(x.clone(), torch.zeros(4, dtype=torch.bool), jitter)
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, x)



def test_channel_shuffle_permutes_rgb_only_where_drawn_and_leaves_other_streams():
    plain = SamplerConfig(color_jitter=0.0, scale_jitter=0.0, shift_jitter=0.0)
    every = SamplerConfig(color_jitter=0.0, scale_jitter=0.0, shift_jitter=0.0,
                          channel_shuffle=1.0)
    aug = random_augmentation(np.random.default_rng(3), 6, every)
    x = torch.rand(6, 3, 8, 8)
    out = augment_images(x.clone(), torch.zeros(6, dtype=torch.bool), aug)
    for i, perm in enumerate(aug["channels"].tolist()):
        assert sorted(perm) == [0, 1, 2]
        assert torch.allclose(out[i], x[i][perm], atol=1e-6)  # image i's channel k = input perm[k]
    assert any(perm != [0, 1, 2] for perm in aug["channels"].tolist())
    # off (the default): nothing drawn for it; on: drawn after the other factors, which keep
    # their values, so runs without it repeat the runs made before it existed
    off = random_augmentation(np.random.default_rng(3), 6, plain)
    assert "channels" not in off
    assert all(torch.equal(off[k], aug[k]) for k in off)

def test_config_toml_and_flags(tmp_path):
    import argparse

    path = tmp_path / "c.toml"
    path.write_text(
        '[train]\nsteps = 20\nlr = 1\nmining = "semihard"\nlabelled_subjects = ["S1"]\n'
    )
    config = load_config(path)
    assert config.steps == 20 and config.lr == 1.0 and config.mining == "semihard"
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_flags(parser)
    args = parser.parse_args(["--config", str(path), "--steps", "5", "--augment", "false",
                              "--test-subjects", "S9,S11"])
    config = config_from_args(args)
    assert config.steps == 5 and config.augment is False and config.test_subjects == ["S9", "S11"]
    assert config.mining == "semihard"


@pytest.mark.parametrize("text,match", [
    ("steps = 'many'", "steps must be int"),
    ("stepz = 3", "unknown setting"),
    ("mining = 'hardestest'", "mining"),
    ("tau = 0", "tau"),
    ("steps = [", "not valid TOML"),
])
def test_bad_config_is_a_user_error(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserInputError, match=match) as info:
        load_config(path)
    assert "bad.toml" in str(info.value)


def test_default_config_is_valid():
    TrainConfig().validate()


def test_rays_follow_the_crops_through_sampling_and_augmentation(sequences):
    from trainer.data import augment_rays

    rays = [np.tile(np.float32([[0.1 * c, -0.05, 0.2]]), (s.num_frames, 1))
            for s in sequences for c in range(s.num_cameras)][:3]
    seqs = [sequences[0].__class__(**{**sequences[0].__dict__, "rays": rays})] + sequences[1:]
    labels = labels_from_ground_truth(seqs, ["S1"])
    b = BatchSampler(seqs, labels, SamplerConfig(labelled_batch=4), seed=2).batch(0)
    for i in range(len(b.mv_seq)):
        expected = ([0.1 * int(b.mv_cam[i]), -0.05, 0.2] if int(b.mv_seq[i]) == 0
                    else [0, 0, 0.4])  # sequences without rays: the optical axis
        assert np.allclose(b.mv_rays[i].numpy(), expected)
    assert b.lab_rays.shape == (4, 3)
    # a shift of the crop moves the centre by shift * side; scale shrinks the side; flip mirrors x
    r = torch.tensor([[0.1, -0.05, 0.2], [0.1, -0.05, 0.2]])
    aug = {"shift": torch.tensor([[0.05, -0.1], [0.0, 0.0]]), "scale": torch.tensor([1.0, 2.0])}
    out = augment_rays(r, torch.tensor([True, False]), aug)
    assert torch.allclose(out[0], torch.tensor([-(0.1 + 0.01), -0.05 - 0.02, 0.2]))
    assert torch.allclose(out[1], torch.tensor([0.1, -0.05, 0.1]))
    assert torch.equal(r[0], torch.tensor([0.1, -0.05, 0.2]))  # input untouched


def test_window_instants_give_every_anchor_in_window_negatives():
    from trainer.data import window_instants
    from trainer.mining import negative_statistics

    for seed in range(20):
        rng = np.random.default_rng(seed)
        t = window_instants(rng, 100, 4, tau=10, tau_max=20)
        assert len(set(t.tolist())) == 4 and t.min() >= 0 and t.max() < 100
        gaps = np.diff(np.sort(t))
        assert (gaps == 10).all()  # [tau, tau_max // 2] = [10, 10]: a comb 10 frames apart
        stats = negative_statistics(torch.zeros(4, dtype=torch.long), torch.from_numpy(t), 10, 20)
        # ends see 2 instants (10 and 20 away), inner ones 3: mean (2 + 3 + 3 + 2) / 4
        assert stats == {"anchors_with_negative": 1.0, "negatives_per_anchor": 2.5}
    wide = window_instants(np.random.default_rng(0), 200, 5, tau=10, tau_max=40)
    assert ((np.diff(wide) >= 10) & (np.diff(wide) <= 20)).all()
    # too short for the comb: evenly spread
    assert window_instants(np.random.default_rng(0), 12, 4, 10, 20).tolist() == [0, 4, 7, 11]


def test_negative_statistics_hand_case():
    from trainer.mining import negative_statistics

    seq = torch.tensor([0, 0, 0, 0, 1, 1, 1])  # duplicates are views of one instant
    time = torch.tensor([0, 0, 5, 30, 0, 12, 40])
    # seq 0 instants 0, 5, 30 with window 10..20: none; seq 1: 0 <-> 12 only
    stats = negative_statistics(seq, time, tau=10, tau_max=20)
    assert stats["anchors_with_negative"] == pytest.approx(2 / 6)
    assert stats["negatives_per_anchor"] == pytest.approx(2 / 6)
    unlimited = negative_statistics(seq, time, tau=10)  # 0-30, 5-30, 0-12, 0-40, 12-40
    assert unlimited["negatives_per_anchor"] == pytest.approx(10 / 6)


def test_window_sampling_in_batches_beats_uniform():
    from trainer.mining import negative_statistics

    seqs = fake_sequences(["S1", "S5"], frames=100, cameras=2, size=16)
    labels = labels_from_ground_truth(seqs, ["S1"], every=10)
    found = {}
    for mode in ("uniform", "window"):
        cfg = SamplerConfig(sequences_per_batch=2, instants_per_sequence=4, views_per_instant=2,
                            labelled_batch=2, instant_sampling=mode, tau=10, tau_max=20)
        sampler = BatchSampler(seqs, labels, cfg, seed=0)
        runs = [negative_statistics(b.mv_seq, b.mv_time, 10, 20)
                for b in map(sampler.batch, range(30))]
        found[mode] = np.mean([r["anchors_with_negative"] for r in runs])
    assert found["window"] == 1.0 and found["uniform"] < 0.7


def test_keypoint_targets_move_with_the_augmented_pixels():
    """A bright dot at a known crop position, re-sampled by augment_images, lands where
    augment_keypoints says (flip, scale and shift, each alone and together)."""
    from trainer.data import augment_images, augment_keypoints

    size = 64
    u = torch.tensor([[[0.2, -0.15]]])  # fractions of the side from the centre, y down
    image = torch.zeros(1, 3, size, size)
    col, row = ((u[0, 0] + 0.5) * size).long().tolist()
    image[0, :, row - 1:row + 2, col - 1:col + 2] = 1.0  # 3x3 dot centred on pixel (col, row)
    cases = [(False, 1.0, (0.0, 0.0)), (True, 1.0, (0.0, 0.0)), (False, 1.25, (0.0, 0.0)),
             (False, 1.0, (0.1, -0.05)), (True, 0.9, (-0.05, 0.08))]
    for flip, scale, shift in cases:
        aug = {"brightness": torch.ones(1), "contrast": torch.ones(1),
               "saturation": torch.ones(1), "scale": torch.tensor([scale]),
               "shift": torch.tensor([shift])}
        flips = torch.tensor([flip])
        out = augment_images(image.clone(), flips, aug)[0].mean(0)
        ys, xs = torch.nonzero(out > 0.5 * out.max(), as_tuple=True)
        seen = torch.tensor([(xs.float().mean() + 0.5) / size - 0.5,
                             (ys.float().mean() + 0.5) / size - 0.5])
        expected = augment_keypoints(u, flips, aug)[0, 0]
        assert torch.allclose(seen, expected, atol=1.0 / size), (flip, scale, shift, seen)


def test_crop_keypoints_of_a_hand_made_camera():
    from mcss_studio.core.camera import Calibration
    from mcss_studio.core.model import crop_keypoints

    cal = Calibration(K=np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]]), R=np.eye(3),
                      t=np.zeros(3), dist=np.zeros(5))
    joints = np.array([[[0.0, 0.0, 1000.0], [100.0, -50.0, 1000.0]]])  # -> (50, 40), (60, 35)
    square = np.array([[40.0, 30.0, 60.0, 50.0]])  # centre (50, 40), side 20
    out = crop_keypoints(joints, square, cal)
    assert out.dtype == np.float32
    assert np.allclose(out, [[[0.0, 0.0], [0.5, -0.25]]])


def test_keypoint_targets_reach_the_batch_with_left_and_right_swapped_when_mirrored(sequences):
    from mcss_studio.core.joints import FLIP_PERMUTATION

    kp = [np.random.default_rng(c).uniform(-0.5, 0.5, (s.num_frames, 17, 2)).astype(np.float32)
          for s in sequences[:1] for c in range(s.num_cameras)]
    seqs = [sequences[0].__class__(**{**sequences[0].__dict__, "keypoints2d": kp})]
    labels = labels_from_ground_truth(seqs, ["S1"])
    b = BatchSampler(seqs, labels, SamplerConfig(labelled_batch=8), seed=3).batch(0)
    assert b.lab_flip.any() and (~b.lab_flip).any()
    for i, (_, t, c) in enumerate(b.lab_ref):
        want = kp[c][t][FLIP_PERMUTATION] if b.lab_flip[i] else kp[c][t]
        assert np.array_equal(b.lab_keypoints[i].numpy(), want)
    # sequences without keypoints: no targets, and training runs without the auxiliary loss
    assert BatchSampler(sequences, labels_from_ground_truth(sequences, ["S1"]),
                        SamplerConfig(labelled_batch=4)).batch(0).lab_keypoints is None


def test_camera_frame_targets_agree_with_rays_and_keypoints_after_augmentation():
    """The three labels of an augmented crop describe one scene: the camera-frame 3D target
    (after the flip), put back at its root's depth and seen along the augmented viewing ray,
    projects onto the augmented 2D keypoints (which follow the pixels: the test above). A
    flip that mirrored the pose but not the ray (or the reverse), or a shift or scale applied
    to one and not the other, moves the projection off the keypoints."""
    from mcss_studio.core.camera import Calibration
    from mcss_studio.core.joints import ROOT
    from mcss_studio.core.model import crop_keypoints, crop_rays
    from trainer.data import augment_keypoints, augment_rays
    from trainer.fake import fake_cameras, fake_poses

    rotations, translations = fake_cameras(2)
    joints = fake_poses(np.random.default_rng(5), 12) + [300.0, 0.0, -200.0]  # off the axis
    rays, keypoints = [], []
    for c in range(2):
        cal = Calibration(K=np.array([[900.0, 0, 320], [0, 900.0, 240], [0, 0, 1]]),
                          R=rotations[c], t=translations[c])
        uv = cal.project(joints)
        centre, side = uv.mean(1), 1.3 * np.ptp(uv, axis=1).max(1)
        squares = np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], 1)
        rays.append(crop_rays(squares, cal.K))
        keypoints.append(crop_keypoints(joints, squares, cal))
    crops = [np.zeros((12, 16, 16, 3), np.uint8)] * 2
    seq = SequenceData("S1_0", "S1", crops, ["a", "b"], rotations, translations, joints,
                       rays, keypoints)
    labels = labels_from_ground_truth([seq], ["S1"])
    sampler = BatchSampler([seq], labels, SamplerConfig(labelled_batch=12, multiview=False,
                                                        scale_jitter=0.3, shift_jitter=0.1))
    flipped = 0
    for step in range(3):
        b = sampler.batch(step)
        ray = augment_rays(b.lab_rays, b.lab_flip, b.aug).double().numpy()
        want = augment_keypoints(b.lab_keypoints, b.lab_flip, b.aug).double().numpy()
        for i, (_, t, c) in enumerate(b.lab_ref):
            root = rotations[c] @ joints[t, ROOT] + translations[c]
            root[0] *= -1.0 if b.lab_flip[i] else 1.0  # the mirrored scene's root
            p = b.lab_pose_cam[i].double().numpy() + root
            seen = (p[:, :2] / p[:, 2:] - ray[i, :2]) / ray[i, 2]
            assert np.allclose(seen, want[i], atol=1e-4), (step, i, bool(b.lab_flip[i]))
        # and the factorised target is that pose: a proper rotation times the canonical pose
        rot = b.lab_rotation.double()
        assert torch.allclose(torch.linalg.det(rot), torch.ones(len(rot), dtype=rot.dtype))
        turned = torch.einsum("nij,nkj->nki", rot, b.lab_pose_canonical.double())
        assert torch.allclose(turned, b.lab_pose_cam.double(), atol=1e-2)
        flipped += int(b.lab_flip.sum())
    assert 0 < flipped < 36 and not torch.all(b.aug["scale"] == 1)
