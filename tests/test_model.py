"""Model shapes and geometry, checkpoint round trip, hostile checkpoints, Predictor."""

import json
import pickle
import struct

import numpy as np
import pytest
import torch

from mcss_studio.core.checkpoint import (
    load_checkpoint,
    load_training_state,
    read_metadata,
    save_checkpoint,
)
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.inference import Predictor
from mcss_studio.core.model import (
    MCSSModel,
    ModelConfig,
    canonical_frame,
    ray_rotation,
    rotation_from_6d,
    soft_argmax,
)

TINY = ModelConfig(arch="resnet18", width=8, embedding_dim=16, pose_hidden=32,
                   orientation_hidden=16)


def _model(seed: int = 0) -> MCSSModel:
    torch.manual_seed(seed)
    return MCSSModel(ModelConfig(**TINY.to_dict())).eval()


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_forward_shapes_and_unit_embedding(arch):
    model = MCSSModel(ModelConfig(arch=arch, width=4, embedding_dim=8, pose_hidden=16,
                                  orientation_hidden=8)).eval()
    out = model(torch.rand(3, 3, 32, 32))
    assert out["embedding"].shape == (3, 8)
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(3), atol=1e-5)
    assert out["pose_cam"].shape == out["pose_canonical"].shape == (3, 17, 3)
    rot = out["rotation"]
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3), atol=1e-5)
    # camera pose is the canonical pose rotated
    expected = out["pose_canonical"] @ rot.transpose(1, 2)
    assert torch.allclose(out["pose_cam"], expected, atol=1e-3)


def test_rotation_from_6d_identity():
    rot = rotation_from_6d(torch.tensor([[2.0, 0, 0, 0.5, 3.0, 0]]))
    assert torch.allclose(rot[0], torch.eye(3), atol=1e-6)


def test_canonical_frame_is_view_invariant():
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 200, size=(1, 17, 3))
    pose -= pose[:, :1]
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    rotated = pose @ q.T
    r1, c1 = canonical_frame(pose)
    r2, c2 = canonical_frame(rotated)
    assert np.allclose(c1, c2, atol=1e-6)
    assert np.allclose(np.einsum("nij,nkj->nki", r2, c2), rotated, atol=1e-6)
    # right hip lies on +x in the canonical frame, thorax in the x-y plane with y > 0
    assert c1[0, 1, 1] == pytest.approx(c1[0, 4, 1]) and c1[0, 1, 0] > c1[0, 4, 0]
    assert abs(c1[0, 8, 2]) < 1e-6 and c1[0, 8, 1] > 0


def test_checkpoint_round_trip_with_training_state(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    model(torch.rand(4, 3, 32, 32))["pose_cam"].sum().backward()
    opt.step()
    model.eval()
    rng = np.random.default_rng(3)
    torch_rng = torch.get_rng_state()
    path = save_checkpoint(tmp_path / "a.safetensors", model, {"crop_size": 32},
                           {"optimizer": opt.state_dict(), "step": 7, "scheduler": {"step": 7},
                            "numpy_rng": rng.bit_generator.state, "torch_rng": torch_rng})
    loaded, meta = load_checkpoint(path)
    assert meta["crop_size"] == 32 and meta["joint_names"][0] == "hip"
    header = read_metadata(path)  # the header alone: the same document, no tensors read
    assert header["training_state"]["step"] == 7 and header["model_config"] == TINY.to_dict()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x)["pose_cam"], model(x)["pose_cam"])
    state = load_training_state(path)
    assert state["step"] == 7
    opt2 = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    a = opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], a)
    assert torch.equal(state["torch_rng"], torch_rng)
    assert not list(tmp_path.glob("*.tmp"))


def test_pickle_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UserInputError, match="evil.pt"):
        load_checkpoint(path)
    with pytest.raises(UserInputError, match="pickle/zip checkpoints are refused"):
        read_metadata(path)
    torch.save({"x": Evil()}, tmp_path / "evil_zip.pt")
    with pytest.raises(UserInputError):
        load_checkpoint(tmp_path / "evil_zip.pt")
    assert not marker.exists()


