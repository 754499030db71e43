"""Training loop: losses fall, exact resume, graceful stop, event stream, failure status."""

import os
import signal

import numpy as np
import pytest
import torch

from mcss_studio.core.checkpoint import load_checkpoint
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.runlog import EventWriter, read_events
from trainer.config import TrainConfig
from trainer.fake import fake_sequences
from trainer.train import StopFlag, fit

torch.set_num_threads(1)  # this shared CPU is oversubscribed; spinning OpenMP threads crawl


@pytest.fixture(scope="module")
def data():
    train = fake_sequences(["S1", "S5", "S6"], frames=40, cameras=3, size=32, seed=0)
    test = fake_sequences(["S9"], frames=20, cameras=3, size=32, seed=1)
    return train, test


def _config(tmp_path, **changes) -> TrainConfig:
    base = dict(steps=12, width=8, embedding_dim=16, pose_hidden=64, orientation_hidden=32,
                labelled_subjects=["S1"], sequences_per_batch=3, instants_per_sequence=4,
                views_per_instant=2, labelled_batch=16, tau=5, log_every=1, lr=3e-3,
                warmup_steps=3, triplet_log_every=4, checkpoint_every=0,
                run_dir=str(tmp_path / "runs"), run_id="r", device="cpu", lambda_metric=1.0)
    base.update(changes)
    return TrainConfig(**base)


def test_losses_fall_and_events_are_written(tmp_path, data):
    train, test = data
    config = _config(tmp_path, steps=40, log_every=1, eval_stride=4)
    events_path = tmp_path / "events.jsonl"
    result = fit(config, EventWriter(events_path), sequences=train, test_sequences=test,
                 progress=False)
    assert result.status == "done" and result.step == 40
    losses = np.array([h["loss"] for h in result.history])
    pose = np.array([h["pose_loss"] for h in result.history])
    metric = np.array([h["metric_loss"] for h in result.history])
    assert losses[-8:].mean() < 0.85 * losses[:4].mean()
    assert pose[-8:].mean() < pose[:4].mean()
    assert metric[-8:].mean() < metric[:4].mean()
    records = read_events(events_path)
    kinds = [r["event"] for r in records]
    assert kinds[0] == "start" and kinds[-1] == "status" and records[-1]["status"] == "done"
    step = next(r for r in records if r["event"] == "step")
    assert {"step", "loss", "pose_loss", "metric_loss", "lr", "images_per_s"} <= set(step)
    ev = next(r for r in records if r["event"] == "eval")
    assert {"mpjpe", "n_mpjpe", "p_mpjpe", "hit@1", "map@10"} <= set(ev["metrics"])
    ck = [r for r in records if r["event"] == "checkpoint"]
    assert ck and os.path.isfile(ck[-1]["path"])
    _, meta = load_checkpoint(ck[-1]["path"])
    assert meta["crop_size"] == 32 and meta["train_config"]["steps"] == 40
    triplets = read_events(result.run_dir / "triplets.jsonl")
    assert triplets and {"anchor", "positive", "negative", "d_ap", "d_an", "violation"} <= set(
        triplets[0])
    t = triplets[0]
    assert t["anchor"]["frame"] == t["positive"]["frame"]
    assert t["anchor"]["camera"] != t["positive"]["camera"]
    if t["anchor"]["sequence"] == t["negative"]["sequence"]:
        assert abs(t["anchor"]["frame"] - t["negative"]["frame"]) >= config.tau


def test_resume_is_exact(tmp_path, data):
    train, _ = data
    full = fit(_config(tmp_path, steps=8, checkpoint_every=4, run_id="full"), None,
               sequences=train, progress=False)
    middle = full.run_dir / "checkpoints" / "step_0000004.safetensors"
    resumed = fit(_config(tmp_path, steps=8, resume=str(middle), run_id="resumed"), None,
                  sequences=train, progress=False)
    assert resumed.step == 8
    a, _ = load_checkpoint(full.checkpoint)
    b, _ = load_checkpoint(resumed.checkpoint)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6, rtol=0), name
    assert [h["loss"] for h in full.history[4:]] == pytest.approx(
        [h["loss"] for h in resumed.history], abs=1e-6)
    # and a fresh run from scratch is not the same as the resumed one (the check can fail)
    other = fit(_config(tmp_path, steps=8, seed=1, run_id="other"), None, sequences=train,
                progress=False)
    c, _ = load_checkpoint(other.checkpoint)
    assert not torch.allclose(c.embedding_head.weight, b.embedding_head.weight)


def test_stop_flag_saves_checkpoint_and_reports_stopped(tmp_path, data):
    train, _ = data
    stop = StopFlag()
    stop.event.set()
    events_path = tmp_path / "ev.jsonl"
    result = fit(_config(tmp_path, steps=50), EventWriter(events_path), sequences=train,
                 stop=stop, progress=False)
    assert result.status == "stopped" and result.step == 1
    assert result.checkpoint is not None and result.checkpoint.is_file()
    assert read_events(events_path)[-1]["status"] == "stopped"


