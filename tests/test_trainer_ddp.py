"""Two-process DistributedDataParallel run on CPU (gloo) under torchrun: both ranks agree."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r'''
import json, os, sys
import torch
import torch.distributed as dist
torch.set_num_threads(1)
from trainer.config import TrainConfig
from trainer.fake import fake_sequences
from trainer.train import fit

out = sys.argv[1]
train = fake_sequences(["S1", "S5", "S6"], frames=30, cameras=3, size=32)
config = TrainConfig(steps=4, width=8, embedding_dim=16, pose_hidden=32, orientation_hidden=16,
                     labelled_subjects=["S1"], sequences_per_batch=2, instants_per_sequence=3,
                     views_per_instant=2, labelled_batch=8, tau=5, log_every=1, checkpoint_every=0,
                     triplet_log_every=0, run_dir=os.path.join(out, "runs"), run_id="ddp",
                     device="cpu")
result = fit(config, None, sequences=train, progress=False)
rank = dist.get_rank()
params = {k: v.detach().double().flatten()[:50].tolist()
          for k, v in result.model.named_parameters()}
with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
    json.dump({"world": dist.get_world_size(), "step": result.step, "status": result.status,
               "checkpoint": str(result.checkpoint), "params": params,
               "losses": [h["loss"] for h in result.history]}, fh)
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_two_process_gloo_run_agrees(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(root),
                               "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["step"] == 4 and r["status"] == "done" for r in ranks)
    assert ranks[0]["checkpoint"] != "None" and ranks[1]["checkpoint"] == "None"
    # parameters are identical on both ranks after training (DDP averaged the gradients) ...
    assert ranks[0]["params"] == ranks[1]["params"]
    # ... although each rank saw its own batches
    assert ranks[0]["losses"] != ranks[1]["losses"]
