#!/usr/bin/env python3
"""Golden data for xlserve's CPU engine, computed by Hugging Face transformers' xLSTM.

Each case becomes a directory that `xlserve generate --model DIR` can load: config.json and
model.safetensors (or shards plus model.safetensors.index.json) as `save_pretrained` writes
them, and golden.json with, for each prompt, the logits after its last token and a greedy
continuation. tests/golden/README.md gives the file format, tools/golden/README.md the checks
made here and the transformers quirks worked around.

Usage:
  python3 tools/golden/make_model_golden.py --dry-run        # configs and shapes only, no torch
  python3 tools/golden/make_model_golden.py --out-dir DIR    # needs torch; a GPU if there is one
"""

import argparse
import copy
import dataclasses
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import traceback
import zlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import xLSTMConfig  # noqa: E402  (config classes need no torch)

GENERATOR = "tools/golden/make_model_golden.py"
FORMAT_VERSION = 1
GREEDY_STEPS = 32
MAX_ATTEMPTS = 200
# Greedy runs stuck on one or two tokens say little about the decode path.
MIN_DISTINCT_GREEDY_TOKENS = 8
# A greedy step whose top-2 logits are closer than this could flip between two correct
# implementations: fp32 evaluations of the reference alone differ by up to ~4e-4, and bf16
# weights leave engines more room to differ.
MIN_MARGIN = {"float32": 2e-3, "bfloat16": 2e-2}
# transformers' chunkwise prefill and its step-by-step decode are two fp32 orderings of the
# same sums; more disagreement than this means the reference itself is broken.
SELF_CONSISTENCY_TOL = 1e-2
# A reloaded checkpoint holds bit-identical weights and runs the same kernels.
RELOAD_TOL = 1e-5
# Prompts avoid the special ids (bos 0, pad 1, eos 2 in transformers' xLSTM defaults).
FIRST_ORDINARY_ID = 3


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    weights_dtype: str  # "float32" or "bfloat16"
    config: dict
    long_prompt_len: int = 150
    max_shard_bytes: int | None = None
    # Only for settings transformers may refuse: then the case is skipped, not failed.
    skip_if_config_rejected: bool = False
    summary: str = ""


def _small(vocab, hidden, blocks, heads, chunk, **extra):
    return dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=blocks, num_blocks=blocks,
                num_heads=heads, chunk_size=chunk, **extra)


CASES = [
    Case("f32_base", "float32", _small(256, 64, 2, 2, 64),
         summary="transformers defaults (qk 0.5, v 1.0, ffn 2.667 rounded up to 64, caps 15/30)"),
    Case("bf16_base", "bfloat16", _small(320, 64, 2, 2, 32),
         summary="defaults with bf16 weights"),
    Case("f32_sharded", "float32", _small(256, 48, 2, 2, 16), max_shard_bytes=120_000,
         summary="defaults, d 48 (ffn: 48 * 2.667 = 128.016, which transformers' round-up turns into 128), "
                 "saved in shards with an index"),
    Case("f32_heads4_wide", "float32",
         _small(256, 64, 2, 4, 16, qk_dim_factor=1.0, v_dim_factor=0.5, ffn_proj_factor=1.3,
                ffn_round_up_to_multiple_of=32),
         summary="4 heads, qk factor 1.0, v factor 0.5, ffn 1.3 rounded up to 32"),
    Case("f32_caps_bias", "float32",
         _small(300, 64, 1, 2, 32, gate_soft_cap=5.0, output_logit_soft_cap=8.0, use_bias=True,
                norm_eps=1e-5, eps=1e-4),
         long_prompt_len=141,
         summary="gate cap 5, logit cap 8, biases everywhere, norm_eps 1e-5, eps 1e-4"),
    Case("f32_tied", "float32", _small(256, 64, 1, 2, 16, tie_word_embeddings=True),
         summary="tie_word_embeddings: the checkpoint has no lm_head.weight, the embedding is the head "
                 "(transformers 5.17's xLSTM does not tie by itself; the reference ties by value)"),
    Case("f32_fused", "float32", _small(256, 32, 2, 2, 32, weight_mode="fused"),
         summary="weight_mode fused (qkv_opreact, ifgate_preact, proj_up_gate_z)"),
    Case("bf16_one_head_3blocks", "bfloat16", _small(256, 64, 3, 1, 16), long_prompt_len=133,
         summary="1 head, 3 blocks, bf16 weights"),
    Case("f32_nocap", "float32",
         _small(256, 64, 2, 2, 32, gate_soft_cap=None, output_logit_soft_cap=None),
         skip_if_config_rejected=True,
         summary="gate and output soft caps disabled (null)"),
]


