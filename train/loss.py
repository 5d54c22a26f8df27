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


def WeightedCollator(inner):  # noqa: N802 (built on demand: torch is imported only when training)
    """TRL's collator plus the token roles, padded like the labels (padding weighs nothing)."""
    import torch

    def collate(examples):
        roles = [ex[ROLE_COLUMN] for ex in examples]
        batch = inner([{k: v for k, v in ex.items() if k != ROLE_COLUMN} for ex in examples])
        width = batch["labels"].shape[1]
        padded = torch.zeros((len(roles), width), dtype=torch.long)
        for i, r in enumerate(roles):
            padded[i, :len(r)] = torch.tensor(r[:width])
        batch[ROLE_COLUMN] = padded
        return batch

    return collate


def weighted_trainer_class():
    """SFTTrainer whose loss weighs prompt tokens by ``prompt_loss_weight``."""
    from trl import SFTTrainer

    class WeightedSFTTrainer(SFTTrainer):
        def __init__(self, *args, prompt_loss_weight: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.prompt_loss_weight = prompt_loss_weight
            self.model_accepts_loss_kwargs = False  # our loss is a per-batch mean: let Trainer scale accumulation
            self._sums = {"train": {}, "eval": {}}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            roles = inputs.pop(ROLE_COLUMN)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss, parts = weighted_loss(outputs.logits, labels, roles, self.prompt_loss_weight)
            acc = self._sums["train" if model.training else "eval"]
            for name, (total, n) in parts.items():
                s, c = acc.get(name, (0.0, 0))
                acc[name] = (s + total, c + n)
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            for split, prefix, key in (("train", "", "loss"), ("eval", "eval_", "eval_loss")):
                if key in logs and self._sums[split]:
                    for name, (s, c) in self._sums[split].items():
                        if c:
                            logs[f"{prefix}{name}_loss"] = round(s / c, 4)
                    self._sums[split] = {}
            return super().log(logs, *args, **kwargs)

    return WeightedSFTTrainer