def test_signals_set_the_stop_flag():
    def before(signum, frame):  # the handler the trainer must hand back, not SIG_DFL
        raise AssertionError("the stop flag's handler should have been called")

    previous = signal.signal(signal.SIGTERM, before)
    try:
        stop = StopFlag()
        stop.install()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.event.wait(timeout=5)
        finally:
            stop.restore()
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_failure_is_reported(tmp_path, data):
    train, _ = data
    events_path = tmp_path / "ev.jsonl"
    with pytest.raises(ValueError):
        fit(_config(tmp_path, labelled_subjects=["S1"]), EventWriter(events_path),
            sequences=[s for s in train if s.num_cameras < 2], progress=False)
    last = read_events(events_path)[-1]
    assert last["status"] == "failed" and last["message"]


def test_baseline_reads_no_multiview_images(tmp_path, data):
    train, _ = data
    result = fit(_config(tmp_path, steps=3, lambda_metric=0.0), None, sequences=train,
                 progress=False)
    assert all(h["metric_loss"] == 0 for h in result.history)
    assert not (result.run_dir / "triplets.jsonl").exists() or not (
        result.run_dir / "triplets.jsonl").read_text()


def test_resume_restores_the_fp16_loss_scale(tmp_path, data):
    """fp16 runs (CUDA without bf16) resume with the loss scale they had, not a fresh 65536."""
    from mcss_studio.core.checkpoint import save_checkpoint
    from mcss_studio.core.model import MCSSModel
    from trainer.train import _resume, model_config

    config = _config(tmp_path)
    model = MCSSModel(model_config(config))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    saved = torch.amp.GradScaler("cpu", init_scale=512.0)
    saved._lazy_init_scale_growth_tracker("cpu")
    path = save_checkpoint(tmp_path / "ck.safetensors", model, {}, {
        "optimizer": optimizer.state_dict(), "step": 7, "torch_rng": torch.get_rng_state(),
        "extra": {"grad_scaler": saved.state_dict()}})
    fresh = torch.amp.GradScaler("cpu")
    assert _resume(str(path), model, optimizer, fresh) == 7
    assert fresh.get_scale() == 512.0


@pytest.fixture(scope="module")
def step4_checkpoint(tmp_path_factory, data):
    """A run stopped at step 4 of 8 (its checkpoint, and the settings it ran with)."""
    tmp = tmp_path_factory.mktemp("resume")
    train, _ = data
    run = fit(_config(tmp, steps=8, checkpoint_every=4, run_id="full"), None, sequences=train,
              progress=False)
    return tmp, run.run_dir / "checkpoints" / "step_0000004.safetensors"


@pytest.mark.parametrize("changes, shown", [
    ({"crop_size": 96}, "crop_size=128 -> 96"),
    ({"steps": 12}, "steps=8 -> 12"),
    ({"lr": 1e-2, "margin": 0.5}, "margin=0.2 -> 0.5, lr=0.003 -> 0.01"),
])
def test_resume_refuses_different_settings_in_one_line(step4_checkpoint, data, changes, shown):
    tmp, ckpt = step4_checkpoint
    base = dict(steps=8, resume=str(ckpt), run_id="again")
    with pytest.raises(UserInputError) as err:
        fit(_config(tmp, **{**base, **changes}), None, sequences=data[0], progress=False)
    message = str(err.value)
    assert "\n" not in message and shown in message and "--override-settings" in message


def test_resume_with_steps_below_the_checkpoint_is_refused_even_with_override(
        step4_checkpoint, data):
    tmp, ckpt = step4_checkpoint
    for override in (False, True):
        with pytest.raises(UserInputError, match="at step 4, past steps=3: nothing to train; "
                           "resume with steps=8, or with more than 4 and --override-settings"):
            fit(_config(tmp, steps=3, resume=str(ckpt), run_id="short",
                        override_settings=override), None, sequences=data[0], progress=False)


def test_resume_with_override_continues_with_the_new_settings(step4_checkpoint, data):
    tmp, ckpt = step4_checkpoint
    # bookkeeping settings (where, how often to log) may differ without an override
    same = fit(_config(tmp, steps=8, resume=str(ckpt), run_id="same", log_every=2), None,
               sequences=data[0], progress=False)
    assert same.status == "done" and same.step == 8
    longer = fit(_config(tmp, steps=10, resume=str(ckpt), run_id="longer",
                         override_settings=True), None, sequences=data[0], progress=False)
    assert longer.status == "done" and longer.step == 10 and len(longer.history) == 6