# ---------------------------------------------------------------- shapes (no torch needed)

def round_up(x, multiple):
    """transformers' round_up_to_next_multiple_of, float floor-division included: for a
    fractional x it can round down (48 * 2.667 = 128.016 gives 128), and engines must agree."""
    return int(((x + multiple - 1) // multiple) * multiple)


def layer_dims(cfg):
    """Sizes as transformers' xLSTMLayer and xLSTMFeedForward build them.

    Not cfg.qk_dim / cfg.v_dim: those round up to a multiple of 64, the layers do not.
    """
    qk = int(cfg.hidden_size * cfg.qk_dim_factor)
    v = int(cfg.hidden_size * cfg.v_dim_factor)
    ffn = round_up(cfg.hidden_size * cfg.ffn_proj_factor, cfg.ffn_round_up_to_multiple_of)
    return {"qk_dim": qk, "v_dim": v, "ffn_dim": ffn,
            "qk_head_dim": qk // cfg.num_heads, "v_head_dim": v // cfg.num_heads}


def parameter_count(cfg):
    d, nh, dims = cfg.hidden_size, cfg.num_heads, layer_dims(cfg)
    qk, v, ffn = dims["qk_dim"], dims["v_dim"], dims["ffn_dim"]
    bias = 1 if cfg.use_bias else 0
    per_block = (
        2 * (qk * d + bias * qk) + 2 * (v * d + bias * v)  # q, k, v, ogate
        + 2 * (nh * d + nh)  # igate, fgate (always with bias)
        + v * (1 + bias)  # multihead_norm
        + d * v + bias * d  # out_proj
        + 2 * d * (1 + bias)  # norm_mlstm, norm_ffn
        + 2 * (ffn * d + bias * ffn) + d * ffn + bias * d  # ffn
    )
    head = 0 if cfg.tie_word_embeddings else cfg.vocab_size * d
    return cfg.vocab_size * d + cfg.num_blocks * per_block + d + head


def prompt_lengths(case):
    return [1, 5, case.long_prompt_len]


def build_config(case):
    return xLSTMConfig(**case.config)


def check_case_shape(case, cfg):
    """The long prompt must run transformers' chunkwise kernel on >= 2 chunks and its
    recurrent kernel on a remainder; heads must split the dimensions evenly."""
    n, chunk = case.long_prompt_len, cfg.chunk_size
    if n <= 2 * chunk or n % chunk == 0:
        raise ValueError(f"{case.name}: long prompt {n} is not > 2 chunks of {chunk} plus a remainder")
    dims = layer_dims(cfg)
    for key in ("qk_dim", "v_dim"):
        if dims[key] % cfg.num_heads:
            raise ValueError(f"{case.name}: {key} {dims[key]} not divisible by {cfg.num_heads} heads")


def describe(case, cfg, seed):
    dims = layer_dims(cfg)
    n = case.long_prompt_len
    return (f"{case.summary}. vocab {cfg.vocab_size}, d {cfg.hidden_size}, {cfg.num_blocks} block(s), "
            f"{cfg.num_heads} head(s), qk_dim {dims['qk_dim']}, v_dim {dims['v_dim']}, ffn {dims['ffn_dim']}, "
            f"chunk_size {cfg.chunk_size} (long prompt {n} = {n // cfg.chunk_size} chunks + "
            f"{n % cfg.chunk_size} recurrent steps), weight_mode {cfg.weight_mode}. "
            f"Weights and prompts drawn with seed {seed}.")


def dry_run():
    failures = 0
    total_bytes = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            try:
                cfg = build_config(case)
            except Exception as err:  # transformers validates configs with its own error types
                status = "SKIP" if case.skip_if_config_rejected else "FAIL"
                failures += status == "FAIL"
                print(f"{status} {case.name}: transformers rejects the config: {str(err).splitlines()[0]}")
                continue
            try:
                check_case_shape(case, cfg)
            except ValueError as err:
                failures += 1
                print(f"FAIL {err}")
                continue
            cfg.save_pretrained(os.path.join(tmp, case.name))
            nbytes = parameter_count(cfg) * (4 if case.weights_dtype == "float32" else 2)
            total_bytes += nbytes
            print(f"ok   {case.name}: {layer_dims(cfg)} params {parameter_count(cfg)} ~{nbytes / 1e3:.0f} kB; "
                  f"prompts {prompt_lengths(case)}")
            print(f"     {describe(case, cfg, case_seed(case, 0))}")
    print(f"weights in all: ~{total_bytes / 1e6:.2f} MB")
    return 1 if failures else 0


def case_seed(case, attempt):
    return zlib.crc32(case.name.encode()) % 1_000_000 + attempt


# ---------------------------------------------------------------- reference (torch)

def fp32_json_number(x):
    """Shortest decimal that reads back as the same float32."""
    import numpy as np
    return float(str(np.float32(x)))


def safetensors_header(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return header


class Reference:
    def __init__(self, device):
        import torch
        import transformers
        from transformers import xLSTMForCausalLM
        from transformers.initialization import no_init_weights
        from transformers.models.xlstm.modeling_xlstm import xLSTMCache

        self.torch = torch
        self.transformers = transformers
        self.model_class = xLSTMForCausalLM
        self.cache_class = xLSTMCache
        self.no_init_weights = no_init_weights
        self.device = torch.device(device)
        # Full fp32 products: TF32 would put 1e-3-sized errors into the reference.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        self.precision_note = (f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
                               f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
                               f"float32_matmul_precision={torch.get_float32_matmul_precision()}")

    # -- weights

    def empty_model(self, cfg):
        """Every parameter is overwritten afterwards, so transformers' init is skipped; it also
        cannot run for weight_mode "fused" (its ifgate bias init mixes [heads] and [2 heads])."""
        with self.no_init_weights():
            return self.model_class(cfg)

    def draw_model(self, case, cfg, seed):
        """A model whose logits span several units, unlike transformers' near-zero init."""
        torch = self.torch
        gen = torch.Generator().manual_seed(seed)
        model = self.empty_model(cfg)
        nh = cfg.num_heads

        def normal(shape, std):
            return torch.randn(shape, generator=gen) * std

        def uniform(n, low, high):
            return low + (high - low) * torch.rand(n, generator=gen)

        with torch.no_grad():
            for name, p in model.named_parameters():
                module = name.rsplit(".", 2)[-2]
                if name == "backbone.embeddings.weight":
                    # As the tied head, an embedding that is large next to the blocks' outputs
                    # makes out_norm(x) . e_t win (the residual stream carries e_t): greedy then
                    # repeats its input forever. So it is small, and out_norm scales the logits up.
                    std = 0.5 / math.sqrt(p.shape[1]) if cfg.tie_word_embeddings else 1.0
                    value = normal(p.shape, std)
                elif name == "backbone.out_norm.weight" and cfg.tie_word_embeddings:
                    value = 6.0 * (1.0 + normal(p.shape, 0.2))
                elif "norm" in module:
                    value = 1.0 + normal(p.shape, 0.2) if name.endswith("weight") else normal(p.shape, 0.2)
                # Spread gate biases so that heads forget at different rates and the input gate
                # sometimes outgrows the forget path: the m stabiliser then moves.
                elif module == "igate_preact" and name.endswith("bias"):
                    value = uniform(nh, -4.0, 2.0)
                elif module == "fgate_preact" and name.endswith("bias"):
                    value = uniform(nh, 0.0, 4.0)
                elif module == "ifgate_preact" and name.endswith("bias"):
                    value = torch.cat([uniform(nh, -4.0, 2.0), uniform(nh, 0.0, 4.0)])
                elif module in ("igate_preact", "fgate_preact", "ifgate_preact"):
                    # Pre-activations of a few units, so that the gate soft cap matters.
                    value = normal(p.shape, 2.0 / math.sqrt(p.shape[1]))
                elif name == "lm_head.weight":
                    value = normal(p.shape, 3.0 / math.sqrt(p.shape[1]))
                elif name.endswith("weight"):
                    value = normal(p.shape, 1.0 / math.sqrt(p.shape[1]))
                elif name.endswith("bias"):
                    value = normal(p.shape, 0.1)
                else:
                    raise ValueError(f"{case.name}: no rule to draw parameter {name}")
                p.copy_(value)
                if case.weights_dtype == "bfloat16":
                    # The reference runs in fp32 on exactly the values the bf16 checkpoint holds.
                    p.copy_(p.to(torch.bfloat16).to(torch.float32))
            if cfg.tie_word_embeddings:
                # transformers' xLSTM does not tie (no _tied_weights_keys); do it by value.
                model.lm_head.weight.copy_(model.backbone.embeddings.weight)
        prompts = [torch.randint(FIRST_ORDINARY_ID, cfg.vocab_size, (n,), generator=gen).tolist()
                   for n in prompt_lengths(case)]
        return model.to(self.device).eval(), prompts

    def check_dims(self, case, cfg, model):
        """The cache and the descriptions use layer_dims; make sure it is what transformers built."""
        dims = layer_dims(cfg)
        layer, ffn = model.backbone.blocks[0].mlstm_layer, model.backbone.blocks[0].ffn
        built = {"qk_dim": layer.qk_dim, "v_dim": layer.v_dim, "ffn_dim": ffn.up_proj_dim}
        if any(built[k] != dims[k] for k in built):
            raise AssertionError(f"{case.name}: transformers built {built}, layer_dims says {dims}")

    # -- forward passes

    def new_cache(self, model):
        """transformers sizes its cache from cfg.qk_head_dim, which rounds qk_dim up to a
        multiple of 64 while the layers do not; for small models the two differ, so the
        cache is allocated here with the layers' sizes (zeros, as transformers starts)."""
        torch, cfg = self.torch, model.config
        dims = layer_dims(cfg)
        cache = self.cache_class(cfg, max_batch_size=1, dtype=torch.float32, device=self.device)
        cache.rnn_state = {
            layer: (
                torch.zeros(1, cfg.num_heads, dims["qk_head_dim"], dims["v_head_dim"], device=self.device),
                torch.zeros(1, cfg.num_heads, dims["qk_head_dim"], device=self.device),
                torch.zeros(1, cfg.num_heads, 1, device=self.device),
            )
            for layer in range(cfg.num_blocks)
        }
        return cache

    def greedy(self, model, prompt_ids, min_margin=0.0, banned_token=None):
        """Prefill with the cache, then one token at a time through it. Returns None as soon
        as a step's top-2 margin is under min_margin or it picks banned_token."""
        torch = self.torch
        with torch.no_grad():
            ids = torch.tensor([prompt_ids], device=self.device)
            out = model(input_ids=ids, cache_params=self.new_cache(model), use_cache=True)
            logits = out.logits[0, -1].float()
            tokens, margins, step_logits = [], [], []
            for step in range(GREEDY_STEPS):
                top = torch.topk(logits, 2)
                tokens.append(int(top.indices[0]))
                margins.append(float(top.values[0] - top.values[1]))
                if margins[-1] < min_margin or tokens[-1] == banned_token:
                    return None
                step_logits.append(logits)
                if step + 1 < GREEDY_STEPS:
                    step_ids = torch.tensor([[tokens[-1]]], device=self.device)
                    out = model(input_ids=step_ids, cache_params=out.cache_params, use_cache=True)
                    logits = out.logits[0, -1].float()
        return tokens, margins, torch.stack(step_logits)

    def full_logits(self, model, ids):
        """One forward over all ids, no cache: the chunkwise kernel plus its remainder."""
        torch = self.torch
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids], device=self.device), use_cache=False)
        return out.logits[0].float()

    # -- one case

    def draw_lively_case(self, case, cfg, log):
        threshold = MIN_MARGIN[case.weights_dtype]
        eos = cfg.eos_token_id
        for attempt in range(MAX_ATTEMPTS):
            seed = case_seed(case, attempt)
            model, prompts = self.draw_model(case, cfg, seed)
            if attempt == 0:
                self.check_dims(case, cfg, model)
            runs = []
            for prompt in prompts:
                # A greedy run through eos would stop early in a server that honours eos.
                result = self.greedy(model, prompt, min_margin=threshold, banned_token=eos)
                if result is None:
                    break
                tokens, margins, step_logits = result
                if len(set(tokens)) < MIN_DISTINCT_GREEDY_TOKENS:
                    break
                runs.append({"prompt": prompt, "tokens": tokens, "margins": margins, "step_logits": step_logits})
            else:
                worst = min(min(r["margins"]) for r in runs)
                log(f"  seed {seed} accepted after {attempt + 1} draw(s); min margin {worst:.4g}")
                return model, seed, runs
        raise RuntimeError(f"{case.name}: no seed in {MAX_ATTEMPTS} gave margins >= {threshold}, no eos and "
                           f">= {MIN_DISTINCT_GREEDY_TOKENS} distinct greedy tokens")

    def check_self_consistency(self, case, model, runs, log):
        for r in runs:
            prompt, tokens = r["prompt"], r["tokens"]
            full = self.full_logits(model, prompt + tokens[:-1])[len(prompt) - 1:]
            argmax = full.argmax(dim=-1).tolist()
            if argmax != tokens:
                raise AssertionError(f"{case.name}: no-cache argmax {argmax} != cached greedy {tokens}")
            if not bool(self.torch.isfinite(full).all()):
                raise AssertionError(f"{case.name}: non-finite logits")
            diff = float((full - r["step_logits"]).abs().max())
            r["cache_vs_full"] = diff
            if not diff <= SELF_CONSISTENCY_TOL:
                raise AssertionError(f"{case.name}: cached vs full logits differ by {diff}")
            spread = r["step_logits"][0]
            log(f"  prompt len {len(prompt)}: last logits min {float(spread.min()):.3f} max "
                f"{float(spread.max()):.3f} std {float(spread.std()):.3f}; min margin {min(r['margins']):.4g}; "
                f"cache vs full max |diff| {diff:.3g}; greedy {tokens[:8]}...")
            if float(spread.max() - spread.min()) < 4.0:
                raise AssertionError(f"{case.name}: logits span under 4 units; the weights are not lively")

    def check_against_cpu(self, case, model, runs, log):
        """The same forward on the CPU: a gap near 1e-3 would mean TF32 or another reduced
        precision crept into the GPU reference."""
        if self.device.type == "cpu":
            return 0.0
        cpu_model = copy.deepcopy(model).to("cpu")
        torch = self.torch
        worst = 0.0
        for r in runs:
            ids = r["prompt"] + r["tokens"][:-1]
            with torch.no_grad():
                cpu = cpu_model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
            worst = max(worst, float((cpu - self.full_logits(model, ids).cpu()).abs().max()))
        log(f"  gpu vs cpu max |diff| {worst:.3g}" + ("  WARNING: above 1e-3" if worst > 1e-3 else ""))
        return worst

    def save(self, case, cfg, model, out_dir):
        torch = self.torch
        to_save = copy.deepcopy(model).to("cpu")
        if case.weights_dtype == "bfloat16":
            to_save = to_save.to(torch.bfloat16)
        kwargs = {}
        if case.max_shard_bytes:
            kwargs["max_shard_size"] = case.max_shard_bytes
        if cfg.tie_word_embeddings:
            kwargs["state_dict"] = {k: v for k, v in to_save.state_dict().items() if k != "lm_head.weight"}
        to_save.save_pretrained(out_dir, **kwargs)

    def check_files(self, case, cfg, out_dir, log):
        index = os.path.join(out_dir, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        else:
            shards = ["model.safetensors"]
        names = {}
        for shard in shards:
            for name, info in safetensors_header(os.path.join(out_dir, shard)).items():
                names[name] = info["dtype"]
        want = "F32" if case.weights_dtype == "float32" else "BF16"
        wrong = {n: d for n, d in names.items() if d != want}
        if wrong:
            raise AssertionError(f"{case.name}: tensors not {want}: {wrong}")
        if case.max_shard_bytes and len(shards) < 2:
            raise AssertionError(f"{case.name}: expected >= 2 shards, got {shards}")
        if ("lm_head.weight" in names) == bool(cfg.tie_word_embeddings):
            raise AssertionError(f"{case.name}: lm_head.weight presence does not match tie_word_embeddings")
        with open(os.path.join(out_dir, "config.json")) as f:
            saved_dtype = json.load(f).get("dtype")
        if saved_dtype != case.weights_dtype:
            raise AssertionError(f"{case.name}: config.json dtype {saved_dtype!r}, want {case.weights_dtype}")
        log(f"  files: {sorted(os.listdir(out_dir))}; {len(names)} tensors in {len(shards)} shard(s)")
        return shards

    def load_by_hand(self, out_dir, shards):
        """config.json through transformers, tensors straight from the safetensors files."""
        from safetensors.torch import load_file
        torch = self.torch
        model = self.empty_model(xLSTMConfig.from_pretrained(out_dir))
        state = {}
        for shard in shards:
            state.update(load_file(os.path.join(out_dir, shard)))
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
        return model

    def check_reload(self, case, cfg, model, runs, out_dir, shards, log):
        torch = self.torch
        try:
            loaded, info = self.model_class.from_pretrained(out_dir, dtype=torch.float32, output_loading_info=True)
        except RuntimeError as err:
            if cfg.weight_mode != "fused":
                raise
            # Same init bug as in empty_model: from_pretrained runs _init_weights on every module.
            log(f"  reload: transformers' from_pretrained fails for weight_mode fused "
                f"({str(err).splitlines()[0]}); loading the state dict by hand")
            loaded, info = self.load_by_hand(out_dir, shards), {}
        missing = set(info.get("missing_keys", []))
        if cfg.tie_word_embeddings:
            log(f"  reload: transformers reports missing {sorted(missing)}; tying lm_head to the embedding")
            with torch.no_grad():
                loaded.lm_head.weight.copy_(loaded.backbone.embeddings.weight)
            missing.discard("lm_head.weight")
        if missing or info.get("unexpected_keys") or info.get("mismatched_keys"):
            raise AssertionError(f"{case.name}: reload missing {missing}, unexpected {info.get('unexpected_keys')}, "
                                 f"mismatched {info.get('mismatched_keys')}")
        loaded = loaded.to(self.device).eval()
        worst = 0.0
        for r in runs:
            ids = r["prompt"] + r["tokens"][:-1]
            diff = float((self.full_logits(loaded, ids) - self.full_logits(model, ids)).abs().max())
            worst = max(worst, diff)
        if not worst <= RELOAD_TOL:
            raise AssertionError(f"{case.name}: reloaded checkpoint's logits differ by {worst}")
        log(f"  reload: from_pretrained logits match (max |diff| {worst:.3g})")

    def write_golden(self, case, cfg, seed, runs, out_dir):
        golden = {
            "format_version": FORMAT_VERSION,
            "generator": GENERATOR,
            "transformers_version": self.transformers.__version__,
            "torch_version": self.torch.__version__,
            "case": case.name,
            "description": describe(case, cfg, seed),
            "weights_dtype": case.weights_dtype,
            "prompts": [
                {
                    "prompt_ids": r["prompt"],
                    "last_logits": [fp32_json_number(x) for x in r["step_logits"][0].cpu().tolist()],
                    "greedy_tokens": r["tokens"],
                    "min_greedy_margin": fp32_json_number(min(r["margins"])),
                }
                for r in runs
            ],
        }
        with open(os.path.join(out_dir, "golden.json"), "w") as f:
            json.dump(golden, f, separators=(",", ":"))
            f.write("\n")

    def make_case(self, case, out_root, log):
        cfg = build_config(case)
        check_case_shape(case, cfg)
        model, seed, runs = self.draw_lively_case(case, cfg, log)
        self.check_self_consistency(case, model, runs, log)
        gpu_vs_cpu = self.check_against_cpu(case, model, runs, log)
        out_dir = os.path.join(out_root, case.name)
        shutil.rmtree(out_dir, ignore_errors=True)
        self.save(case, cfg, model, out_dir)
        shards = self.check_files(case, cfg, out_dir, log)
        self.check_reload(case, cfg, model, runs, out_dir, shards, log)
        self.write_golden(case, cfg, seed, runs, out_dir)
        return {"case": case.name, "seed": seed,
                "min_margins": [min(r["margins"]) for r in runs],
                "cache_vs_full": max(r["cache_vs_full"] for r in runs),
                "gpu_vs_cpu": gpu_vs_cpu,
                "bytes": sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))}