def _safetensors_bytes(header: dict, payload: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage that is not a checkpoint",
        struct.pack("<Q", 10**12) + b"{}",  # header length far beyond the file
        _safetensors_bytes({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}),
        _safetensors_bytes({"__metadata__": {"mcss": "{not json"}}),
        _safetensors_bytes({"__metadata__": {"mcss": json.dumps({"format": "other"})}}),
        _safetensors_bytes({"__metadata__": {"mcss": json.dumps(
            {"format": "mcss-checkpoint", "version": 1,
             "model_config": {"arch": "resnet18", "width": 10**9}})}}),
        _safetensors_bytes({"__metadata__": {"mcss": json.dumps(
            {"format": "mcss-checkpoint", "version": 1, "model_config": {"arch": "evil"}})}}),
    ],
)
def test_malformed_checkpoints_raise_user_input_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(UserInputError, match="bad.safetensors"):
        load_checkpoint(path)
    if b"model_config" not in content:  # a bad header is refused by the header reader too
        with pytest.raises(UserInputError, match="bad.safetensors"):
            read_metadata(path)


def test_wrong_weights_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", _model(), {})
    big = ModelConfig(**{**TINY.to_dict(), "embedding_dim": 32})
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["mcss"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["model_config"] = big.to_dict()
    save_file(tensors, str(path), metadata={"mcss": json.dumps(meta)})
    with pytest.raises(UserInputError, match="do not fit"):
        load_checkpoint(path)
    with pytest.raises(UserInputError, match="no training state"):
        load_training_state(path)


def test_predictor_on_uint8_crops(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"crop_size": 32})
    predictor = Predictor(path, device="auto")
    assert predictor.device_name in ("cpu", "mps") or predictor.device_name.startswith("cuda")
    crops = np.random.default_rng(0).integers(0, 255, size=(5, 32, 32, 3), dtype=np.uint8)
    out = predictor.predict(crops)
    assert out["pose_cam"].shape == (5, 17, 3) and out["embedding"].shape == (5, 16)
    direct = model(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)
    assert np.allclose(out["pose_cam"], direct["pose_cam"].detach().numpy(), atol=1e-3)
    assert predictor.predict(crops[:0])["embedding"].shape == (0, 16)
    with pytest.raises(ValueError):
        predictor.predict(crops.astype(np.float32))


def test_pose_head_on_raw_embedding_option():
    config = ModelConfig(**{**TINY.to_dict(), "pose_on_unit_embedding": False})
    out = MCSSModel(config).eval()(torch.rand(2, 3, 32, 32))
    assert out["pose_cam"].shape == (2, 17, 3)
    with pytest.raises(ValueError):
        ModelConfig.from_dict({**TINY.to_dict(), "pose_on_unit_embedding": "yes"})


def test_crop_rays_hand_case():
    from mcss_studio.core.model import crop_rays

    K = np.array([[500.0, 0, 320], [0, 400, 240], [0, 0, 1]])
    squares = np.array([[[270.0, 190, 370, 290], [370, 140, 470, 240]]])  # centred; right-up
    rays = crop_rays(squares, K)
    assert rays.shape == (1, 2, 3) and rays.dtype == np.float32
    assert np.allclose(rays[0, 0], [0, 0, 0.2])
    assert np.allclose(rays[0, 1], [100 / 500, -50 / 400, 0.2])
    # with distortion, the ray of a distorted pixel is undistorted (differs from the pinhole one)
    distorted = crop_rays(squares, K, np.array([0.3, 0, 0, 0, 0]))
    assert np.allclose(distorted[0, 0], rays[0, 0], atol=1e-6)
    assert not np.allclose(distorted[0, 1, :2], rays[0, 1, :2], atol=1e-4)


