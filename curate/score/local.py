"""An in-process judge: one forward pass per record, the score read from the next-token
probabilities of the scale's digits (small models do not follow JSON instructions)."""
from __future__ import annotations

import math
import time

from ..config import ConfigError
from .jury import Judge, Jury
from .parse import BadAnswer, expected_digit
from .remote import Verdict


class LocalJudge:
    def __init__(self, judge: Judge, jury: Jury):
        from ..models import load_causal_lm

        self.judge, self.jury = judge, jury
        self.model, self.tok = load_causal_lm(judge.model)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.tok.padding_side = "left"  # the last position is the one scored
        lo, hi = jury.scale
        self.digits: dict[int, list[int]] = {}
        for d in range(lo, hi + 1):
            ids = set()
            for text in (str(d), f" {d}"):
                enc = self.tok.encode(text, add_special_tokens=False)
                if len(enc) == 1:
                    ids.add(enc[0])
            if not ids:
                raise ConfigError(f"judge {judge.name}: the tokenizer of {judge.model} has no single token for '{d}'")
            self.digits[d] = sorted(ids)

    def encode(self, prompts: list[str]) -> list[list[int]]:
        """Token ids of each chat-formatted prompt, cut to max_length from the left (the
        question and the answer slot are at the end)."""
        out = []
        for p in prompts:
            ids = self.tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                               tokenize=True, return_dict=True)["input_ids"]
            out.append(list(ids[-self.judge.max_length:]))
        return out

    def score(self, prompts: list[str]) -> list[Verdict]:
        import torch

        encoded = self.encode(prompts)
        order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), i))  # little padding per batch
        verdicts: list[Verdict | None] = [None] * len(prompts)
        bs = self.judge.batch_size
        pad = self.tok.pad_token_id
        for start in range(0, len(order), bs):
            batch = order[start:start + bs]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                seq = encoded[i]
                ids[row, width - len(seq):] = torch.tensor(seq)
                mask[row, width - len(seq):] = 1
            t0 = time.perf_counter()
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, :]
                logprobs = torch.log_softmax(logits.float(), dim=-1)
            took = (time.perf_counter() - t0) / len(batch)
            for row, i in enumerate(batch):
                lp = {}
                for d, tids in self.digits.items():
                    total = torch.logsumexp(logprobs[row, tids], dim=0).item()
                    lp[str(d)] = total if math.isfinite(total) else -math.inf
                v = Verdict(tokens_in=len(encoded[i]), latencies=(took,))
                try:
                    v.score, v.reason = expected_digit(lp, self.jury.scale)
                except BadAnswer as e:
                    v.failure = e.kind
                verdicts[i] = v
        return verdicts
