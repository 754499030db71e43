"""The MCSS training loop: L = L_pose(labelled) + lambda * L_metric(unlabelled multi-view).

Runs on one CPU/GPU or under torchrun (DistributedDataParallel; rank 0 writes events, triplet
logs and checkpoints). SIGINT/SIGTERM finish the current step, save a checkpoint and stop.
Resume is exact: batches depend only on (seed, step, rank), and the checkpoint carries the model,
optimiser, scheduler, step and RNG states.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from mcss_studio.core.atomic import make_dirs
from mcss_studio.core.checkpoint import (
    load_checkpoint,
    load_encoder,
    load_training_state,
    save_checkpoint,
)
from mcss_studio.core.errors import UserInputError
from mcss_studio.core.inference import autocast_for, pick_device
from mcss_studio.core.model import MCSSModel, ModelConfig
from mcss_studio.core.runlog import EventWriter, JsonLines

from .config import TrainConfig, resume_differences
from .data import (
    BatchSampler,
    LabelledFrame,
    Prefetcher,
    SamplerConfig,
    SequenceData,
    augment_images,
    augment_keypoints,
    augment_rays,
    labels_from_ground_truth,
    labels_from_store,
    to_float_images,
)
from .evaluate import evaluate
from .losses import keypoint_loss, pose_loss, rotation_loss, triplet_loss
from .mining import mine_triplets, negative_statistics


@dataclass
class FitResult:
    status: str  # done | stopped | failed
    step: int
    run_dir: Path
    checkpoint: Path | None
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    model: MCSSModel | None = None


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up then cosine decay to 1% of lr; a pure function of the step."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    progress = min(1.0, step / max(1, config.steps))
    return config.lr * warm * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def metric_weight(config: TrainConfig, step: int) -> float:
    """lambda, ramped linearly over the first metric_warmup steps (a pure function of the step)."""
    if config.metric_warmup <= 0:
        return config.lambda_metric
    return config.lambda_metric * min(1.0, (step + 1) / config.metric_warmup)


def model_config(config: TrainConfig) -> ModelConfig:
    return ModelConfig(arch=config.arch, width=config.width, stem=config.stem,
                       embedding_dim=config.embedding_dim,
                       pose_hidden=config.pose_hidden, orientation_hidden=config.orientation_hidden,
                       pose_on_unit_embedding=config.pose_on_unit_embedding,
                       ray_input=config.ray_input,
                       orientation_spatial=config.orientation_spatial,
                       embedding_spatial=config.embedding_spatial,
                       keypoint_head=config.keypoint_weight > 0,
                       keypoint_spatial=config.keypoint_spatial,
                       pose_direct=config.pose_direct)


def sampler_config(config: TrainConfig) -> SamplerConfig:
    return SamplerConfig(
        sequences_per_batch=config.sequences_per_batch,
        instants_per_sequence=config.instants_per_sequence,
        views_per_instant=config.views_per_instant, labelled_batch=config.labelled_batch,
        color_jitter=config.color_jitter, scale_jitter=config.scale_jitter,
        shift_jitter=config.shift_jitter, flip=config.flip, augment=config.augment,
        channel_shuffle=config.channel_shuffle,
        multiview=config.lambda_metric > 0 or config.unlabelled_images,
        instant_sampling=config.instant_sampling, tau=config.tau, tau_max=config.tau_max,
    )


class StopFlag:
    """Set by SIGINT/SIGTERM (or by a caller) to stop after the current step."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, lambda *_: self.event.set())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def load_data(
    config: TrainConfig,
) -> tuple[list[SequenceData], list[SequenceData], list[LabelledFrame], dict | None]:
    """(training sequences, test sequences, labels, the label store's record or None) from the
    dataset folder in the config; labels from config.labels (a label store) when it is set,
    else the ground truth of the labelled subjects."""
    from .sources import load_sequences, resolve_subjects

    if not config.data:
        raise UserInputError("config", "no dataset: set data = \"path/to/dataset\"")
    train_subjects = resolve_subjects(config.data, config.train_subjects, "train")
    store_labels, record = labels_from_store(config.labels) if config.labels else ([], None)
    labelled = (record["subjects"] if record is not None
                else resolve_subjects(config.data, config.labelled_subjects, "labelled"))
    test_subjects = resolve_subjects(config.data, config.test_subjects, "test", required=False)
    wanted = list(dict.fromkeys(train_subjects + labelled))
    train = load_sequences(config.data, wanted, config.cache_dir or None, config.crop_size,
                           config.crop_margin)
    test = (load_sequences(config.data, test_subjects, config.cache_dir or None, config.crop_size,
                           config.crop_margin) if test_subjects else [])
    if record is not None:
        _check_store_labels(config.labels, store_labels, train)
        return train, test, store_labels, record
    labels = labels_from_ground_truth(train, labelled, config.label_every)
    if not labels:
        raise UserInputError(config.data, f"no 3D ground truth for labelled subjects {labelled}")
    return train, test, labels, None


