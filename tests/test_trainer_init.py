"""Starting a run's encoder from saved weights (`init_checkpoint`) and 2D-only training
(`pose_weight=0`): exact copies of the file's encoder, heads untouched, one-line refusals."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mcss_studio.core.checkpoint import (
    checkpoint_digest,
    load_checkpoint,
    load_encoder,
    save_checkpoint,
    save_encoder,
)
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.model import MCSSModel, ModelConfig
from mcss_studio.core.runlog import EventWriter, read_events
from trainer.config import TrainConfig
from trainer.fake import fake_sequences
from trainer.train import fit, model_config

torch.set_num_threads(1)

SMALL = dict(width=8, embedding_dim=16, pose_hidden=32, orientation_hidden=16)


def _model(seed: int, **changes) -> MCSSModel:
    torch.manual_seed(seed)
    return MCSSModel(ModelConfig(**{**SMALL, **changes}))


def _heads(model: MCSSModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("encoder.")}


def test_loaded_encoder_equals_the_file_and_the_heads_are_untouched(tmp_path):
    source, target = _model(1), _model(2)
    with torch.no_grad():  # BatchNorm statistics travel too: make them differ from a fresh net
        source.encoder.stem[1].running_mean.add_(0.5)
    path = save_encoder(tmp_path / "enc.safetensors", source, {"recipe": "test"})
    heads = _heads(target)
    record = load_encoder(path, target)
    saved = source.encoder.state_dict()
    loaded = target.encoder.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in heads.items())
    assert not torch.equal(heads["pose_head.0.weight"], source.state_dict()["pose_head.0.weight"])
    assert record == {"path": str(path), "digest": checkpoint_digest(path), "arch": "resnet18",
                      "width": 8, "stem": "resnet"}


def test_an_encoder_file_holds_the_encoder_only(tmp_path):
    from safetensors import safe_open

    path = save_encoder(tmp_path / "enc.safetensors", _model(1))
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("model.encoder.") for k in keys)
    with pytest.raises(UserInputError, match="weights do not fit the model"):
        load_checkpoint(path)  # not a whole model


def test_a_whole_checkpoint_gives_its_encoder(tmp_path):
    source, target = _model(1), _model(2)
    path = save_checkpoint(tmp_path / "full.safetensors", source, {})
    heads = _heads(target)
    load_encoder(path, target)
    assert all(torch.equal(v, target.encoder.state_dict()[k])
               for k, v in source.encoder.state_dict().items())
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in heads.items())


@pytest.mark.parametrize("changes, problem", [
    (dict(width=16), "encoder does not fit this model: width=16 (the run: 8)"),
    (dict(stem="nopool"), "encoder does not fit this model: stem='nopool' (the run: 'resnet')"),
    (dict(arch="resnet34"), "arch='resnet34' (the run: 'resnet18')"),
])
def test_an_encoder_of_another_shape_is_refused_in_one_line(tmp_path, changes, problem):
    path = save_encoder(tmp_path / "enc.safetensors", _model(1, **changes))
    target = _model(2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(UserInputError) as err:
        load_encoder(path, target)
    assert problem in str(err.value) and "\n" not in str(err.value)
    assert str(path) in str(err.value)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items())


def test_a_file_missing_encoder_tensors_is_refused_in_one_line(tmp_path):
    path = save_encoder(tmp_path / "enc.safetensors", _model(1))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if "stages.3" not in k}
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata=meta)
    with pytest.raises(UserInputError) as err:
        load_encoder(tmp_path / "cut.safetensors", _model(2))
    message = str(err.value)
    assert "encoder weights do not fit the model: Missing key(s)" in message
    assert "stages.3" in message and "\n" not in message


def test_pickle_and_foreign_files_are_refused(tmp_path):
    pickled = tmp_path / "enc.pt"
    torch.save(_model(1).encoder.state_dict(), pickled)
    with pytest.raises(UserInputError, match="pickle/zip checkpoints are refused"):
        load_encoder(pickled, _model(2))
    foreign = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserInputError, match="no MCSS metadata"):
        load_encoder(foreign, _model(2))


@pytest.fixture(scope="module")
def data():
    return fake_sequences(["S1", "S5"], frames=30, cameras=2, size=32, seed=0)


def _config(tmp_path, **changes) -> TrainConfig:
    base = dict(steps=3, **SMALL, labelled_subjects=["S1"], sequences_per_batch=2,
                instants_per_sequence=4, views_per_instant=2, labelled_batch=8, tau=5,
                log_every=1, warmup_steps=1, triplet_log_every=0, checkpoint_every=0,
                run_dir=str(tmp_path / "runs"), run_id="r", device="cpu", lambda_metric=0.0)
    base.update(changes)
    return TrainConfig(**base)


def test_fit_starts_from_the_file_and_records_it(tmp_path, data):
    source = _model(7)
    path = save_encoder(tmp_path / "enc.safetensors", source)
    events = tmp_path / "events.jsonl"
    config = _config(tmp_path, init_checkpoint=str(path), run_id="init", steps=1, lr=1e-30,
                     weight_decay=0.0)
    result = fit(config, EventWriter(events), sequences=data, progress=False)
    # lr 1e-30: the one step moves a weight by at most ~1e-30 (only zeros show it); BatchNorm
    # statistics move with the batch
    trained = result.model.encoder.state_dict()
    weights = [k for k in trained if not k.endswith(("running_mean", "running_var",
                                                    "num_batches_tracked"))]
    assert all(torch.allclose(trained[k], source.encoder.state_dict()[k], rtol=0, atol=1e-20)
               for k in weights)
    torch.manual_seed(config.seed)
    fresh = MCSSModel(model_config(config))
    assert torch.equal(result.model.pose_head[0].weight, fresh.pose_head[0].weight)
    record = {"path": str(path), "digest": checkpoint_digest(path), "arch": "resnet18",
              "width": 8, "stem": "resnet"}
    _, meta = load_checkpoint(result.checkpoint)
    assert meta["init_checkpoint"] == record
    assert meta["train_config"]["init_checkpoint"] == str(path)
    start = next(r for r in read_events(events) if r["event"] == "start")
    assert start["init_checkpoint"] == record
    plain = fit(_config(tmp_path, run_id="plain"), None, sequences=data, progress=False)
    assert load_checkpoint(plain.checkpoint)[1]["init_checkpoint"] is None


def test_fit_with_a_mismatched_file_fails_in_one_line(tmp_path, data):
    path = save_encoder(tmp_path / "enc.safetensors", _model(1, width=16))
    events = tmp_path / "events.jsonl"
    with pytest.raises(UserInputError, match="width=16 \\(the run: 8\\)"):
        fit(_config(tmp_path, init_checkpoint=str(path)), EventWriter(events), sequences=data,
            progress=False)
    status = read_events(events)[-1]
    assert status["status"] == "failed" and "width=16" in status["message"]


def test_pose_weight_zero_trains_no_3d_head(tmp_path, data):
    rng = np.random.default_rng(0)
    with_kp = [s.__class__(**{**s.__dict__, "keypoints2d": [
        rng.uniform(-0.4, 0.4, (s.num_frames, 17, 2)).astype(np.float32)
        for _ in range(s.num_cameras)]}) for s in data]
    config = _config(tmp_path, pose_weight=0.0, keypoint_weight=1.0, steps=3)
    result = fit(config, None, sequences=with_kp, progress=False)
    torch.manual_seed(config.seed)
    fresh = MCSSModel(model_config(config)).state_dict()
    now = result.model.state_dict()
    for head in ("pose_head.", "orientation_head."):
        keys = [k for k in now if k.startswith(head)]
        assert keys and all(torch.equal(now[k], fresh[k]) for k in keys)
    assert not torch.equal(now["keypoint_head.weight"], fresh["keypoint_head.weight"])
    assert not torch.equal(now["encoder.stem.0.weight"], fresh["encoder.stem.0.weight"])
    with_3d = fit(_config(tmp_path, keypoint_weight=1.0, run_id="3d"), None, sequences=with_kp,
                  progress=False).model.state_dict()
    assert not torch.equal(with_3d["pose_head.0.weight"], fresh["pose_head.0.weight"])


def test_nothing_to_train_is_refused():
    with pytest.raises(UserInputError, match="nothing to train"):
        TrainConfig(pose_weight=0.0, keypoint_weight=0.0, lambda_metric=0.0).validate()
    with pytest.raises(UserInputError, match="pose_weight"):
        TrainConfig(pose_weight=-1.0).validate()


def test_the_embedding_head_is_carried_only_when_asked(tmp_path):
    source = _model(1)
    path = save_checkpoint(tmp_path / "full.safetensors", source, {})
    plain, carried = _model(2), _model(2)
    pose_head = carried.pose_head[0].weight.clone()
    assert load_encoder(path, plain).get("embedding_head") is None
    assert not torch.equal(plain.embedding_head.weight, source.embedding_head.weight)
    record = load_encoder(path, carried, embedding_head=True)
    assert record["embedding_head"] is True
    assert torch.equal(carried.embedding_head.weight, source.embedding_head.weight)
    assert torch.equal(carried.embedding_head.bias, source.embedding_head.bias)
    assert torch.equal(carried.pose_head[0].weight, pose_head)  # the 3D heads stay
    images = torch.rand(3, 3, 32, 32)
    source.eval(), carried.eval()
    with torch.no_grad():  # the same encoder and head give the same embedding
        assert torch.allclose(carried(images, heads=False)["embedding"],
                              source(images, heads=False)["embedding"])


@pytest.mark.parametrize("make, problem", [
    (lambda p: save_encoder(p, _model(1)), "has no embedding head (an encoder file?)"),
    (lambda p: save_checkpoint(p, _model(1, embedding_dim=8), {}),
     "embedding head weights do not fit the model"),
])
def test_an_embedding_head_that_cannot_be_carried_is_refused_in_one_line(tmp_path, make,
                                                                          problem):
    path = make(tmp_path / "src.safetensors")
    target = _model(2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(UserInputError) as err:
        load_encoder(path, target, embedding_head=True)
    assert problem in str(err.value) and "\n" not in str(err.value)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items())


def test_fit_starts_the_embedding_head_from_the_file_when_asked(tmp_path, data):
    source = _model(7)
    path = save_checkpoint(tmp_path / "full.safetensors", source, {})
    frozen = dict(steps=1, lr=1e-30, weight_decay=0.0, init_checkpoint=str(path))
    carried = fit(_config(tmp_path, run_id="carried", init_embedding_head=True, **frozen),
                  None, sequences=data, progress=False)
    assert torch.allclose(carried.model.embedding_head.weight, source.embedding_head.weight,
                          rtol=0, atol=1e-20)
    assert load_checkpoint(carried.checkpoint)[1]["init_checkpoint"]["embedding_head"] is True
    config = _config(tmp_path, run_id="encoder", **frozen)
    encoder_only = fit(config, None, sequences=data, progress=False)
    torch.manual_seed(config.seed)
    fresh = MCSSModel(model_config(config))
    assert torch.equal(encoder_only.model.embedding_head.weight, fresh.embedding_head.weight)
    assert not torch.equal(fresh.embedding_head.weight, source.embedding_head.weight)


def test_init_embedding_head_needs_init_checkpoint():
    with pytest.raises(UserInputError, match="init_embedding_head needs init_checkpoint"):
        TrainConfig(init_embedding_head=True).validate()
