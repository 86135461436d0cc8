"""Any transformers xLSTM checkpoint as a trainer model (model.py), and multi-token heads written
back in that checkpoint's own layout.

A checkpoint is a directory with config.json and model.safetensors or a sharded
model.safetensors.index.json. The trainer model computes in the single layout, so fused matrices
(`weight_mode: "fused"`) are cut on load in transformers' split order (q, k, v, ogate; igate,
fgate; gate, up), and tied embeddings fill lm_head. Heads are written back fused where the
checkpoint is fused, because the engine reads every block, heads included, in the config's
layout (engine/model/checkpoint_layout.cc).

The export keeps the trunk's files byte for byte (copied or hard-linked) and puts the heads in a
file of their own, joined by a shard index; a file that held earlier heads is rewritten without
them, its trunk tensors unchanged.
"""

import json
import os
import shutil

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import export
import model as M

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
HEADS_FILE = "model-mtp-heads.safetensors"
TRUNK_FILE = "model-trunk.safetensors"  # the name a single-file trunk gets beside the heads file
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json", "chat_template.json")
HEADS_PREFIX = "mtp_heads."

# Fused tensor name -> the single-layout parts it stacks, in order of rows.
_FUSED = {
    "mlstm_layer.qkv_opreact": ("mlstm_layer.q", "mlstm_layer.k", "mlstm_layer.v", "mlstm_layer.ogate_preact"),
    "mlstm_layer.ifgate_preact": ("mlstm_layer.igate_preact", "mlstm_layer.fgate_preact"),
    "ffn.proj_up_gate_z": ("ffn.proj_up_gate", "ffn.proj_up"),
}


def read_config(model_dir: str) -> dict:
    with open(os.path.join(model_dir, CONFIG)) as f:
        return json.load(f)


def tensor_files(model_dir: str) -> dict[str, str]:
    """Tensor name -> file name (beside config.json), from the shard index or the single file."""
    if os.path.exists(os.path.join(model_dir, SINGLE)):
        with safe_open(os.path.join(model_dir, SINGLE), framework="pt") as f:
            return {name: SINGLE for name in f.keys()}
    with open(os.path.join(model_dir, INDEX)) as f:
        return dict(json.load(f)["weight_map"])


def load_tensors(model_dir: str, names) -> dict[str, torch.Tensor]:
    where = tensor_files(model_dir)
    by_file = {}
    for name in names:
        by_file.setdefault(where[name], []).append(name)
    out = {}
    for file, wanted in by_file.items():
        with safe_open(os.path.join(model_dir, file), framework="pt") as f:
            for name in wanted:
                out[name] = f.get_tensor(name)
    return out


def _part_rows(a: M.ModelArgs) -> dict[str, int]:
    return {"mlstm_layer.q": a.qk_dim, "mlstm_layer.k": a.qk_dim, "mlstm_layer.v": a.v_dim,
            "mlstm_layer.ogate_preact": a.v_dim, "mlstm_layer.igate_preact": a.num_heads,
            "mlstm_layer.fgate_preact": a.num_heads, "ffn.proj_up_gate": a.ffn_dim, "ffn.proj_up": a.ffn_dim}


def checkpoint_name(param: str, config: dict) -> tuple[str, int | None]:
    """The checkpoint tensor that holds a trainer parameter, and the part's index in a fused
    tensor (None: the tensor itself)."""
    if config.get("tie_word_embeddings", False) and param == "lm_head.weight":
        return "backbone.embeddings.weight", None
    if config.get("weight_mode", "single") == "fused":
        for fused, parts in _FUSED.items():
            for j, part in enumerate(parts):
                for suffix in (".weight", ".bias"):
                    if param.endswith("." + part + suffix):
                        return param[:-len(part + suffix)] + fused + suffix, j
    return param, None


def _take_part(t: torch.Tensor, a: M.ModelArgs, fused: str, index: int) -> torch.Tensor:
    rows = [_part_rows(a)[p] for p in _FUSED[fused]]
    return t.narrow(0, sum(rows[:index]), rows[index])


def build(a: M.ModelArgs, device, dtype: torch.dtype) -> M.MtpXlstm:
    """An uninitialised model on `device` in `dtype`. Built on the meta device where torch can
    (2.x), so a 7B trunk is neither initialised nor held in fp32 on the way."""
    try:
        with torch.device("meta"):
            model = M.MtpXlstm(a)
    except (AttributeError, TypeError):  # torch 1.x: no device context; small models only
        return M.MtpXlstm(a).to(device=device, dtype=dtype)
    return model.to(dtype).to_empty(device=device)


@torch.no_grad()
def load_into(model: M.MtpXlstm, model_dir: str, config: dict, names) -> None:
    """Copies the checkpoint's values of trainer parameters `names` into the model."""
    params = dict(model.named_parameters())
    sources = {name: checkpoint_name(name, config) for name in names}
    tensors = load_tensors(model_dir, sorted({src for src, _ in sources.values()}))
    for name, (src, index) in sources.items():
        t = tensors[src]
        if index is not None:
            fused = next(f for f in _FUSED if src.endswith(f + ".weight") or src.endswith(f + ".bias"))
            t = _take_part(t, model.a, fused, index)
        if tuple(t.shape) != tuple(params[name].shape):
            raise ValueError(f"{src}: shape {tuple(t.shape)}, expected {tuple(params[name].shape)} for {name}")
        params[name].copy_(t)


