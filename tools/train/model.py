"""xLSTM (mLSTM blocks) with multi-token-prediction heads, in plain PyTorch.

The maths of every block is that of transformers' `xLSTMForCausalLM` (models/xlstm/modeling_xlstm.py):
RMSNorm -> mLSTM layer -> residual, RMSNorm -> SwiGLU FFN -> residual. Inside the mLSTM layer the
gate pre-activations are soft-capped (cap * tanh(x / cap)), the cell runs in the stabilised
chunkwise form of DESIGN §3 with a zero initial state (C, n and m all 0), each head's
output is LayerNorm-ed without bias, gated by sigmoid(o) and projected back to d. Logits are
soft-capped too. Parameter names equal transformers' tensor names, so `state_dict()` of the trunk
is an HF checkpoint as it stands.

Multi-token heads (DESIGN §2, "Multi-token heads"): head i (1..n-1) reads the residual
stream at depth `trunk_layers` and predicts token t+1+i, through its own block `mtp_heads.{i}`
(`mlstm_block`) or matrix `mtp_heads.{i}.proj` (`linear`); head 0 is the rest of the model (by
default the last block for block heads, nothing for linear heads, which read the final hidden
state). All heads share `backbone.out_norm` and `lm_head`.

Shapes below: B batch, S sequence, NH mLSTM heads, DK/DV per-head query-key/value widths,
NC chunks of L tokens.
"""

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class ModelArgs:
    vocab_size: int = 4096
    hidden_size: int = 192
    num_blocks: int = 6  # trunk blocks plus head 0: the plain HF model
    num_heads: int = 4
    qk_dim_factor: float = 1.0
    v_dim_factor: float = 1.0
    ffn_proj_factor: float = 2.0
    ffn_round_up_to_multiple_of: int = 64
    gate_soft_cap: float = 15.0
    output_logit_soft_cap: float = 30.0
    norm_eps: float = 1e-6
    eps: float = 1e-6
    chunk_size: int = 64
    mtp_num_heads: int = 4  # n: head 0 plus n-1 sibling blocks
    use_bias: bool = False  # biases on projections and norms (transformers' use_bias)
    mtp_head_type: str = "mlstm_block"  # or "linear"
    mtp_trunk_layers: int | None = None  # None: num_blocks - 1 for blocks, num_blocks for linear

    @property
    def trunk_layers(self) -> int:
        if self.mtp_trunk_layers is not None:
            return self.mtp_trunk_layers
        return self.num_blocks - (1 if self.mtp_head_type == "mlstm_block" else 0)

    # Derived sizes, computed exactly as transformers' xLSTMLayer / xLSTMFeedForward do.
    @property
    def qk_dim(self) -> int:
        return int(self.hidden_size * self.qk_dim_factor)

    @property
    def v_dim(self) -> int:
        return int(self.hidden_size * self.v_dim_factor)

    @property
    def ffn_dim(self) -> int:
        m = self.ffn_round_up_to_multiple_of
        return int(((self.hidden_size * self.ffn_proj_factor + m - 1) // m) * m)


def soft_cap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    return x if cap is None else cap * torch.tanh(x / cap)


def mlstm_chunkwise(q, k, v, i_pre, f_pre, chunk_size: int, eps: float) -> torch.Tensor:
    """Chunkwise mLSTM over a whole sequence from a zero state.

    q, k: (B, NH, S, DK); v: (B, NH, S, DV); i_pre, f_pre: (B, NH, S) soft-capped gate
    pre-activations. S must be a multiple of chunk_size. Returns h: (B, NH, S, DV).

    The stabiliser m is detached: h equals num_true / (max(|den_true|, 1) + eps * e^m), whose
    value does not depend on the stabiliser's gradient path, only on its value.
    """
    B, NH, S, DK = q.shape
    DV = v.shape[-1]
    L = chunk_size
    NC = S // L
    if NC * L != S:
        raise ValueError(f"sequence length {S} is not a multiple of chunk size {L}")
    scale = DK ** -0.5
    # q, k, v: (B, NH, NC, L, D) from (B, NH, S, D)
    q = q.reshape(B, NH, NC, L, DK)
    k = k.reshape(B, NH, NC, L, DK)
    v = v.reshape(B, NH, NC, L, DV)
    gate_dtype = torch.promote_types(f_pre.dtype, torch.float32)  # fp32, or fp64 in tests
    log_f = F.logsigmoid(f_pre.to(gate_dtype)).reshape(B, NH, NC, L)
    log_i = i_pre.to(gate_dtype).reshape(B, NH, NC, L)
    cum_f = log_f.cumsum(-1)  # F_t inside each chunk, inclusive

    # Inter-chunk recurrence: the state entering each chunk. Stabilisers (m) carry no gradient.
    key_to_end = cum_f[..., -1:] - cum_f + log_i  # log weight of key s in its chunk-end state
    chunk_f = cum_f[..., -1]                      # (B, NH, NC) log forget of a whole chunk
    key_to_end_max = key_to_end.detach().max(-1).values
    c_state = q.new_zeros((B, NH, DK, DV), dtype=gate_dtype)
    n_state = q.new_zeros((B, NH, DK), dtype=gate_dtype)
    m_state = q.new_zeros((B, NH), dtype=gate_dtype)
    c_in, n_in, m_in = [], [], []
    for c in range(NC):
        c_in.append(c_state)
        n_in.append(n_state)
        m_in.append(m_state)
        m_next = torch.maximum(chunk_f[..., c].detach() + m_state, key_to_end_max[..., c])
        k_gated = k[:, :, c] * torch.exp(key_to_end[:, :, c] - m_next[..., None])[..., None]
        decay = torch.exp(chunk_f[..., c] + m_state - m_next)
        c_state = decay[..., None, None] * c_state + k_gated.transpose(-2, -1) @ v[:, :, c]
        n_state = decay[..., None] * n_state + k_gated.sum(-2)
        m_state = m_next
    c0 = torch.stack(c_in, 2)  # (B, NH, NC, DK, DV)
    n0 = torch.stack(n_in, 2)  # (B, NH, NC, DK)
    m0 = torch.stack(m_in, 2)  # (B, NH, NC)

    # Intra-chunk causal part plus the carried state's contribution.
    causal = torch.ones((L, L), dtype=torch.bool, device=q.device).tril()
    log_d = cum_f[..., :, None] - cum_f[..., None, :] + log_i[..., None, :]  # (B, NH, NC, L, L)
    log_d = log_d.masked_fill(~causal, float("-inf"))
    m_inter = (cum_f + m0[..., None]).detach()
    m_comb = torch.maximum(m_inter, log_d.detach().max(-1).values)  # (B, NH, NC, L)
    d_mat = torch.exp(log_d - m_comb[..., None])
    s_mat = (q @ k.transpose(-2, -1)) * scale * d_mat
    q_gated = q * (torch.exp(cum_f + m0[..., None] - m_comb) * scale)[..., None]
    num = q_gated @ c0 + s_mat @ v
    den = (q_gated @ n0[..., None]).squeeze(-1) + s_mat.sum(-1)
    den = torch.maximum(den.abs(), torch.exp(-m_comb))
    h = num / (den + eps)[..., None]
    return h.reshape(B, NH, S, DV)


def mlstm_recurrent(q, k, v, i_pre, f_pre, eps: float) -> torch.Tensor:
    """The same cell one step at a time (DESIGN §3), in fp32 or the inputs' wider
    dtype; the reference for tests."""
    B, NH, S, DK = q.shape
    DV = v.shape[-1]
    dt = torch.promote_types(q.dtype, torch.float32)
    q, k, v, i_pre, f_pre = (t.to(dt) for t in (q, k, v, i_pre, f_pre))
    c = q.new_zeros((B, NH, DK, DV))
    n = q.new_zeros((B, NH, DK))
    m = q.new_zeros((B, NH))
    out = []
    for t in range(S):
        log_f = F.logsigmoid(f_pre[..., t])
        m_new = torch.maximum(log_f + m, i_pre[..., t])
        f_act = torch.exp(log_f + m - m_new)
        i_act = torch.exp(i_pre[..., t] - m_new)
        kt, vt = k[:, :, t], v[:, :, t]
        c = f_act[..., None, None] * c + i_act[..., None, None] * kt[..., :, None] * vt[..., None, :]
        n = f_act[..., None] * n + i_act[..., None] * kt
        m = m_new
        qt = q[:, :, t] * DK ** -0.5
        num = (qt[..., None, :] @ c).squeeze(-2)
        den = torch.maximum((qt * n).sum(-1).abs(), torch.exp(-m)) + eps
        out.append(num / den[..., None])
    return torch.stack(out, 2)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        y = y.to(x.dtype) * self.weight
        return y if self.bias is None else y + self.bias


class MultiHeadLayerNorm(nn.Module):
    """LayerNorm over each head's DV values (no bias), then one weight over all NH*DV."""

    def __init__(self, num_heads: int, head_dim: int, eps: float, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_heads * head_dim))
        self.bias = nn.Parameter(torch.zeros(num_heads * head_dim)) if bias else None

    def forward(self, x):  # x: (B, S, NH, DV)
        B, S = x.shape[:2]
        xf = x.float()
        y = (xf - xf.mean(-1, keepdim=True)) * torch.rsqrt(xf.var(-1, keepdim=True, unbiased=False) + self.eps)
        y = y.to(x.dtype).reshape(B, S, -1) * self.weight
        return y if self.bias is None else y + self.bias


def _fp32_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Gate pre-activations feed exp(); bf16 would round them by up to 1/16 near the cap."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        bias = None if layer.bias is None else layer.bias.float()
        return F.linear(x.float(), layer.weight.float(), bias)


class MlstmLayer(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.a = a
        d, bias = a.hidden_size, a.use_bias
        self.q = nn.Linear(d, a.qk_dim, bias=bias)
        self.k = nn.Linear(d, a.qk_dim, bias=bias)
        self.v = nn.Linear(d, a.v_dim, bias=bias)
        self.ogate_preact = nn.Linear(d, a.v_dim, bias=bias)
        self.igate_preact = nn.Linear(d, a.num_heads, bias=True)
        self.fgate_preact = nn.Linear(d, a.num_heads, bias=True)
        self.multihead_norm = MultiHeadLayerNorm(a.num_heads, a.v_dim // a.num_heads, a.norm_eps, bias)
        self.out_proj = nn.Linear(a.v_dim, d, bias=bias)

    def forward(self, x):  # x: (B, S, d)
        a = self.a
        B, S, _ = x.shape
        NH = a.num_heads
        # q, k, v: (B, NH, S, D) from (B, S, NH*D)
        q = self.q(x).reshape(B, S, NH, -1).transpose(1, 2)
        k = self.k(x).reshape(B, S, NH, -1).transpose(1, 2)
        v = self.v(x).reshape(B, S, NH, -1).transpose(1, 2)
        i_pre = soft_cap(_fp32_linear(self.igate_preact, x), a.gate_soft_cap).transpose(1, 2)
        f_pre = soft_cap(_fp32_linear(self.fgate_preact, x), a.gate_soft_cap).transpose(1, 2)
        h = mlstm_chunkwise(q, k, v, i_pre, f_pre, a.chunk_size, a.eps)
        h = h.to(v.dtype).transpose(1, 2)  # (B, S, NH, DV)
        h = self.multihead_norm(h)
        return self.out_proj(torch.sigmoid(self.ogate_preact(x)) * h)


class FeedForward(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.proj_up_gate = nn.Linear(a.hidden_size, a.ffn_dim, bias=a.use_bias)
        self.proj_up = nn.Linear(a.hidden_size, a.ffn_dim, bias=a.use_bias)
        self.proj_down = nn.Linear(a.ffn_dim, a.hidden_size, bias=a.use_bias)

    def forward(self, x):
        return self.proj_down(F.silu(self.proj_up_gate(x)) * self.proj_up(x))


class Block(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.norm_mlstm = RMSNorm(a.hidden_size, a.norm_eps, a.use_bias)
        self.mlstm_layer = MlstmLayer(a)
        self.norm_ffn = RMSNorm(a.hidden_size, a.norm_eps, a.use_bias)
        self.ffn = FeedForward(a)

    def forward(self, x):
        x = x + self.mlstm_layer(self.norm_mlstm(x))
        return x + self.ffn(self.norm_ffn(x))


class LinearHead(nn.Module):
    """A `linear` head: h = W z, no residual, no bias (DESIGN §2)."""

    def __init__(self, a: ModelArgs):
        super().__init__()
        self.proj = nn.Linear(a.hidden_size, a.hidden_size, bias=False)

    def forward(self, x):
        return self.proj(x)


class Backbone(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.embeddings = nn.Embedding(a.vocab_size, a.hidden_size)
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.num_blocks))
        self.out_norm = RMSNorm(a.hidden_size, a.norm_eps)


class MtpXlstm(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.a = a
        self.backbone = Backbone(a)
        self.lm_head = nn.Linear(a.hidden_size, a.vocab_size, bias=False)
        head = Block if a.mtp_head_type == "mlstm_block" else LinearHead
        self.mtp_heads = nn.ModuleDict({str(i): head(a) for i in range(1, a.mtp_num_heads)})
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """transformers' xLSTM initialisation: small init N(0, 2/(5d)) for embeddings and
        projections, Wang init for the projections back into the residual stream, zero gate
        weights with input-gate bias -10 and forget-gate biases spread over [3, 6]."""
        a = self.a
        small = math.sqrt(2 / (5 * a.hidden_size))
        nn.init.normal_(self.backbone.embeddings.weight, std=small)
        nn.init.normal_(self.lm_head.weight, std=small)
        for name, p in self.named_parameters():
            if name.startswith(("backbone.embeddings", "lm_head")) or p.ndim == 1:
                continue
            if "igate_preact" in name or "fgate_preact" in name or "ogate_preact" in name:
                nn.init.zeros_(p)
            elif name.endswith("proj_down.weight") or name.endswith("out_proj.weight"):
                nn.init.normal_(p, std=2 / a.num_blocks / math.sqrt(p.shape[1]))
            else:
                nn.init.normal_(p, std=small)
        for block in self.all_blocks():
            layer = block.mlstm_layer
            layer.igate_preact.bias.fill_(-10.0)
            layer.fgate_preact.bias.copy_(torch.linspace(3.0, 6.0, a.num_heads))

    def all_blocks(self):
        return [m for m in list(self.backbone.blocks) + list(self.mtp_heads.values()) if isinstance(m, Block)]

    def trunk(self, ids: torch.Tensor) -> torch.Tensor:
        """Residual stream at depth trunk_layers (by default the one entering the last block): the
        input of head 0's remaining blocks and of every mtp head."""
        x = self.backbone.embeddings(ids)
        for block in self.backbone.blocks[:self.a.trunk_layers]:
            x = block(x)
        return x

    def head_hidden(self, trunk: torch.Tensor, head: int) -> torch.Tensor:
        if head != 0:
            return self.mtp_heads[str(head)](trunk)
        for block in self.backbone.blocks[self.a.trunk_layers:]:
            trunk = block(trunk)
        return trunk

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Shared unembedding: out_norm, lm_head, soft cap; fp32 logits."""
        return soft_cap(self.lm_head(self.backbone.out_norm(hidden)).float(), self.a.output_logit_soft_cap)

    def forward(self, ids: torch.Tensor, heads=None) -> list[torch.Tensor]:
        """Logits (B, S, V) of each head in `heads` (default: all), at every position."""
        heads = range(self.a.mtp_num_heads) if heads is None else heads
        trunk = self.trunk(ids)
        return [self.logits(self.head_hidden(trunk, i)) for i in heads]

    def mtp_loss(self, window: torch.Tensor) -> torch.Tensor:
        """Per-head mean cross-entropies, shape (n,), for windows (B, S + n): inputs are the
        first S tokens and head i's targets are tokens 1+i .. S+i. The training loss is their sum."""
        n = self.a.mtp_num_heads
        S = window.shape[1] - n
        trunk = self.trunk(window[:, :S])
        losses = []
        for i in range(n):
            logits = self.logits(self.head_hidden(trunk, i))
            target = window[:, 1 + i:1 + i + S]
            losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)))
        return torch.stack(losses)

    def distill_loss(self, window: torch.Tensor) -> torch.Tensor:
        """Head tuning with the trunk and head 0 frozen, on windows (B, S + n) whose first S tokens
        are the inputs: the per-head losses of heads 1..n-1 (head_distill), shape (n-1,)."""
        S = window.shape[1] - self.a.mtp_num_heads
        with torch.no_grad():
            trunk = self.trunk(window[:, :S])
        return self.head_distill(trunk)[0]

    def head_distill(self, trunk: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """On the residual stream `trunk` (B, S, d): head i at position t learns head 0's
        distribution at t+i (the token that greedy decoding puts at t+1+i), soft targets. Returns
        the per-head losses of heads 1..n-1, shape (n-1,), and per head whether its argmax agrees
        with head 0's there, (B, S - i)."""
        S = trunk.shape[1]
        with torch.no_grad():
            teacher = torch.softmax(self.logits(self.head_hidden(trunk, 0)), -1)
        losses, agree = [], []
        for i in range(1, self.a.mtp_num_heads):
            logits = self.logits(self.head_hidden(trunk, i))[:, :S - i]
            losses.append(-(teacher[:, i:] * torch.log_softmax(logits, -1)).sum(-1).mean())
            agree.append(logits.detach().argmax(-1) == teacher[:, i:].argmax(-1))
        return torch.stack(losses), agree


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
