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
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tiny_checkpoints  # noqa: E402
import tune_heads_on_policy as T  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
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
    """A tiny checkpoint (tiny_checkpoints.py) with three draft heads and its tokenizer."""
    model = tiny_checkpoints.tiny_model(mtp_num_heads=4)
    with torch.no_grad():
        # A trunk that passes the embedding through and peaked next-token distributions: greedy
        # decoding then follows token -> its argmax successor into a short cycle, text whose next
        # tokens heads can learn to draft in a few steps, as they do on a trained model's loops.
        for name, p in model.backbone.blocks.named_parameters():
            if name.endswith(("out_proj.weight", "proj_down.weight")):
                p.zero_()
        model.lm_head.weight.mul_(10)
    d = tiny_checkpoints.save_checkpoint(model, str(tmp / "model"),
                                         mtp={"num_heads": 4, "head_type": "mlstm_block", "trunk_layers": 2})
    tiny_checkpoints.byte_tokenizer(os.path.join(d, "tokenizer.json"))
    return d


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


def test_bad_arguments_fail_before_any_work(checkpoint, code, tmp, capsys):
    binary = xlserve_binary()
    base = {"--model": checkpoint, "--prompts-from": code, "--xlserve": binary, "--work": str(tmp / "w"),
            "--out": str(tmp / "o")}
    for change, message in [({"--out": checkpoint}, "--out must not be the source checkpoint"),
                            ({"--xlserve": str(tmp / "none")}, "not an executable file"),
                            ({"--model": code}, "no config.json"),
                            ({"--prompts-from": str(tmp / "none")}, "not a directory")]:
        argv = [x for k, v in {**base, **change}.items() for x in (k, v)]
        with pytest.raises(SystemExit):
            T.parse_args(argv)
        assert message in capsys.readouterr().err
