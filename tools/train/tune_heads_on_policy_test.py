"""CPU tests of tune_heads_on_policy.py on a tiny checkpoint with four heads: which files give
prompts, continuations from the xlserve binary (and their cache), heads that learn while every
other tensor stays bit-identical, and an export that speculates losslessly.

Run: python3 -m pytest tools/train/tune_heads_on_policy_test.py (XLSERVE=path/to/xlserve; Bazel's
//tools/train:tune_heads_on_policy_test passes it)."""

import json
import os
import random
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as M  # noqa: E402
import tune_heads_on_policy as T  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN_CONFIG = os.path.join(ROOT, "tests", "golden", "models", "f32_base", "config.json")
WORDS = "def return self import for while if else print range len list dict yield class".split()


def xlserve_binary():
    path = os.environ.get("XLSERVE") or os.path.join(ROOT, "bazel-bin", "xlserve")
    if not os.path.exists(path):
        pytest.fail("no xlserve binary: set XLSERVE (Bazel's tune_heads_on_policy_test passes it)")
    return path


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("on_policy")


@pytest.fixture(scope="module")
def checkpoint(tmp):
    """The trainer's model with three draft heads and random weights whose gates move, saved as
    transformers writes an xLSTM plus the `mtp` key, with a byte-level tokenizer of 256 ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    a = M.ModelArgs(vocab_size=256, hidden_size=48, num_blocks=3, num_heads=2, qk_dim_factor=0.5,
                    ffn_proj_factor=2.0, ffn_round_up_to_multiple_of=32, chunk_size=16, mtp_num_heads=4)
    torch.manual_seed(3)
    model = M.MtpXlstm(a)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gate_preact" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 if p.ndim == 1 else 0.3))
        # A trunk that passes the embedding through and peaked next-token distributions: greedy
        # decoding then follows token -> its argmax successor into a short cycle, text whose next
        # tokens heads can learn to draft in a few steps, as they do on a trained model's loops.
        for name, p in model.backbone.blocks.named_parameters():
            if name.endswith(("out_proj.weight", "proj_down.weight")):
                p.zero_()
        model.lm_head.weight.mul_(10)
    d = tmp / "model"
    d.mkdir()
    with open(GOLDEN_CONFIG) as f:
        config = json.load(f)
    config.update(vocab_size=256, hidden_size=48, embedding_dim=48, num_blocks=3, num_hidden_layers=3,
                  num_heads=2, qk_dim_factor=0.5, ffn_proj_factor=2.0, ffn_round_up_to_multiple_of=32,
                  chunk_size=16, eos_token_id=10, bos_token_id=10, pad_token_id=10,
                  mtp={"num_heads": 4, "head_type": "mlstm_block", "trunk_layers": 2})
    (d / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "model.safetensors"),
              metadata={"format": "pt"})
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["x"], trainers.BpeTrainer(vocab_size=256, special_tokens=[], show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(d / "tokenizer.json"))
    return str(d)


@pytest.fixture(scope="module")
def code(tmp):
    """Packages of .py files: two to train on (one holding a copy of a held-out file and a
    duplicate of its neighbour), one held out."""
    r = random.Random(0)
    root = tmp / "site"
    for pkg in ("alpha", "beta", "held"):
        (root / pkg).mkdir(parents=True)
    for i in range(90):
        (root / "alpha" / f"m{i}.py").write_text(" ".join(r.choice(WORDS) for _ in range(120)))
    held = " ".join(r.choice(WORDS) for _ in range(120))
    (root / "held" / "h.py").write_text(held)
    (root / "beta" / "copy_of_held.py").write_text(held)
    (root / "beta" / "same_as_m0.py").write_text((root / "alpha" / "m0.py").read_text())
    (root / "beta" / "notes.txt").write_text("not python")
    return str(root)


def test_source_files_keep_held_out_packages_and_their_copies_out(code):
    files = T.source_files([code], {"held"})
    assert files == [os.path.join(code, "alpha", f) for f in sorted(os.listdir(os.path.join(code, "alpha")))]


def generate(binary, model_dir, speculation):
    out = subprocess.run([binary, "generate", "--model", model_dir, "--prompt-ids", "5,17,30,41,60,2,9",
                          "--max-tokens", "40", "--speculation", speculation, "--device", "cpu", "--print-json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_tunes_only_the_heads_from_greedy_continuations(checkpoint, code, tmp, capsys):
    binary = xlserve_binary()
    work, out = str(tmp / "work"), str(tmp / "tuned")
    args = ["--model", checkpoint, "--prompts-from", code, "--exclude-packages", "held", "--xlserve", binary,
            "--work", work, "--out", out, "--prompts", "80", "--prompt-tokens", "16", "--new-tokens", "32",
            "--epochs", "10", "--batch", "4", "--lr", "3e-3", "--warmup-steps", "5", "--threads", "1",
            "--log-every", "100"]
    T.main(args)
    with open(os.path.join(work, "continuations.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 80 and all(len(r["prompt"]) == 16 and len(r["continuation"]) == 32 for r in rows)
    # The continuations are the engine's greedy tokens.
    first = subprocess.run([binary, "generate", "--model", checkpoint, "--prompt-ids",
                            ",".join(map(str, rows[0]["prompt"])), "--max-tokens", "32", "--speculation", "off",
                            "--device", "cpu", "--ignore-eos", "--print-json"], capture_output=True, text=True)
    assert json.loads(first.stdout)["tokens"] == rows[0]["continuation"]

    with open(os.path.join(out, "on_policy_tuning.json")) as f:
        report = json.load(f)
    before, after = report["before"], report["after"]
    assert report["windows"] == 80 and report["held_out_windows"] == 8 and report["steps"] == 180
    assert all(b < a for a, b in zip(before["loss"], after["loss"])), (before["loss"], after["loss"])
    assert after["tokens_per_step"][-1] > before["tokens_per_step"][-1]

    source, tuned = load_file(os.path.join(checkpoint, "model.safetensors")), \
        load_file(os.path.join(out, "model.safetensors"))
    assert source.keys() == tuned.keys()
    changed = {n for n in source if not torch.equal(source[n], tuned[n])}
    assert changed and all(n.startswith("mtp_heads.") for n in changed)
    assert all(tuned[n].dtype == source[n].dtype for n in source)
    for name in ("config.json", "tokenizer.json"):
        with open(os.path.join(checkpoint, name)) as a, open(os.path.join(out, name)) as b:
            assert a.read() == b.read()

    plain, spec, original = generate(binary, out, "off"), generate(binary, out, "on"), generate(binary, checkpoint, "off")
    assert spec["tokens"] == plain["tokens"] == original["tokens"]  # lossless, and the trunk unchanged
    assert spec["drafted_tokens"] > 0

    # A rerun takes every continuation from the cache.
    capsys.readouterr()
    T.main(args[:-2] + ["--epochs", "1"])
    assert "continuations: 80 cached, 0 to generate" in capsys.readouterr().out


def test_refuses_to_write_over_its_source(checkpoint):
    with pytest.raises(SystemExit):
        T.parse_args(["--model", checkpoint, "--prompts-from", ".", "--xlserve", "x", "--work", "w",
                      "--out", checkpoint])
