"""Fractional prompt-loss weight: every token is a target, assistant tokens weigh 1 and prompt
tokens (system, user, template scaffolding) weigh W, normalised by the total weight.

W = 0 is assistant-only loss, W = 1 plain language-model loss over everything. Done in the
loss with per-token weights (never by duplicating data), and the prompt-token and
assistant-token losses are logged apart so both can be watched.
"""
from __future__ import annotations

ROLE_COLUMN = "token_role"  # per token: 1 = assistant (trained with weight 1), 0 = prompt (weight W)


def weighted_rows(rows: list[dict]) -> list[dict]:
    """Turn assistant-only rows (labels -100 on the prompt) into rows whose every token is a
    target, with each token's role kept beside it."""
    out = []
    for r in rows:
        roles = [0 if t == -100 else 1 for t in r["labels"]]
        out.append({"input_ids": r["input_ids"], "labels": list(r["input_ids"]), ROLE_COLUMN: roles})
    return out


def padded(rows: list[dict], pad_id: int):
    """(input_ids, labels, attention_mask) tensors for encoded rows, right-padded to the longest."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n], labels[b, :n], mask[b, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
    return ids, labels, mask


def token_losses(logits, labels):
    """Cross-entropy of each next-token prediction (shifted), 0 where the label is -100."""
    import torch.nn.functional as F

    logits = logits[:, :-1, :].float()
    target = labels[:, 1:]
    valid = target != -100
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.clamp(min=0).reshape(-1), reduction="none")
    return ce.view_as(target) * valid, valid


def weighted_loss(logits, labels, roles, weight: float):
    """(loss, parts): the weighted mean over targets, and sums and counts of prompt and
    assistant token losses for logging."""
    ce, valid = token_losses(logits, labels)
    assistant = (roles[:, 1:] == 1) & valid
    prompt = (roles[:, 1:] == 0) & valid
    w = assistant.float() + weight * prompt.float()
    loss = (ce * w).sum() / w.sum().clamp(min=1e-12)
    seen = ce.detach()
    parts = {"assistant": (float((seen * assistant).sum()), int(assistant.sum())),
             "prompt": (float((seen * prompt).sum()), int(prompt.sum()))}
    return loss, parts