def test_unlabelled_images_control_sees_them_without_a_metric_loss(tmp_path, data):
    """lambda = 0 with unlabelled_images: the multi-view batches go through the network (the
    BatchNorm statistics differ from the plain baseline's) but no metric loss is applied."""
    from trainer.train import sampler_config

    train, _ = data
    plain = _config(tmp_path, steps=2, lambda_metric=0.0, run_id="plain")
    control = _config(tmp_path, steps=2, lambda_metric=0.0, unlabelled_images=True, run_id="bn")
    assert not sampler_config(plain).multiview and sampler_config(control).multiview
    results = [fit(c, None, sequences=train, progress=False) for c in (plain, control)]
    assert all(h["metric_loss"] == 0 for r in results for h in r.history)
    assert "anchors_with_negative" in results[1].history[-1]
    assert "anchors_with_negative" not in results[0].history[-1]
    stats = [r.model.encoder.state_dict() for r in results]
    running = [k for k in stats[0] if k.endswith("running_mean")]
    assert running and not all(torch.equal(stats[0][k], stats[1][k]) for k in running)


def test_keypoint_weight_trains_a_keypoint_head_that_checkpoints_carry(tmp_path, data):
    """keypoint_weight > 0 adds the 2D head and its loss (the pose loss of step 1 grows by the
    keypoint error of an untrained head); the checkpoint rebuilds it; 0 leaves both out."""
    train, _ = data
    rng = np.random.default_rng(0)
    with_kp = [s.__class__(**{**s.__dict__, "keypoints2d": [
        rng.uniform(-0.4, 0.4, (s.num_frames, 17, 2)).astype(np.float32)
        for _ in range(s.num_cameras)]}) for s in train]
    plain = _config(tmp_path, steps=1, lambda_metric=0.0, run_id="plain", checkpoint_every=1)
    aux = _config(tmp_path, steps=1, lambda_metric=0.0, run_id="kp", keypoint_weight=5.0,
                  checkpoint_every=1)
    r_plain = fit(plain, None, sequences=with_kp, progress=False)
    r_aux = fit(aux, None, sequences=with_kp, progress=False)
    assert r_aux.history[0]["pose_loss"] > r_plain.history[0]["pose_loss"] + 5 * 0.1
    assert not hasattr(r_plain.model, "keypoint_head")
    model, _ = load_checkpoint(r_aux.checkpoint)
    assert model.config.keypoint_head
    out = model(torch.rand(2, 3, 32, 32))
    assert out["keypoints2d"].shape == (2, 17, 2)
def test_triplet_log_holds_each_steps_worst_triplets_and_events_their_mean_distances(
        tmp_path, data):
    train, _ = data
    config = _config(tmp_path, steps=4, triplet_log_every=2, triplet_log_size=1000,
                     mining="hardest", mining_warmup=3)
    result = fit(config, EventWriter(tmp_path / "events.jsonl"), sequences=train,
                 progress=False)
    logged = read_events(result.run_dir / "triplets.jsonl")
    steps = {r["step"]: r for r in read_events(tmp_path / "events.jsonl")
             if r["event"] == "step"}
    for step in (2, 4):
        rows = [r for r in logged if r["step"] == step]
        assert len(rows) == steps[step]["triplets"]  # all of them: the log size exceeds them
        violation = [r["violation"] for r in rows]
        assert violation == sorted(violation, reverse=True)
        assert np.isclose(np.mean([r["d_ap"] for r in rows]), steps[step]["d_ap_mean"])
        assert np.isclose(np.mean([r["d_an"] for r in rows]), steps[step]["d_an_mean"])
    # steps 2 and 4 are 0-based steps 1 and 3: random during the 3-step warm-up, then hardest
    assert {r["mining"] for r in logged if r["step"] == 2} == {"random"}
    assert {r["mining"] for r in logged if r["step"] == 4} == {"hardest"}


def test_stem_setting_reaches_the_checkpoint(tmp_path, data):
    """stem=small trains a network whose first stage sees the full crop, and the checkpoint
    rebuilds that network; a stem the model does not know is refused before training."""
    train, _ = data
    config = _config(tmp_path, steps=1, lambda_metric=0.0, run_id="small", stem="small",
                     checkpoint_every=1)
    result = fit(config, None, sequences=train, progress=False)
    model, _ = load_checkpoint(result.checkpoint)
    assert model.config.stem == "small"
    assert model.encoder.feature_map(torch.rand(1, 3, 32, 32)).shape[2:] == (4, 4)  # 32 / 8
    with pytest.raises(UserInputError, match="stem must be"):
        _config(tmp_path, stem="tiny").validate()


def test_pose_direct_trains_and_reaches_the_checkpoint(tmp_path, data):
    """pose_direct=true trains the direct head (the pose loss falls, the rotation loss reaches it
    through the body frame of its joints) and the checkpoint rebuilds that network."""
    train, _ = data
    config = _config(tmp_path, steps=30, lambda_metric=0.0, run_id="direct", pose_direct=True,
                     rotation_weight=1.0, checkpoint_every=30)
    result = fit(config, None, sequences=train, progress=False)
    pose = np.array([h["pose_loss"] for h in result.history])
    assert np.isfinite(pose).all() and pose[-6:].mean() < pose[:3].mean()
    model, _ = load_checkpoint(result.checkpoint)
    assert model.config.pose_direct and hasattr(model, "view_head")
