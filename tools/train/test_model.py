"""CPU checks of the trainer's model: the chunkwise cell against the step-by-step recurrence,
gradients through both, and (where transformers is installed) the HF export against
transformers' xLSTMForCausalLM. Run: python3 -m pytest tools/train/test_model.py (about 20 s)."""

import json
import os
import sys
import tempfile

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import model as M  # noqa: E402
import speculation  # noqa: E402

TINY = M.ModelArgs(vocab_size=97, hidden_size=32, num_blocks=2, num_heads=2, chunk_size=16,
                   ffn_proj_factor=1.5, ffn_round_up_to_multiple_of=16, mtp_num_heads=3)


def lively_gates(model: M.MtpXlstm, seed: int):
    """Random gate weights so the stabiliser moves and the soft caps bite; the HF init leaves
    the input gate at exp(-10), where a wrong formula would still look right."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gate_preact" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (4.0 if p.ndim == 1 else 0.5))
            elif name.endswith(("out_proj.weight", "proj_down.weight")):
                p.normal_(0, 0.2, generator=g)


def random_cell_inputs(B, NH, S, DK, DV, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, NH, S, DK, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(B, NH, S, DV, generator=g, dtype=torch.float64)
    i_pre = M.soft_cap(torch.randn(B, NH, S, generator=g, dtype=torch.float64) * 8, 15.0)
    f_pre = M.soft_cap(torch.randn(B, NH, S, generator=g, dtype=torch.float64) * 4 + 2, 15.0)
    return q, k, v, i_pre, f_pre


@pytest.mark.parametrize("chunk", [4, 8, 32])
def test_chunkwise_matches_recurrence(chunk):
    inputs = random_cell_inputs(2, 3, 32, 5, 7, seed=chunk)
    ref = M.mlstm_recurrent(*inputs, eps=1e-6)
    # In fp64 the two forms differ by summation order only.
    assert torch.allclose(M.mlstm_chunkwise(*inputs, chunk, 1e-6), ref, atol=1e-9, rtol=1e-9)
    # In fp32, q.n cancels and outputs reach ~100 on these inputs: errors are relative to that scale.
    got = M.mlstm_chunkwise(*(t.float() for t in inputs), chunk, 1e-6).double()
    assert (got - ref).abs().max() < 5e-5 * ref.abs().max()


def test_chunkwise_gradients_match_recurrence():
    inputs = [t.float().requires_grad_() for t in random_cell_inputs(1, 2, 16, 4, 4, seed=3)]
    weights = torch.randn(1, 2, 16, 4, generator=torch.Generator().manual_seed(9))
    (M.mlstm_chunkwise(*inputs, 8, 1e-6) * weights).sum().backward()
    grads_chunk = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    (M.mlstm_recurrent(*inputs, 1e-6) * weights).sum().backward()
    for name, a, b in zip("q k v i f".split(), grads_chunk, [t.grad for t in inputs]):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3), name


def test_mtp_loss_targets_are_shifted_per_head():
    torch.manual_seed(0)
    model = M.MtpXlstm(TINY)
    window = torch.randint(0, TINY.vocab_size, (2, 32 + TINY.mtp_num_heads))
    losses = model.mtp_loss(window)
    logits = model(window[:, :32])
    for i, lg in enumerate(logits):
        expect = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), window[:, 1 + i:33 + i].reshape(-1))
        assert torch.allclose(losses[i], expect, atol=1e-5)


def test_speculation_counts_accepted_prefixes():
    # Greedy continuation 10..19 after a prompt of length 2 (positions 0, 1).
    seq = torch.tensor([[1, 2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]])
    S = seq.shape[1]
    drafts = torch.full((2, 1, S), -1)  # heads 1 and 2
    # At position 1 (last prompt token) head 1 guesses right (11), head 2 wrong: step emits 2.
    drafts[0, 0, 1], drafts[1, 0, 1] = 11, 99
    # Next step starts at position 3 (token 11): both right: emits 3 (positions 4, 5, 6).
    drafts[0, 0, 3], drafts[1, 0, 3] = 13, 14
    # Then position 6: head 1 wrong; head 2 right is not enough (prefix rule): emits 1.
    drafts[0, 0, 6], drafts[1, 0, 6] = 0, 16
    stats = speculation.simulate(seq, drafts, prompt_len=2, k=2)
    # Steps emit 2, 3, 1, then one token each from positions 7, 8, 9, 10 (4 steps).
    assert stats["tokens"] == 10
    assert stats["steps"] == 3 + 4
    assert stats["accepted_at"] == [2, 1]


def test_export_matches_transformers():
    # Inside the test: a module-level skip would skip every test above too.
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    model = M.MtpXlstm(TINY)
    lively_gates(model, seed=5)
    with tempfile.TemporaryDirectory() as d:
        export.export(model, d, dtype=torch.float32, bos_eos_pad=0)
        config = json.load(open(os.path.join(d, "config.json")))
        assert config["mtp"] == {"num_heads": 3, "head_type": "mlstm_block", "trunk_layers": 1}
        hf = transformers.xLSTMForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        reloaded = export.load(d).eval()
        # 48 = three chunks; 43 makes transformers finish with its step-by-step kernel.
        for length in (48, 43):
            ids = torch.randint(1, TINY.vocab_size, (2, length))
            with torch.no_grad():
                want = hf(ids, use_cache=False).logits
                ours = export.logits_any_length(model, ids, heads=[0])[0]
                again = export.logits_any_length(reloaded, ids)
            assert (ours - want).abs().max() < 1e-4, length
            for i, lg in enumerate(export.logits_any_length(model, ids)):
                assert torch.equal(lg, again[i]), i