def trunk_parameter_names(model: M.MtpXlstm) -> list[str]:
    return [n for n, _ in model.named_parameters() if not n.startswith(HEADS_PREFIX)]


def model_args(config: dict, num_heads: int, head_type: str, trunk_layers: int | None) -> M.ModelArgs:
    """The trainer's arguments for this checkpoint with n heads of the given type (its own
    `mtp`, if any, is replaced)."""
    bare = {k: v for k, v in config.items() if k != "mtp"}
    bare["mtp"] = {"num_heads": num_heads, "head_type": head_type}
    if trunk_layers is not None:
        bare["mtp"]["trunk_layers"] = trunk_layers
    a = export.args_from_config(bare)
    if not 0 <= a.trunk_layers <= a.num_blocks:
        raise ValueError(f"trunk_layers {a.trunk_layers} outside [0, num_blocks = {a.num_blocks}]")
    return a


def load_model(model_dir: str, device="cpu", dtype: torch.dtype = torch.float32) -> M.MtpXlstm:
    """A model with the checkpoint's trunk and its own heads (`mtp` in config.json), if any."""
    config = read_config(model_dir)
    mtp = config.get("mtp") or {"num_heads": 1}
    a = model_args(config, mtp["num_heads"], mtp.get("head_type", "mlstm_block"), mtp.get("trunk_layers"))
    model = build(a, device, dtype)
    load_into(model, model_dir, config, [n for n, _ in model.named_parameters()])
    return model


def head_tensors(model: M.MtpXlstm, config: dict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The heads' tensors under the names and layout the checkpoint's config calls for."""
    fused_mode = config.get("weight_mode", "single") == "fused"
    out = {}
    for i, head in model.mtp_heads.items():
        params = {n: p.detach().to("cpu", dtype) for n, p in head.named_parameters()}
        if fused_mode and isinstance(head, M.Block):
            for fused, parts in _FUSED.items():
                for suffix in (".weight", ".bias"):
                    if parts[0] + suffix in params:
                        out[f"{HEADS_PREFIX}{i}.{fused}{suffix}"] = torch.cat([params.pop(p + suffix) for p in parts])
        for n, t in params.items():
            out[f"{HEADS_PREFIX}{i}.{n}"] = t
    return {n: t.contiguous() for n, t in out.items()}


def _copy(src: str, dst: str, link: bool):
    if os.path.exists(dst):
        os.remove(dst)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another filesystem: copy
    shutil.copyfile(src, dst)


def write_export(src_dir: str, out_dir: str, mtp: dict, heads: dict[str, torch.Tensor], link: bool = False,
                 tokenizer: str | None = None, extra: dict | None = None) -> None:
    """out_dir = src_dir's trunk files untouched + the heads' file + a shard index + config.json
    with `mtp` + the tokenizer files. `extra`: more JSON files to write there (name -> object)."""
    os.makedirs(out_dir, exist_ok=True)
    if os.path.realpath(out_dir) == os.path.realpath(src_dir):
        raise ValueError("the export directory must not be the source checkpoint")
    for stale in os.listdir(out_dir):
        if stale.endswith(".safetensors") or stale == INDEX:
            os.remove(os.path.join(out_dir, stale))
    where = tensor_files(src_dir)
    weight_map = {}
    for file in sorted(set(where.values())):
        names = [n for n, f in where.items() if f == file]
        trunk = [n for n in names if not n.startswith(HEADS_PREFIX)]
        dst_name = TRUNK_FILE if file == SINGLE else file
        if len(trunk) == len(names):
            _copy(os.path.join(src_dir, file), os.path.join(out_dir, dst_name), link)
        elif trunk:  # earlier heads share the file: rewrite it with the trunk tensors alone
            save_file(load_tensors(src_dir, trunk), os.path.join(out_dir, dst_name), metadata={"format": "pt"})
        weight_map.update({n: dst_name for n in trunk})
    save_file(heads, os.path.join(out_dir, HEADS_FILE), metadata={"format": "pt"})
    weight_map.update({n: HEADS_FILE for n in heads})
    total = 0
    for file in set(weight_map.values()):
        with safe_open(os.path.join(out_dir, file), framework="pt") as f:
            for name in f.keys():
                if weight_map.get(name) == file:
                    t = f.get_slice(name)
                    numel = 1
                    for dim in t.get_shape():
                        numel *= dim
                    total += numel * _dtype_bytes(t.get_dtype())
    with open(os.path.join(out_dir, INDEX), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")
    config = read_config(src_dir)
    config["mtp"] = mtp
    with open(os.path.join(out_dir, CONFIG), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    for name in TOKENIZER_FILES:
        src = os.path.join(src_dir, name)
        if name == "tokenizer.json" and tokenizer:
            src = tokenizer
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out_dir, name))
    for name, obj in (extra or {}).items():
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


def _dtype_bytes(code: str) -> int:
    return {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
            "U16": 2}.get(code, 1)
