"""Small tokenizers with a chat family's special tokens: a byte-level BPE trained in the test
once, plus the tokens a template prints (read off the template itself) and the family's
bos/eos. Enough to render, tokenize and mask exactly as the real tokenizer would."""
from __future__ import annotations

import functools
import re
from pathlib import Path

# special-token spellings the families use (not <think> or <tool_call>: plain added text in those tokenizers)
SPECIAL = re.compile(r"<\|[^<>\s]{1,40}?\|>|<｜[^<>]{1,40}?｜>|<(?:start|end)_of_[a-z]+>|<\|[a-z_\"]+>|<[a-z_]+\|>"
                     r"|\[/?INST\]|\[gMASK\]|<sop>|<[A-Z_]{3,}>")
NOT_SPECIAL = {"<IMPORTANT>"}

# family (a template file's name starts with it) -> (bos, eos); default <bos>/<eos>
BOS_EOS = {
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"), "cohere": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "deepseek": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"), "phi3": ("<s>", "<|endoftext|>"),
    "lfm2": ("<|startoftext|>", "<|im_end|>"), "qwen": (None, "<|im_end|>"), "nemotron": (None, "<|im_end|>"),
    "gptoss": ("<|startoftext|>", "<|return|>"), "glm": (None, "<|endoftext|>"),
    "smolvlm": ("<|im_start|>", "<end_of_utterance>"), "idefics3": ("<|begin_of_text|>", "<end_of_utterance>"),
    "llava": ("<s>", "</s>"), "mistral": ("<s>", "</s>"), "chatml": (None, "<|im_end|>"),
    "alpaca": ("<s>", "</s>"), "muse": ("<|startoftext|>", "<|eot|>"),
}

CORPUS = [
    "The quick brown fox jumps over the lazy dog. What is 2+2? It is 4, of course.",
    "Name a colour. Blue. Another? Green, and then red. Be brief. Answer in French: Bonjour !",
    "system user assistant model tool function call arguments name get_weather city Paris result sunny",
    '{"name": "get_weather", "arguments": {"city": "Paris"}} {"temperature": 21} ```json```',
    "Ünïcödé ✓ 漢字 — déjà vu? Oui: 好的, ça va ✓ Très bien — 好的",
    "You are a helpful assistant. Reasoning: let me think step by step. The answer follows.",
] * 10


def family_of(name: str) -> str:
    return next((f for f in sorted(BOS_EOS, key=len, reverse=True) if name.startswith(f)), name)


@functools.lru_cache(maxsize=1)
def _base():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return tok.to_str()


def family_tokenizer(template: str, family: str, extra: tuple[str, ...] = ()):
    """A fast tokenizer with the special tokens ``template`` prints, ``family``'s bos/eos, and
    ``extra``; its chat template is ``template``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    bos, eos = BOS_EOS.get(family, ("<bos>", "<eos>"))
    specials = sorted({m for m in SPECIAL.findall(template) if m not in NOT_SPECIAL} | set(extra)
                      | {t for t in (bos, eos) if t} | {"<pad>"})
    backend = Tokenizer.from_str(_base())
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token="<pad>",
                                   unk_token=None)
    fast.add_special_tokens({"additional_special_tokens": [t for t in specials if t not in (bos, eos, "<pad>")]})
    fast.chat_template = template
    return fast


def gemma_tokenizer(template: str):
    """Gemma 3's tokens as its tokenizer has them: <bos>, <eos>, <pad>, the turn tokens, image
    tokens, and many unused special tokens (6,249 in the real one)."""
    extra = ("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<mask>",
             *(f"<unused{i}>" for i in range(64)))
    return family_tokenizer(template, "gemma", extra)


def trl_templates() -> dict[str, Path]:
    """name -> path of every chat template TRL ships (found at run time: a new one is covered)."""
    import trl

    folder = Path(trl.__file__).parent / "chat_templates"
    return {p.stem: p for p in sorted(folder.glob("*.jinja"))}