def generate(out_root, device, only):
    import torch
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ref = Reference(device)

    def log(msg):
        print(msg, flush=True)

    log(f"transformers {ref.transformers.__version__}, torch {torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""))
    log(f"precision: {ref.precision_note}")
    os.makedirs(out_root, exist_ok=True)
    done, skipped, failed = [], [], []
    for case in CASES:
        if only and case.name not in only:
            continue
        start = time.time()
        log(f"== {case.name}")
        try:
            build_config(case)
        except Exception as err:  # transformers validates configs with its own error types
            if case.skip_if_config_rejected:
                skipped.append(case.name)
                log(f"  SKIPPED: transformers rejects the config: {str(err).splitlines()[0]}")
                continue
        try:
            done.append(ref.make_case(case, out_root, log))
            log(f"  done in {time.time() - start:.1f} s")
        except Exception:
            failed.append(case.name)
            log(f"  FAILED:\n{traceback.format_exc()}")
            shutil.rmtree(os.path.join(out_root, case.name), ignore_errors=True)
    log("== summary")
    for d in done:
        log(f"  {d['case']}: seed {d['seed']}, min margins {[f'{m:.4g}' for m in d['min_margins']]}, "
            f"cache vs full {d['cache_vs_full']:.3g}, gpu vs cpu {d['gpu_vs_cpu']:.3g}, {d['bytes'] / 1e3:.0f} kB")
    total = sum(d["bytes"] for d in done)
    log(f"  total {total / 1e6:.2f} MB; skipped {skipped}; failed {failed}")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                          "tests", "golden", "models"))
    parser.add_argument("--device", default=None, help="torch device; default cuda if available, else cpu")
    parser.add_argument("--dry-run", action="store_true", help="build and check the configs only (no torch)")
    parser.add_argument("--case", action="append", default=[], help="only this case (repeatable)")
    args = parser.parse_args()
    if args.dry_run:
        return dry_run()
    return generate(os.path.abspath(args.out_dir), args.device, set(args.case))


if __name__ == "__main__":
    sys.exit(main())
