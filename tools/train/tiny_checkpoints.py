"""Tiny xLSTM checkpoints for the trainer's CPU tests: the trainer's model with random weights
whose gates move, saved as transformers writes an xLSTM (the golden f32_base config.json with
this model's sizes), and a byte-level tokenizer whose 256 ids every tiny vocabulary holds."""

import json
import os

import torch
from safetensors.torch import save_file

import model as M

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN_CONFIG = os.path.join(ROOT, "tests", "golden", "models", "f32_base", "config.json")
SIZES = dict(vocab_size=256, hidden_size=48, num_blocks=3, num_heads=2, qk_dim_factor=0.5, ffn_proj_factor=2.0,
             ffn_round_up_to_multiple_of=32, chunk_size=16)


def tiny_model(mtp_num_heads: int = 1) -> M.MtpXlstm:
    torch.manual_seed(3)
    model = M.MtpXlstm(M.ModelArgs(**SIZES, mtp_num_heads=mtp_num_heads))
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gate_preact" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 if p.ndim == 1 else 0.3))
    return model


def save_checkpoint(model: M.MtpXlstm, directory: str, **config) -> str:
    """config.json (plus `config`'s keys) and model.safetensors in `directory`."""
    os.makedirs(directory, exist_ok=True)
    with open(GOLDEN_CONFIG) as f:
        full = json.load(f)
    full.update(SIZES, embedding_dim=SIZES["hidden_size"], num_hidden_layers=SIZES["num_blocks"], eos_token_id=10,
                bos_token_id=10, pad_token_id=10, **config)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(full, f, indent=2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(directory, "model.safetensors"),
              metadata={"format": "pt"})
    return directory


def byte_tokenizer(path: str) -> str:
    """Byte-level BPE with exactly 256 tokens (the bytes, no merges), saved at `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["x"], trainers.BpeTrainer(vocab_size=256, special_tokens=[], show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    assert tok.get_vocab_size() == 256
    tok.save(path)
    return path