def _check_store_labels(store: str, labels: list[LabelledFrame],
                        train: list[SequenceData]) -> None:
    """Labels the training data can serve: some, of loaded sequences, within their frames."""
    if not labels:
        raise UserInputError(store, "no labelled frame has all 17 joints in 3D")
    frames = {s.name: s.num_frames for s in train}
    for lab in labels:
        if lab.sequence not in frames:
            raise UserInputError(store, f"labels of sequence {lab.sequence!r}, which is not "
                                        f"among the training sequences of {sorted(frames)[:4]}")
        if lab.frame >= frames[lab.sequence]:
            raise UserInputError(store, f"label of {lab.sequence} frame {lab.frame} is past "
                                        f"its last frame {frames[lab.sequence] - 1}")


def _new_run_dir(config: TrainConfig) -> Path:
    run_id = config.run_id or time.strftime("%Y%m%d-%H%M%S")
    return Path(config.run_dir) / run_id


def fit(
    config: TrainConfig,
    events: EventWriter | None = None,
    sequences: Sequence[SequenceData] | None = None,
    labels: Sequence[LabelledFrame] | None = None,
    test_sequences: Sequence[SequenceData] | None = None,
    stop: StopFlag | None = None,
    progress: bool | None = None,
) -> FitResult:
    """Train per `config`. Data come from config.data unless `sequences` (+ labels) are given.

    Multi-view batches are drawn from all `sequences`; labelled batches from `labels`.
    Returns the final status; failures also raise after the "failed" event is written.
    """
    config.validate()
    rank, world = _distributed()
    events = events if (events is not None and rank == 0) else EventWriter(None)
    stop = stop or StopFlag()
    own_signals = not stop._previous
    if own_signals:
        stop.install()
    run_dir = _new_run_dir(config)
    step = 0
    checkpoint: Path | None = None
    history: list[dict] = []
    label_record = None
    try:
        if sequences is None:
            sequences, test_loaded, loaded_labels, label_record = load_data(config)
            labels = loaded_labels if labels is None else labels
            test_sequences = test_loaded if test_sequences is None else test_sequences
        elif labels is None:
            labels = labels_from_ground_truth(
                sequences, config.labelled_subjects, config.label_every)
        sequences = list(sequences)
        test_sequences = list(test_sequences or [])
        if rank == 0:
            make_dirs(run_dir / "checkpoints")
        device = pick_device(config.device)
        if world > 1 and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        torch.manual_seed(config.seed)
        model = MCSSModel(model_config(config))
        init_record = None
        if config.init_checkpoint and not config.resume:  # a resume has its own weights
            init_record = load_encoder(config.init_checkpoint, model, config.init_embedding_head)
        model = model.to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
        use_fp16 = (config.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported())
        scaler = torch.amp.GradScaler("cuda") if use_fp16 else None
        if config.resume:
            step = _resume(config.resume, model, optimizer, scaler, config,
                           sequences[0].crop_size)
        net: torch.nn.Module = model
        if world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        amp = autocast_for(device) if config.amp else nullcontext()
        sampler = BatchSampler(sequences, labels, sampler_config(config), config.seed, rank)
        meta = {"train_config": config.to_dict(), "crop_size": sequences[0].crop_size,
                "run_dir": str(run_dir), "label_store": label_record,
                "init_checkpoint": init_record}
        triplet_log = JsonLines(run_dir / "triplets.jsonl" if rank == 0 else None)
        events.emit("start", run_dir=str(run_dir), steps=config.steps, start_step=step,
                    device=str(device), world_size=world, labelled_frames=len(labels),
                    sequences=len(sequences), config=config.to_dict(),
                    label_store=label_record, init_checkpoint=init_record)

        def save(tag: str) -> Path | None:
            if rank != 0:
                return None
            path = run_dir / "checkpoints" / f"{tag}.safetensors"
            save_checkpoint(path, model, meta, {
                "optimizer": optimizer.state_dict(), "step": step,
                "scheduler": {"kind": "warmup_cosine", "step": step},
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "extra": {"grad_scaler": scaler.state_dict()} if scaler is not None else None,
            })
            events.emit("checkpoint", step=step, path=str(path))
            return path

        bar = _progress_bar(config.steps, step, progress and rank == 0)
        prefetch = Prefetcher(sampler.batch, step, config.steps)
        window_images, window_start = 0, time.perf_counter()
        status = "done"
        model.train()
        try:
            for s, batch in prefetch:
                lr = learning_rate(config, s)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                losses, n_images, triplets = train_step(
                    net, batch, optimizer, scaler, amp, device, config, s)
                step = s + 1
                window_images += n_images * world
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses['loss']:.4f}")
                if step % config.log_every == 0 or step == config.steps:
                    elapsed = time.perf_counter() - window_start
                    record = events.emit("step", step=step, lr=lr,
                                         images_per_s=window_images / max(elapsed, 1e-9), **losses)
                    history.append(record)
                    window_images, window_start = 0, time.perf_counter()
                if (triplets is not None and config.triplet_log_every
                        and step % config.triplet_log_every == 0):
                    _log_triplets(triplet_log, step, sequences, batch, triplets, config)
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    checkpoint = save(f"step_{step:07d}") or checkpoint
                if config.eval_every and step % config.eval_every == 0 and test_sequences:
                    _evaluate_event(events, model, test_sequences, config, step, rank)
                if _should_stop(stop, world, device):
                    status = "stopped"
                    break
        finally:
            prefetch.close()
            triplet_log.close()
            if bar is not None:
                bar.close()
        checkpoint = save("last") or checkpoint
        metrics = {}
        if status == "done" and test_sequences:
            metrics = _evaluate_event(events, model, test_sequences, config, step, rank)
        events.emit("status", status=status, step=step, checkpoint=str(checkpoint))
        return FitResult(status, step, run_dir, checkpoint, metrics, history, model)
    except BaseException as exc:
        message = str(exc) or type(exc).__name__
        events.emit("status", status="failed", step=step, message=message)
        raise
    finally:
        if own_signals:
            stop.restore()