def test_ray_rotation_takes_optical_axis_to_the_ray():
    rays = torch.tensor([[0.3, -0.2, 0.2], [0.0, 0.0, 0.1], [-0.5, 0.4, 0.3]])
    rot = ray_rotation(rays)
    d = torch.nn.functional.normalize(torch.cat([rays[:, :2], torch.ones(3, 1)], 1), dim=1)
    assert torch.allclose(rot @ torch.tensor([0.0, 0, 1]), d, atol=1e-6)
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)
    assert torch.allclose(rot[1], torch.eye(3))


def test_ray_model_predicts_with_and_without_rays(tmp_path):
    from mcss_studio.core.model import DEFAULT_RAY_SIZE

    torch.manual_seed(0)
    config = ModelConfig(**{**TINY.to_dict(), "ray_input": True})
    model = MCSSModel(config).eval()
    path = save_checkpoint(tmp_path / "r.safetensors", model, {"crop_size": 32})
    predictor = Predictor(path, device="cpu")
    assert predictor.uses_rays
    crops = np.random.default_rng(1).integers(0, 255, size=(3, 32, 32, 3), dtype=np.uint8)
    plain = predictor.predict(crops)  # the old call keeps working: optical axis
    axis = np.tile(np.array([[0, 0, DEFAULT_RAY_SIZE]], np.float32), (3, 1))
    assert np.allclose(plain["pose_cam"], predictor.predict(crops, rays=axis)["pose_cam"])
    side = predictor.predict(crops, rays=np.tile(np.float32([[0.4, 0.1, 0.2]]), (3, 1)))
    assert not np.allclose(plain["rotation"], side["rotation"], atol=1e-3)
    # the embedding and the canonical pose do not depend on where the crop was
    assert np.allclose(plain["embedding"], side["embedding"], atol=1e-5)
    assert np.allclose(plain["pose_canonical"], side["pose_canonical"], atol=1e-3)
    with pytest.raises(ValueError):
        predictor.predict(crops, rays=axis[:2])
    # a model without ray input ignores rays
    old = Predictor(_model(), device="cpu")
    assert not old.uses_rays
    assert np.allclose(old.predict(crops)["pose_cam"], old.predict(crops, rays=axis)["pose_cam"])


