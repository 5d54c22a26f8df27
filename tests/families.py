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


def shipped_templates() -> dict[str, Path]:
    """rules/<name> -> path of the toolkit's own templates."""
    from curate.shipped import RULES

    return {f"rules/{p.stem}": p for p in sorted((RULES / "templates").glob("*.jinja"))}


def all_templates() -> dict[str, Path]:
    return {**trl_templates(), **shipped_templates()}


@functools.cache
def tokenizer_for(name: str):
    text = all_templates()[name].read_text(encoding="utf-8")
    family = family_of(name.split("/")[-1])
    return gemma_tokenizer(text) if family.startswith(("gemma", "diffusion_gemma")) else family_tokenizer(text, family)


BASIC = {
    "single": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}],
    "multi": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
              {"role": "user", "content": "Another?"}, {"role": "assistant", "content": "Green, and then red."}],
    "system": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
               {"role": "assistant", "content": "Bonjour !"}],
}
TOOLS = [{"role": "user", "content": "Weather in Paris?"},
         {"role": "assistant", "content": "", "tool_calls": [
             {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
         {"role": "tool", "name": "get_weather", "content": '{"temperature": 21}'},
         {"role": "assistant", "content": "It is 21 degrees."}]


@functools.cache
def conformance(name: str) -> dict:
    """How `curate format` handles one template with its family's tokenizer: supported or not,
    how the mask is derived, the closing tokens, which conversations it renders, tool calls."""
    from curate.config import ConfigError
    from curate.format import encode_many
    from curate.format import template as tpl

    path = all_templates()[name]
    tok = tokenizer_for(name)
    try:
        _, template, original = tpl.choose(str(path), tok)
        tpl.check_template(template, original, tok, tpl.PROBES + list(BASIC.values()))
    except ConfigError as e:
        return {"supported": False, "reason": str(e)}
    how = ("markers" if original is None else "added markers") if tpl.MARKER.search(template) else "prefix rendering"
    rendered = {k: r for k, r in zip(BASIC, encode_many(template, list(BASIC.values()), tok))}
    tools = None
    if "tool_calls" in path.read_text(encoding="utf-8"):
        (ids, mask), = encode_many(template, [TOOLS], tok)
        trained = tok.decode([i for i, m in zip(ids, mask) if m]) if ids is not None else ""
        tools = "trained" if "get_weather" in trained else ("refused" if ids is None else "not trained")
    return {"supported": True, "how": how, "template": template, "original": original,
            "closers": tpl.closing_tokens(template, tok), "renders": [k for k, r in rendered.items() if r[0] is not None],
            "tools": tools}


def table_row(name: str) -> str:
    """The docs/templates.md row of one template."""
    c = conformance(name)
    if not c["supported"]:
        why = ("no markers, not prefix-consistent: use the marked copy" if "prefix-consistently" in c["reason"]
               else "does not render text content")
        return f"| `{name}` | no | - | {why} |"
    tools = {None: "-", "trained": "tool calls trained", "not trained": "tool calls not trained",
             "refused": "tool calls refused by the template"}[c["tools"]]
    closers = " ".join(f"`{t}`" for t in c["closers"])
    return f"| `{name}` | yes | {c['how']}; closes with {closers} | {tools} |"


if __name__ == "__main__":  # prints the table for docs/templates.md
    print("| template | supported | mask from | notes |")
    print("|---|---|---|---|")
    for n in all_templates():
        print(table_row(n))