def _should_stop(stop: StopFlag, world: int, device: torch.device) -> bool:
    """Every rank stops at the same step: the flag is all-reduced under DDP."""
    flag = stop.event.is_set()
    if world <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def train_step(net, batch, optimizer, scaler, amp, device, config: TrainConfig, step: int):
    m = len(batch.mv_images)
    images = torch.cat([batch.mv_images, batch.lab_images])
    flips = torch.cat([batch.mv_flip, batch.lab_flip])
    x = augment_images(to_float_images(images, device), flips, batch.aug)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    rays = None
    if batch.mv_rays is not None and batch.lab_rays is not None:
        rays = augment_rays(torch.cat([batch.mv_rays, batch.lab_rays]), flips, batch.aug)
        rays = rays.to(device)
    with amp:
        out = net(x, rays=rays)
    lab = {k: v[m:] for k, v in out.items()}
    l_pose = torch.zeros((), device=device)
    if config.pose_weight > 0:  # at 0 the 3D heads get no gradient at all (not a zero one)
        l_pose = config.pose_weight * pose_loss(lab, batch.lab_pose_cam.to(device),
                                                batch.lab_pose_canonical.to(device),
                                                config.canonical_weight)
    if config.rotation_weight > 0 and batch.lab_rotation is not None:
        l_pose = l_pose + config.rotation_weight * rotation_loss(
            lab["rotation"], batch.lab_rotation.to(device))
    if config.keypoint_weight > 0 and batch.lab_keypoints is not None:
        target = augment_keypoints(batch.lab_keypoints, batch.lab_flip,
                                   {k: v[m:] for k, v in batch.aug.items()})
        l_pose = l_pose + config.keypoint_weight * keypoint_loss(lab["keypoints2d"],
                                                                 target.to(device))
    triplets = None
    l_metric = out["embedding"].sum() * 0.0
    if config.lambda_metric > 0 and m > 0:
        emb = out["embedding"][:m]
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        triplets = mine_triplets(emb.detach(), batch.mv_seq, batch.mv_time, batch.mv_cam,
                                 config.tau, mining_strategy(config, step), gen, config.tau_max,
                                 config.cross_sequence_negatives)
        l_metric = triplet_loss(emb, triplets, config.margin, config.soft_margin)
    loss = l_pose + metric_weight(config, step) * l_metric
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    losses = {"loss": float(loss.detach()), "pose_loss": float(l_pose.detach()),
              "metric_loss": float(l_metric.detach())}
    if triplets is not None and len(triplets):
        active = (triplets.d_ap - triplets.d_an + config.margin) > 0
        losses["active_triplets"] = float(active.float().mean())  # violating the margin
        losses["triplets"] = len(triplets)
        losses["d_ap_mean"] = float(triplets.d_ap.mean())  # the inspector plots both
        losses["d_an_mean"] = float(triplets.d_an.mean())
    if m > 0:  # what the sampler gave mining to choose from (in the step events)
        losses.update(negative_statistics(batch.mv_seq, batch.mv_time, config.tau, config.tau_max))
    return losses, len(images), triplets