def test_checkpoint_without_ray_setting_loads_as_features_only(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_checkpoint(tmp_path / "old.safetensors", _model(), {})
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["mcss"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del meta["model_config"]["ray_input"]  # as written before rays existed
    save_file(tensors, str(path), metadata={"mcss": json.dumps(meta)})
    model, _ = load_checkpoint(path)
    assert model.config.ray_input is False
    # an old file claiming ray input does not fit its weights: refused, not half-loaded
    meta["model_config"]["ray_input"] = True
    save_file(tensors, str(path), metadata={"mcss": json.dumps(meta)})
    with pytest.raises(UserInputError, match="do not fit"):
        load_checkpoint(path)


@pytest.mark.parametrize("size", [32, 64])
def test_spatial_orientation_option(size):
    config = ModelConfig(**{**TINY.to_dict(), "orientation_spatial": True, "ray_input": True})
    out = MCSSModel(config).eval()(torch.rand(2, 3, size, size), rays=torch.zeros(2, 3))
    rot = out["rotation"]
    assert out["pose_cam"].shape == (2, 17, 3)
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5)


@pytest.mark.parametrize("spatial", [False, True])
def test_spatial_embedding_sees_where_features_are(spatial):
    """With embedding_spatial the embedding (and the pose read from it) tells apart two feature
    maps with the same mean and the quadrants swapped; the global average cannot."""
    config = ModelConfig(**{**TINY.to_dict(), "embedding_spatial": spatial})
    model = MCSSModel(config).eval()
    fmap = torch.rand(1, model.encoder.out_dim, 2, 2)
    swapped = fmap.flip(-1)  # left and right quadrants exchanged, same mean
    model.encoder.feature_map = lambda x: fmap if x[0, 0, 0, 0] > 0 else swapped
    image = torch.ones(1, 3, 64, 64)
    a, b = model(image), model(-image)
    assert torch.allclose(a["embedding"].norm(dim=1), torch.ones(1))
    same = torch.allclose(a["embedding"], b["embedding"], atol=1e-6)
    assert same is not spatial
    assert torch.allclose(a["pose_canonical"], b["pose_canonical"], atol=1e-4) is not spatial


def test_body_frame_is_canonical_frame_for_tensors():
    from mcss_studio.core.model import body_frame

    rng = np.random.default_rng(4)
    pose = rng.normal(0, 200, size=(5, 17, 3))
    rotation, canonical = body_frame(torch.from_numpy(pose))
    expected_rotation, expected_canonical = canonical_frame(pose)
    assert np.allclose(rotation.numpy(), expected_rotation, atol=1e-9)
    assert np.allclose(canonical.numpy(), expected_canonical, atol=1e-9)


def test_direct_pose_reads_embedding_and_view_and_keeps_outputs_consistent():
    """pose_direct: the camera-frame pose comes from one head that reads the embedding and the
    free view dimensions; rotation and canonical pose are the body frame of those joints."""
    torch.manual_seed(0)
    config = ModelConfig(**{**TINY.to_dict(), "pose_direct": True, "ray_input": True})
    model = MCSSModel(config).eval()
    assert not hasattr(model, "orientation_head")
    rays = torch.tensor([[0.3, -0.1, 0.2], [0.0, 0.0, 0.4]])
    out = model(torch.rand(2, 3, 32, 32), rays=rays)
    rot = out["rotation"]
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5)
    assert torch.allclose(out["pose_canonical"] @ rot.transpose(1, 2), out["pose_cam"],
                          atol=1e-3)
    hips = out["pose_canonical"][:, 1] - out["pose_canonical"][:, 4]  # along +x in the body
    assert torch.allclose(hips[:, 1:], torch.zeros(2, 2), atol=1e-3) and (hips[:, 0] > 0).all()
    # the pose loss reaches the embedding head and the view dimensions alike
    out["pose_cam"].sum().backward()
    for head in (model.embedding_head, model.view_head[0]):
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    # the rotation, read off the joints, trains the pose head too (rotation_weight reaches it)
    model.zero_grad()
    model(torch.rand(2, 3, 32, 32), rays=rays)["rotation"][:, :, 0].sum().backward()
    assert model.pose_head[0].weight.grad.abs().sum() > 0
    # without view dimensions the pose head sees only the embedding, which cannot see the ray
    with torch.no_grad():
        model.view_head[0].weight.zero_()
        model.view_head[0].bias.zero_()
    image = torch.rand(1, 3, 32, 32)
    here, there = model(image, rays=rays[:1]), model(image, rays=rays[1:])
    turn = ray_rotation(rays[:1]) @ ray_rotation(rays[1:]).transpose(1, 2)
    assert torch.allclose(here["pose_cam"], there["pose_cam"] @ turn.transpose(1, 2), atol=1e-3)


def test_direct_pose_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    model = MCSSModel(ModelConfig(**{**TINY.to_dict(), "pose_direct": True})).eval()
    path = save_checkpoint(tmp_path / "d.safetensors", model, {})
    loaded, _ = load_checkpoint(path)
    image = torch.rand(2, 3, 32, 32)
    assert loaded.config.pose_direct
    assert torch.allclose(loaded(image)["pose_cam"], model(image)["pose_cam"])
    with pytest.raises(ValueError):
        ModelConfig.from_dict({**TINY.to_dict(), "pose_direct": 1})
    with pytest.raises(ValueError, match="17-joint skeleton"):  # body_frame reads its joints
        ModelConfig.from_dict({**TINY.to_dict(), "pose_direct": True, "num_joints": 5})


def test_direct_pose_frame_is_float32_under_autocast():
    """Under AMP the heads run in reduced precision, but the body frame is built in float32:
    bf16 would round joints ~1000 mm apart to several millimetres."""
    torch.manual_seed(2)
    model = MCSSModel(ModelConfig(**{**TINY.to_dict(), "pose_direct": True,
                                     "ray_input": True})).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(2, 3, 32, 32), rays=torch.tensor([[0.2, 0.1, 0.3]] * 2))
    for key in ("pose_cam", "pose_canonical", "rotation"):
        assert out[key].dtype == torch.float32, key


