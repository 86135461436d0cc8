"""CPU tests of add_heads.py on tiny checkpoints: the trunk read from any transformers layout,
head shapes and layout, a frozen trunk that stays bit-identical, exact resumption, the data
stream, and exports that `xlserve generate` loads and speculates with losslessly.

Run: python3 -m pytest tools/train/add_heads_test.py (XLSERVE=path/to/xlserve for the engine
checks; Bazel's //tools/train:add_heads_test passes it)."""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import add_heads  # noqa: E402
import checkpoint  # noqa: E402
import export  # noqa: E402
import hf_checkpoint  # noqa: E402
import text_stream  # noqa: E402
import tiny_checkpoints  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(ROOT, "tests", "golden", "models")
WORDS = "def return self import for while if else print range len list dict yield class".split()


def xlserve_binary():
    path = os.environ.get("XLSERVE") or os.path.join(ROOT, "bazel-bin", "xlserve")
    return path if os.path.exists(path) else None


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("add_heads")


@pytest.fixture(scope="module")
def tokenizer(tmp):
    return tiny_checkpoints.byte_tokenizer(str(tmp / "tokenizer.json"))


def sentence(r, n):
    return " ".join(r.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="module")
def corpus(tmp):
    """Plain-text files, a JSONL file (with a line that is not JSON and one without text) and a
    held-out folder."""
    r = random.Random(0)
    train, held = tmp / "train", tmp / "held"
    (train / "sub").mkdir(parents=True)
    held.mkdir()
    for i in range(3):
        (train / f"part{i}.txt").write_text("\n".join(sentence(r, 10) for _ in range(150)))
    with open(train / "sub" / "docs.jsonl", "w") as f:
        for i in range(100):
            f.write(json.dumps({"text": sentence(r, 30), "id": i}) + "\n")
        f.write("not json\n" + json.dumps({"other": 1}) + "\n")
    (train / "sub" / "skip.bin").write_bytes(b"\x00\x01")
    (held / "held.txt").write_text("\n".join(sentence(r, 10) for _ in range(150)))
    return str(train), str(held)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp):
    """A trunk made here (tiny_checkpoints.py), without heads."""
    return tiny_checkpoints.save_checkpoint(tiny_checkpoints.tiny_model(), str(tmp / "tiny"))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("case", ["f32_base", "f32_fused", "f32_tied", "f32_caps_bias", "f32_sharded", "bf16_base"])
def test_trunk_reproduces_transformers(case):
    """The trunk read from each layout transformers writes gives transformers' logits (golden)."""
    d = os.path.join(GOLDEN, case)
    model = hf_checkpoint.load_model(d).eval()
    with open(os.path.join(d, "golden.json")) as f:
        golden = json.load(f)
    for p in golden["prompts"]:
        with torch.no_grad():
            got = export.logits_any_length(model, torch.tensor([p["prompt_ids"]]), heads=[0])[0][0, -1]
        # fp32 maths over the same weights: only the summation order differs (golden_model_test: 1e-4).
        assert (got - torch.tensor(p["last_logits"])).abs().max() < 1e-4


def args_for(model_dir, tokenizer, out, *extra):
    return add_heads.parse_args(["--model", model_dir, "--tokenizer", tokenizer, "--out", out, *extra])


@pytest.mark.parametrize("case,head_type", [("f32_base", "mlstm_block"), ("f32_fused", "mlstm_block"),
                                            ("f32_caps_bias", "linear"), ("f32_tied", "mlstm_block")])
def test_head_shapes_and_layout(case, head_type, tokenizer, tmp):
    d = os.path.join(GOLDEN, case)
    config = hf_checkpoint.read_config(d)
    args = args_for(d, tokenizer, str(tmp / "unused"), "--num-heads", "3", "--head-type", head_type, "--seq", "64")
    model, dtype = add_heads.build_model(args, config, torch.device("cpu"))
    B, S, V, D = 2, 64, config["vocab_size"], config["hidden_size"]
    logits = model(torch.randint(0, V, (B, S)))
    assert [tuple(lg.shape) for lg in logits] == [(B, S, V)] * 3
    heads = hf_checkpoint.head_tensors(model, config, dtype)
    trunk = hf_checkpoint.tensor_files(d)
    with torch.no_grad():
        stored = hf_checkpoint.load_tensors(d, list(trunk))
    for i in (1, 2):
        names = {n[len(f"mtp_heads.{i}."):]: t for n, t in heads.items() if n.startswith(f"mtp_heads.{i}.")}
        if head_type == "linear":
            assert {k: tuple(t.shape) for k, t in names.items()} == {"proj.weight": (D, D)}
            assert torch.equal(names["proj.weight"], torch.eye(D))  # initialised to the identity
        else:
            # The same tensors, shapes and (fused or not) layout as the trunk's block at that depth,
            # which the head starts as a copy of.
            last = config["num_blocks"] - 1
            block = {n[len(f"backbone.blocks.{last}."):]: t for n, t in stored.items()
                     if n.startswith(f"backbone.blocks.{last}.")}
            assert names.keys() == block.keys()
            for k in block:
                assert torch.equal(names[k], block[k].to(names[k].dtype)), k


