"""Hugging Face xLSTM checkpoint + multi-token heads (DESIGN §2) from a trainer model,
and back.

The directory holds config.json, as transformers' xLSTMConfig writes it (plus the keys the engine
reads, even where they hold defaults) and `"mtp": {"num_heads", "head_type": "mlstm_block", "trunk_layers"}`, and one
model.safetensors with the HF tensor names and `mtp_heads.{i}.<block tensor names>` for the
extra heads. transformers' xLSTMForCausalLM loads it unchanged and ignores the mtp tensors.
"""

import json
import os

import torch
from safetensors.torch import save_file

import model as M

_ARG_KEYS = ["vocab_size", "hidden_size", "num_blocks", "num_heads", "qk_dim_factor", "v_dim_factor",
             "ffn_proj_factor", "ffn_round_up_to_multiple_of", "gate_soft_cap", "output_logit_soft_cap",
             "norm_eps", "eps", "chunk_size"]


def hf_config(a: M.ModelArgs, bos_eos_pad: int, dtype: torch.dtype):
    from transformers import xLSTMConfig

    kwargs = {key: getattr(a, key) for key in _ARG_KEYS}
    config = xLSTMConfig(**kwargs, num_hidden_layers=a.num_blocks, embedding_dim=a.hidden_size,
                         use_bias=False, weight_mode="single", tie_word_embeddings=False,
                         bos_token_id=bos_eos_pad, eos_token_id=bos_eos_pad, pad_token_id=bos_eos_pad)
    config.architectures = ["xLSTMForCausalLM"]
    config.dtype = dtype
    return config


# Keys the engine reads (DESIGN §2) are written even where they equal transformers'
# defaults, so the file does not depend on the defaults of whichever version reads it.
_EXPLICIT_KEYS = _ARG_KEYS + ["num_hidden_layers", "embedding_dim", "use_bias", "weight_mode",
                              "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id"]


def export(model: M.MtpXlstm, out_dir: str, dtype: torch.dtype = torch.bfloat16, bos_eos_pad: int = 0):
    """Writes config.json and model.safetensors (weights in `dtype`) into out_dir."""
    a = model.a
    os.makedirs(out_dir, exist_ok=True)
    hf = hf_config(a, bos_eos_pad, dtype)
    config = json.loads(hf.to_json_string(use_diff=True))  # what save_pretrained writes
    full = hf.to_dict()
    config.update({key: full[key] for key in _EXPLICIT_KEYS})
    config["mtp"] = {"num_heads": a.mtp_num_heads, "head_type": "mlstm_block", "trunk_layers": a.num_blocks - 1}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    tensors = {name: t.detach().to("cpu", dtype).contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})


def args_from_config(config: dict) -> M.ModelArgs:
    """Model arguments of a config.json; the tensor layout (fused, tied) is the loader's business
    (hf_checkpoint.py)."""
    mtp = config.get("mtp") or {"num_heads": 1}
    if mtp.get("head_type", "mlstm_block") not in ("mlstm_block", "linear"):
        raise ValueError(f"mtp head_type {mtp['head_type']!r} is not supported")
    if config.get("add_out_norm", True) is not True:
        raise ValueError("add_out_norm false is not supported")
    kwargs = {key: config[key] for key in _ARG_KEYS}
    return M.ModelArgs(**kwargs, mtp_num_heads=mtp["num_heads"], use_bias=bool(config.get("use_bias", False)),
                       mtp_head_type=mtp.get("head_type", "mlstm_block"), mtp_trunk_layers=mtp.get("trunk_layers"))


def load(model_dir: str, device: str = "cpu") -> M.MtpXlstm:
    """A float32 trainer model from an exported directory (bf16 weights are upcast exactly), or
    from any transformers xLSTM checkpoint (sharded, fused, tied: hf_checkpoint.py)."""
    import hf_checkpoint  # it imports this module

    return hf_checkpoint.load_model(model_dir, device, torch.float32)


def logits_any_length(model: M.MtpXlstm, ids: torch.Tensor, heads=None) -> list[torch.Tensor]:
    """Like model(ids, heads) for any length: pads on the right to a whole number of chunks
    (the model is causal, so padding changes nothing before it) and cuts the padding off."""
    S = ids.shape[1]
    L = model.a.chunk_size
    padded = -(-S // L) * L
    if padded != S:
        ids = torch.cat([ids, ids.new_zeros(ids.shape[0], padded - S)], 1)
    return [lg[:, :S] for lg in model(ids, heads)]