def mining_strategy(config: TrainConfig, step: int) -> str:
    """The negative mining used at (0-based) `step`: random during the mining warm-up."""
    return "random" if step < config.mining_warmup else config.mining


def _log_triplets(log: JsonLines, step, sequences, batch, triplets, config: TrainConfig) -> None:
    """The step's triplet_log_size mined triplets of largest margin violation (those that
    drive the loss), worst first, as (sequence, camera, frame) with distances, for the
    inspector. `step` counts steps done, so the mining was that of 0-based step - 1."""
    def ref(i: int) -> dict:
        s = sequences[int(batch.mv_seq[i])]
        c = int(batch.mv_cam[i])
        return {"sequence": s.name, "camera": s.camera_names[c], "camera_index": c,
                "frame": int(batch.mv_time[i])}

    violation = (triplets.d_ap - triplets.d_an).float().cpu() + config.margin
    n = min(len(triplets), config.triplet_log_size)
    worst = torch.argsort(violation, descending=True, stable=True)[:n]
    mining = mining_strategy(config, step - 1)
    for k in worst.tolist():
        a, p, q = int(triplets.anchor[k]), int(triplets.positive[k]), int(triplets.negative[k])
        d_ap, d_an = float(triplets.d_ap[k]), float(triplets.d_an[k])
        log.write({"step": step, "mining": mining, "anchor": ref(a), "positive": ref(p),
                   "negative": ref(q), "d_ap": d_ap, "d_an": d_an, "margin": config.margin,
                   "violation": d_ap - d_an + config.margin})


def _evaluate_event(
    events, model, test_sequences, config: TrainConfig, step: int, rank: int
) -> dict:
    if rank != 0:
        return {}
    metrics = evaluate(model, test_sequences, stride=config.eval_stride)
    model.train()
    events.emit("eval", step=step, metrics=metrics)
    return metrics


def _check_resume(path: str, meta: dict, step: int, config: TrainConfig, crop_size: int) -> None:
    """Refuse, in one line, a resume whose settings differ from the checkpoint's (unless
    config.override_settings) or that has nothing left to train."""
    if step > config.steps:
        saved_steps = (meta.get("train_config") or {}).get("steps", "its own")
        raise UserInputError(path, f"checkpoint is at step {step}, past steps={config.steps}: "
                             f"nothing to train; resume with steps={saved_steps}, or with more "
                             f"than {step} and --override-settings true")
    if config.override_settings:
        return
    saved = dict(meta.get("train_config") or {})
    diffs = resume_differences(saved, config)
    if meta.get("crop_size") not in (None, crop_size) and "crop_size" not in {d[0] for d in diffs}:
        diffs.append(("crop_size (of the data)", meta["crop_size"], crop_size))
    if diffs:
        shown = ", ".join(f"{k}={a!r} -> {b!r}" for k, a, b in diffs[:6])
        more = f" and {len(diffs) - 6} more" if len(diffs) > 6 else ""
        raise UserInputError(path, f"settings differ from the checkpoint's ({shown}{more}); "
                             "resume with its settings, or pass --override-settings true")


def _resume(
    path: str, model: MCSSModel, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None, config: TrainConfig | None = None,
    crop_size: int | None = None,
) -> int:
    """Restore model, optimiser, RNG and (fp16 runs) the loss scale; returns the step.

    With `config`, its settings are first checked against the checkpoint's (_check_resume).
    """
    loaded, meta = load_checkpoint(path)
    state = load_training_state(path)
    if config is not None:
        _check_resume(path, meta, int(state["step"]), config, crop_size or config.crop_size)
    if loaded.config != model.config:
        raise UserInputError(path, "checkpoint model settings differ from the config")
    model.load_state_dict(loaded.state_dict())
    if "optimizer" in state:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise UserInputError(path, f"optimiser state does not fit ({exc})") from None
    if state.get("torch_rng") is not None:
        torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    scaler_state = (state.get("extra") or {}).get("grad_scaler")
    if scaler is not None and isinstance(scaler_state, dict):
        try:
            scaler.load_state_dict(scaler_state)
        except (RuntimeError, KeyError, TypeError) as exc:
            raise UserInputError(path, f"loss-scaler state does not fit ({exc})") from None
    return int(state["step"])


def _progress_bar(total: int, initial: int, enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def set_threads() -> None:
    """Leave torch's default threads unless MCSS_THREADS is set (shared machines)."""
    n = os.environ.get("MCSS_THREADS")
    if n:
        torch.set_num_threads(int(n))