def test_unreadable_checkpoint_is_one_line(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.safetensors", _model(), {})

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("mcss_studio.core.checkpoint.open", refuse, raising=False)
    for read in (load_checkpoint, read_metadata):
        with pytest.raises(UserInputError, match=r"m\.safetensors.*cannot read the checkpoint"):
            read(path)


def test_soft_argmax_reads_cell_centres_and_averages_between_them():
    heat = torch.full((1, 2, 8, 4), -1e4)
    heat[0, 0, 2, 3] = 0.0  # one hot cell: row 2 of 8, column 3 of 4
    heat[0, 1, 5, 0] = heat[0, 1, 5, 1] = 0.0  # two equal cells: halfway between them
    points = soft_argmax(heat)
    assert torch.allclose(points[0, 0], torch.tensor([3.5 / 4 - 0.5, 2.5 / 8 - 0.5]))
    assert torch.allclose(points[0, 1], torch.tensor([1.0 / 4 - 0.5, 5.5 / 8 - 0.5]))


def test_spatial_keypoint_head_is_a_heat_map_of_the_stride_8_features():
    config = ModelConfig(**{**TINY.to_dict(), "keypoint_head": True, "keypoint_spatial": True})
    model = MCSSModel(config).eval()
    assert isinstance(model.keypoint_head, torch.nn.Conv2d)
    image = torch.rand(2, 3, 64, 64)
    stage2, _ = model.encoder.feature_maps((image - 0.45) / 0.25, 1)
    assert stage2.shape[-2:] == (8, 8)  # stride 8 at 64 px
    expected = soft_argmax(model.keypoint_head(stage2))
    assert torch.allclose(model(image)["keypoints2d"], expected, atol=1e-5)
    assert "keypoints2d" not in model(image, heads=False)


@pytest.mark.parametrize("stem, side, stem_side, final_side", [
    # 64 px: 7x7/2 -> 32, pool/2 -> 16, stages 16 8 4 2; without the pool 32 .. 4; 3x3/1 64 .. 8
    ("resnet", 64, 16, 2), ("nopool", 64, 32, 4), ("small", 64, 64, 8),
    # 40 px, strides round up: 20 -> 10 -> 10 5 3 2; 20 -> 20 10 5 3; 40 -> 40 20 10 5
    ("resnet", 40, 10, 2), ("nopool", 40, 20, 3), ("small", 40, 40, 5)])
def test_stem_sets_the_feature_map_size(stem, side, stem_side, final_side):
    model = MCSSModel(ModelConfig(**{**TINY.to_dict(), "stem": stem})).eval()
    x = torch.rand(1, 3, side, side)
    assert model.encoder.stem(x).shape[2:] == (stem_side, stem_side)
    assert model.encoder.feature_map(x).shape[2:] == (final_side, final_side)
    assert model(x)["pose_cam"].shape == (1, 17, 3)


def test_checkpoint_records_the_stem(tmp_path):
    # nopool has the same weights as resnet (the pool has none): only the recorded setting
    # rebuilds the network that was trained
    torch.manual_seed(0)
    model = MCSSModel(ModelConfig(**{**TINY.to_dict(), "stem": "nopool"})).eval()
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "s.safetensors", model, {}))
    assert loaded.config.stem == "nopool"
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x)["pose_cam"], model(x)["pose_cam"])


def test_checkpoint_without_stem_loads_the_resnet_stem(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_checkpoint(tmp_path / "old.safetensors", _model(), {})
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["mcss"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del meta["model_config"]["stem"]  # as written before the choice existed
    save_file(tensors, str(path), metadata={"mcss": json.dumps(meta)})
    assert load_checkpoint(path)[0].config.stem == "resnet"
    meta["model_config"]["stem"] = "wide"
    save_file(tensors, str(path), metadata={"mcss": json.dumps(meta)})
    with pytest.raises(UserInputError, match="unknown stem"):
        load_checkpoint(path)
