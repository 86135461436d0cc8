"""Resumable training checkpoints small enough to come back from the GPU machine (files of at
most 16 MB each): fp32 parameters, AdamW moments in bf16 (their relative precision, 2^-8, is far
below the noise of a mini-batch gradient), and trainer_state.json (step, history, settings).
add_heads.py keeps fp32 moments and larger files (`moment_dtype`, `shard_bytes`), so that its
resumed runs are exact.
"""

import json
import os

import torch
from safetensors.torch import load_file, save_file

SHARD_BYTES = 15_000_000
STATE_FILE = "trainer_state.json"


def save(out_dir: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict,
         shard_bytes: int = SHARD_BYTES, moment_dtype: torch.dtype = torch.bfloat16):
    os.makedirs(out_dir, exist_ok=True)
    names = {p: n for n, p in model.named_parameters()}
    tensors = {}
    for p, name in names.items():
        tensors["param." + name] = p.detach().float().cpu()
        st = optimizer.state.get(p)
        if st:
            tensors["exp_avg." + name] = st["exp_avg"].detach().to("cpu", moment_dtype)
            tensors["exp_avg_sq." + name] = st["exp_avg_sq"].detach().to("cpu", moment_dtype)
    shards, current, size = [], {}, 0
    for key in sorted(tensors):
        nbytes = tensors[key].numel() * tensors[key].element_size()
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[key] = tensors[key].contiguous()
        size += nbytes
    shards.append(current)
    for old in os.listdir(out_dir):
        if old.startswith("ckpt-") and old.endswith(".safetensors"):
            os.remove(os.path.join(out_dir, old))
    for i, shard in enumerate(shards):
        save_file(shard, os.path.join(out_dir, f"ckpt-{i:02d}.safetensors"))
    tmp = os.path.join(out_dir, STATE_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, os.path.join(out_dir, STATE_FILE))


def load(ckpt_dir: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    """Restores parameters (and the optimizer's moments and step) in place; returns the state."""
    with open(os.path.join(ckpt_dir, STATE_FILE)) as f:
        state = json.load(f)
    tensors = {}
    for name in sorted(os.listdir(ckpt_dir)):
        if name.startswith("ckpt-") and name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(ckpt_dir, name)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(tensors["param." + name].to(p.device))
    if optimizer is not None:
        sd = optimizer.state_dict()
        index = {}
        params = [p for g in optimizer.param_groups for p in g["params"]]
        by_param = {p: n for n, p in model.named_parameters()}
        for i, p in enumerate(params):
            index[i] = by_param[p]
        sd["state"] = {
            i: {"step": torch.tensor(float(state["optimizer_step"])),
                "exp_avg": tensors["exp_avg." + name].float(),
                "exp_avg_sq": tensors["exp_avg_sq." + name].float()}
            for i, name in index.items() if "exp_avg." + name in tensors
        }
        optimizer.load_state_dict(sd)
    return state