def test_trunk_stays_bit_identical_and_heads_learn(tiny_checkpoint, tokenizer, tmp):
    config = hf_checkpoint.read_config(tiny_checkpoint)
    args = args_for(tiny_checkpoint, tokenizer, str(tmp / "unused"), "--num-heads", "3", "--seq", "32")
    model, _ = add_heads.build_model(args, config, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = add_heads.make_optimizer(model, args, torch.device("cpu"))
    ids = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    first = None
    for _ in range(15):
        stats = add_heads.distill_step(model, ids, args, torch.device("cpu"), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        kl = (stats[:, 0] / stats[:, 2]).tolist()
        first = first or kl
    for n, p in model.named_parameters():
        if n.startswith("mtp_heads."):
            assert not torch.equal(p, before[n]), n
        else:
            assert not p.requires_grad and p.grad is None, n
            assert torch.equal(p, before[n]), n  # bit for bit
    assert all(b < a for a, b in zip(first, kl)), (first, kl)
    # The loss is KL(teacher || head) on head 0's distribution at t + i: a head equal to the
    # teacher shifted by i has zero loss. Check the targets' alignment on a linear head model.
    lin = add_heads.build_model(args_for(tiny_checkpoint, tokenizer, str(tmp / "u"), "--num-heads", "2",
                                         "--head-type", "linear", "--seq", "32"), config, torch.device("cpu"))[0]
    with torch.no_grad():
        x, h0 = add_heads.trunk_and_teacher(lin, ids, torch.device("cpu"))
        rows_s, rows_t = add_heads.head_rows(4, 32, 1, torch.device("cpu"))
        flat = h0.reshape(4 * 32, -1)
        kl, same = add_heads.chunk_kl(lin, flat[rows_t], flat[rows_t], torch.device("cpu"))
        assert kl.abs().max() < 1e-5 and same.all()
        assert torch.equal(rows_t - rows_s, torch.ones_like(rows_s)) and rows_s.numel() == 4 * 31


def run_add_heads(model_dir, tokenizer, corpus, out, *extra):
    train, held = corpus
    add_heads.main(["--model", model_dir, "--tokenizer", tokenizer, "--train", train, "--eval", held,
                    "--out", out, "--seq", "64", "--batch", "4", "--lr", "3e-3", "--warmup", "5",
                    "--log-every", "5", "--eval-every", "10", "--eval-windows", "6", "--shuffle-buffer", "16",
                    *extra])
    with open(os.path.join(out, checkpoint.STATE_FILE)) as f:
        return json.load(f)


def generate(binary, model_dir, speculative):
    out = subprocess.run([binary, "generate", "--model", model_dir, "--prompt-ids", "5,17,30,41,60,2,9",
                          "--max-tokens", "40", "--speculation", speculative, "--num-draft", "3",
                          "--device", "cpu", "--print-json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("source,head_type", [("tiny", "mlstm_block"), ("tiny", "linear"),
                                              ("f32_fused", "mlstm_block"), ("f32_tied", "linear")])
def test_train_export_and_serve(source, head_type, tiny_checkpoint, tokenizer, corpus, tmp):
    src = tiny_checkpoint if source == "tiny" else os.path.join(GOLDEN, source)
    out, exported = str(tmp / f"run_{source}_{head_type}"), str(tmp / f"export_{source}_{head_type}")
    state = run_add_heads(src, tokenizer, corpus, out, "--num-heads", "4", "--head-type", head_type,
                          "--steps", "30", "--export", exported)
    evals = state["eval_history"]
    assert [e["step"] for e in evals] == [0, 10, 20, 30]
    assert all(b < a for a, b in zip(evals[0]["kl"], evals[-1]["kl"])), (evals[0]["kl"], evals[-1]["kl"])
    assert set(evals[-1]["expected_tokens_per_step"]) == {"k1", "k2", "k3"}
    assert state["history"][-1]["step"] == 30 and state["tokens"] == 30 * 4 * 64

    config = hf_checkpoint.read_config(exported)
    source_config = hf_checkpoint.read_config(src)
    trunk_layers = source_config["num_blocks"] - (1 if head_type == "mlstm_block" else 0)
    assert config.pop("mtp") == {"num_heads": 4, "head_type": head_type, "trunk_layers": trunk_layers}
    assert config == source_config
    assert sha256(os.path.join(exported, "tokenizer.json")) == sha256(tokenizer)
    # Every trunk file is byte-identical to the source's, and the index maps every tensor.
    where = hf_checkpoint.tensor_files(exported)
    for name, file in hf_checkpoint.tensor_files(src).items():
        same = hf_checkpoint.TRUNK_FILE if file == hf_checkpoint.SINGLE else file
        assert where.pop(name) == same
        assert sha256(os.path.join(exported, same)) == sha256(os.path.join(src, file))
    assert set(where.values()) == {hf_checkpoint.HEADS_FILE} and len(where) > 0
    # The export reads back as trained (heads from the run's checkpoint) with the source's trunk.
    back = hf_checkpoint.load_model(exported)
    trained = load_file(os.path.join(out, "ckpt-00.safetensors"))
    for n, p in back.mtp_heads.named_parameters():
        assert torch.equal(p, trained["param." + n].to(p.dtype)), n

    binary = xlserve_binary()
    if binary is None:
        pytest.skip("no xlserve binary (set XLSERVE)")
    plain, spec, original = generate(binary, exported, "off"), generate(binary, exported, "on"), \
        generate(binary, src, "off")
    assert spec["tokens"] == plain["tokens"] == original["tokens"]  # lossless, and the trunk unchanged
    assert spec["prompt_last_logits"] == original["prompt_last_logits"]
    assert spec["drafted_tokens"] > 0 and plain["drafted_tokens"] == 0
    assert spec["steps"] + spec["accepted_drafts"] == plain["steps"]


def test_resume_is_exact(tiny_checkpoint, tokenizer, corpus, tmp):
    """20 steps at once equal 10 steps, a stop, and 10 more from the checkpoint, bit for bit."""
    common = ["--num-heads", "3", "--steps", "20", "--eval-every", "0"]
    whole = str(tmp / "whole")
    pieces = str(tmp / "pieces")
    run_add_heads(tiny_checkpoint, tokenizer, corpus, whole, *common)
    first = run_add_heads(tiny_checkpoint, tokenizer, corpus, pieces, *common, "--run-steps", "10")
    assert first["step"] == 10
    second = run_add_heads(tiny_checkpoint, tokenizer, corpus, pieces, *common, "--resume")
    assert second["step"] == 20 and len(second["runs"]) == 2
    a, b = load_file(os.path.join(whole, "ckpt-00.safetensors")), load_file(os.path.join(pieces, "ckpt-00.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = load_file(os.path.join(whole, add_heads.STREAM_FILE)), load_file(os.path.join(pieces, add_heads.STREAM_FILE))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(SystemExit, match="settings differ"):
        run_add_heads(tiny_checkpoint, tokenizer, corpus, pieces, "--num-heads", "4", "--steps", "30", "--resume")


def test_replacing_heads_rewrites_only_their_file(tiny_checkpoint, tokenizer, corpus, tmp):
    first = str(tmp / "with_heads")
    shutil.rmtree(first, ignore_errors=True)
    run_add_heads(tiny_checkpoint, tokenizer, corpus, str(tmp / "r1"), "--num-heads", "3", "--steps", "2",
                  "--export", first)
    # A single-file model with heads inside, like the shipped model.
    single = str(tmp / "single_with_heads")
    os.makedirs(single, exist_ok=True)
    merged = hf_checkpoint.load_tensors(first, list(hf_checkpoint.tensor_files(first)))
    save_file(merged, os.path.join(single, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(first, "config.json"), single)
    with pytest.raises(SystemExit, match="already has heads"):
        run_add_heads(single, tokenizer, corpus, str(tmp / "r2"), "--steps", "2")
    again = str(tmp / "replaced")
    run_add_heads(single, tokenizer, corpus, str(tmp / "r3"), "--replace-heads", "--num-heads", "2",
                  "--head-type", "linear", "--steps", "2", "--export", again)
    trunk = load_file(os.path.join(again, hf_checkpoint.TRUNK_FILE))
    source = load_file(os.path.join(tiny_checkpoint, "model.safetensors"))
    assert trunk.keys() == source.keys()
    assert all(torch.equal(trunk[k], source[k]) for k in source)
    assert hf_checkpoint.read_config(again)["mtp"]["head_type"] == "linear"


def test_stream_formats_packing_and_restore(tokenizer, corpus):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer)
    train, _ = corpus
    files = text_stream.list_files([train], ["*.txt", "*.jsonl"], ["skip*"])
    assert [os.path.basename(f) for f in files] == ["part0.txt", "part1.txt", "part2.txt", "docs.jsonl"]
    docs = list(text_stream.read_pieces(files[-1], 0, "text"))
    assert len(docs) == 100 and all(end for _, end, _ in docs)  # the broken lines are skipped
    # One pass without shuffling is the documents' tokens joined by EOS, cut into windows.
    stream = text_stream.TokenStream([files[-1]], tok, eos_id=255, window=50, shuffle_buffer=1, loop=False)
    got = sum(iter(stream.next_window, None), [])
    want = sum((tok.encode(t, add_special_tokens=False).ids + [255] for t, _, _ in docs), [])
    assert got == want[:len(want) // 50 * 50]
    # A restored stream continues with the same windows.
    a = text_stream.TokenStream(files, tok, eos_id=255, window=40, seed=7, shuffle_buffer=8)
    for _ in range(30):
        a.batch(3)
    position, tensors = a.state()
    expect = [a.batch(3) for _ in range(40)]
    b = text_stream.TokenStream(files, tok, eos_id=255, window=40, seed=7, shuffle_buffer=8)
    b.restore(json.loads(json.dumps(position)), tensors)
    assert all(torch.equal(x, b.batch(3)) for x in expect)
    assert a.epoch >= 1  # the corpus was read more than once on the way
