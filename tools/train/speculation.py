"""Exact simulation of greedy self-speculative decoding (DESIGN §4).

Given a prompt and the model's greedy continuation, and each draft head's argmax at every
position, replay the decode loop: at the last accepted position p, head 0 gives the next token
(always correct, it *is* greedy decoding) and heads 1..k give drafts for positions p+2..p+1+k;
the longest prefix of drafts equal to the greedy continuation is accepted, so the step emits
1 + accepted tokens and the next step starts at p + 1 + accepted.
"""

import torch


def simulate(seq: torch.Tensor, drafts: torch.Tensor, prompt_len: int, k: int) -> dict:
    """seq: (B, S) prompt then greedy tokens. drafts: (H, B, S) with drafts[i-1, b, t] the
    argmax of head i at position t (it predicts token t+1+i); H >= k.

    A draft past the end of seq cannot be checked and counts as rejected, so the last step of
    each row may emit fewer tokens than decoding would. Returns totals over the batch: tokens
    emitted, steps taken, accepted_at[j] = how often draft j+1 was accepted, and per_row, the
    (tokens, steps) of each row."""
    seq = seq.cpu()
    drafts = drafts[:k].cpu()
    B, S = seq.shape
    tokens = steps = 0
    accepted_at = [0] * k
    per_row = []
    for b in range(B):
        row_tokens, row_steps = tokens, steps
        row, row_drafts = seq[b].tolist(), drafts[:, b].tolist()
        p = prompt_len - 1
        while p + 1 < S:
            accepted = 0
            for i in range(1, k + 1):
                t = p + 1 + i
                if t >= S or row_drafts[i - 1][p] != row[t]:
                    break
                accepted += 1
                accepted_at[i - 1] += 1
            steps += 1
            tokens += 1 + accepted
            p += 1 + accepted
        per_row.append((tokens - row_tokens, steps - row_steps))
    return {"tokens": tokens, "steps": steps, "accepted_at": accepted_at, "per_row": per_row}
