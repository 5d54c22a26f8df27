"""`train eval`: loss and perplexity over trained (assistant) tokens with each model's own chat
template, and generation metrics, for one or several models on one held-out set.

The reference answer of a conversation is its last assistant turn; the prompt is everything
before it. Loss is token-weighted over every assistant token of the set (not a mean of
per-record means), so perplexity is exp(loss).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from curate.config import ConfigError

METRICS = ("loss", "exact_match", "json_valid", "refusal", "length")


def eval_file(data: str) -> Path:
    """A JSONL file; a `curate format` folder's eval.jsonl; or a `curate run` build's last step's."""
    from curate.storage import mirror

    from .data import format_folder

    src = format_folder(mirror(data), "--data")
    if src.is_dir():
        if not (src / "eval.jsonl").is_file() or not (src / "eval.jsonl").stat().st_size:
            raise ConfigError(f"--data {data}: no eval.jsonl with records there (curate format --eval-fraction)")
        return src / "eval.jsonl"
    if src.is_file():
        return src
    raise ConfigError(f"--data {data}: no such file or folder")


def read_eval(path: Path) -> tuple[list[list[dict]], list[str]]:
    from .data import read_conversations

    conversations, sources = read_conversations(path)
    keep = [(c, s) for c, s in zip(conversations, sources) if c and c[-1]["role"] == "assistant"]
    if not keep:
        raise ConfigError(f"--data {path}: no conversation ends with an assistant turn to compare with")
    return [c for c, _ in keep], [s for _, s in keep]


def load(spec: str):
    """(model, tokenizer, template, identity) of a run folder, model folder or shipped name."""
    from curate.format.template import choose

    from .model import load_for_inference

    path = Path(spec)
    try:
        model, tok = load_for_inference(spec)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{spec}: cannot load a model: {(str(e).splitlines() or [''])[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    trained_with = path / "template.jinja"
    _, template, _ = choose(str(trained_with) if trained_with.is_file() else None, tok)
    identity = {"dataset": None, "source": None}
    try:
        prov = json.loads((path / "provenance.json").read_text(encoding="utf-8"))
        identity = {"dataset": prov["dataset"]["hash"], "source": prov["dataset"].get("source")}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return model, tok, template, identity


def loss(model, tok, template: str, conversations, sources, batch_size: int = 8, max_length: int = 4096) -> dict:
    """Mean cross-entropy over every assistant token of the set, and its perplexity."""
    import torch

    from curate.progress import progress

    from .loss import padded, token_losses
    from .data import encode

    rows = encode(conversations, sources, template, tok, max_length, "eval")
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    total, count = 0.0, 0
    pad = tok.pad_token_id
    with progress(len(order), "loss", unit="records") as bar:
        for start in range(0, len(order), batch_size):
            batch = [rows[i] for i in order[start:start + batch_size]]
            ids, labels, mask = padded(batch, pad)
            with torch.inference_mode():
                device = model.device
                ce, valid = token_losses(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits,
                                         labels.to(device))
            total += float(ce.sum())
            count += int(valid.sum())
            bar.update(len(batch))
    mean = total / max(count, 1)
    return {"loss": mean, "perplexity": math.exp(mean) if mean < 700 else math.inf, "tokens": count}


def prompt_ids(tok, messages: list[dict], template: str | None = None) -> list[int]:
    """Token ids of ``messages`` and the assistant's turn opening, with special-token text inside
    the messages kept as plain text (transformers' sanitize_control_tokens), as `curate format`
    and training tokenize it: a prompt cannot forge a turn."""
    kw = dict(chat_template=template, add_generation_prompt=True, tokenize=True, return_dict=True)
    try:
        return list(tok.apply_chat_template(messages, sanitize_control_tokens=True, **kw)["input_ids"])
    except (TypeError, NotImplementedError, ValueError):  # an older transformers, or a template it cannot do
        return list(tok.apply_chat_template(messages, **kw)["input_ids"])


def generate_all(model, tok, template: str, prompts: list[list[dict]], batch_size: int = 8,
                 max_new_tokens: int = 256) -> tuple[list[str], list[int]]:
    """Greedy answers to every prompt, batched (left padding); returns texts and token counts (a
    count of max_new_tokens: the answer was cut there, it did not end)."""
    import torch

    from curate.format.template import stop_token_ids
    from curate.progress import progress

    tok.padding_side = "left"
    encoded = [prompt_ids(tok, p, template) for p in prompts]
    stops = set(stop_token_ids(template, tok))
    order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), i))
    texts, lengths = [""] * len(prompts), [0] * len(prompts)
    # greedy generation on a CPU: minutes for a few hundred answers, so say how far it is
    with progress(len(prompts), "generating", unit="answers") as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), tok.pad_token_id)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, i in enumerate(batch):
                ids[b, width - len(encoded[i]):], mask[b, width - len(encoded[i]):] = torch.tensor(encoded[i]), 1
            with torch.inference_mode():
                # the batch goes where the model is (a GPU when load() put it there)
                out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                     max_new_tokens=max_new_tokens,
                                     do_sample=False, eos_token_id=sorted(stops), pad_token_id=tok.pad_token_id)
            for b, i in enumerate(batch):
                new = out[b, width:].tolist()
                cut = next((k for k, t in enumerate(new) if t in stops), len(new))
                texts[i] = tok.decode(new[:cut], skip_special_tokens=True)
                lengths[i] = cut
            bar.update(len(batch))
    return texts, lengths


def generate(path: str, prompt: str, max_new_tokens: int = 128, system: str | None = None) -> str:
    """What the model now says, greedy, with the chat template it was trained with (train eval's
    loading and generation: the same template choice, stop tokens and cut at the end of turn)."""
    model, tok, template, _ = load(path)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    texts, _ = generate_all(model, tok, template, [messages], 1, max_new_tokens)
    return texts[0]


def evaluate(models: list[str], data: str, metrics: list[str] | None = None, extractor: str = "gsm8k",
             batch_size: int = 8, max_new_tokens: int = 256, limit: int | None = None, echo=print) -> dict:
    from . import metrics as m

    metrics = list(metrics or METRICS)
    bad = [x for x in metrics if x not in METRICS]
    if bad:
        raise ConfigError(f"--metric {bad[0]}: not one of {', '.join(METRICS)}")
    if "exact_match" in metrics:
        m.check_extractor(extractor)
    for name, value, least in (("--batch-size", batch_size, 1), ("--max-new-tokens", max_new_tokens, 1),
                               ("--limit", 1 if limit is None else limit, 1)):
        if value < least:
            raise ConfigError(f"{name} {value}: must be at least {least}")
    path = eval_file(data)
    conversations, sources = read_eval(path)
    if limit:
        conversations, sources = conversations[:limit], sources[:limit]
    references = [c[-1]["content"] for c in conversations]
    prompts = [c[:-1] for c in conversations]
    generating = [x for x in metrics if x != "loss"]
    rows = []
    for spec in models:
        model, tok, template, identity = load(spec)
        row = {"model": spec, **identity}
        if "loss" in metrics:
            row.update(loss(model, tok, template, conversations, sources, batch_size))
        if generating:
            texts, lengths = generate_all(model, tok, template, prompts, batch_size, max_new_tokens)
            if "exact_match" in metrics:
                row["exact_match"] = m.exact_match(texts, references, extractor)
                # references the extractor finds an answer in: exact_match is over these only
                row["exact_match_references"] = sum(m.extract(r, extractor) is not None for r in references)
            if "json_valid" in metrics:
                row["json_valid"] = m.json_valid(texts, references)
            if "refusal" in metrics:
                row["refusal"] = m.refusal_rate(texts)
            if "length" in metrics:
                row["mean_length"] = sum(lengths) / len(lengths)
            row["at_limit"] = sum(n >= max_new_tokens for n in lengths)
            if row["at_limit"]:
                echo(f"{spec}: {row['at_limit']} of {len(lengths)} answers reached --max-new-tokens {max_new_tokens} "
                     f"without an end of turn (cut there; generation time grows with it): a model that does not stop "
                     f"(untrained, or a template whose end-of-turn token it never learned); --max-new-tokens N caps it")
            row["samples"] = [{"source": s, "prediction": t, "reference": r}
                              for s, t, r in list(zip(sources, texts, references))[:3]]
        echo(f"evaluated {spec}")
        rows.append(row)
        del model
    return {"data": str(path), "records": len(conversations), "metrics": metrics, "extractor": extractor, "rows": rows}


def table(result: dict) -> list[str]:
    """The comparison as aligned text lines."""
    cols = [("model", "model", "{}"), ("dataset", "dataset", "{:.12}"), ("loss", "loss", "{:.4f}"),
            ("perplexity", "ppl", "{:.2f}"), ("exact_match", "exact", "{:.1%}"), ("json_valid", "json", "{:.1%}"),
            ("refusal", "refusal", "{:.1%}"), ("mean_length", "length", "{:.1f}"), ("at_limit", "at_limit", "{}")]
    present = [c for c in cols if any(c[0] in r for r in result["rows"])]
    cells = [[h for _, h, _ in present]]
    for r in result["rows"]:
        cells.append(["-" if r.get(k) is None else f.format(r[k]) for k, _, f in present])
    widths = [max(len(row[i]) for row in cells) for i in range(len(present))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]


def notes(result: dict) -> list[str]:
    """What the table's numbers rest on: exact_match is scored only over references that have an
    answer the extractor finds (none: the metric does not apply to this data)."""
    if "exact_match" not in result["metrics"] or not result["rows"]:
        return []
    scored, total = result["rows"][0].get("exact_match_references"), result["records"]
    if scored is None:
        return []
    how = {"gsm8k": "gsm8k: a number after ####", "last_number": "last_number: the last number"}.get(
        result["extractor"], f"the regex {result['extractor']!r}")
    if scored == 0:
        return [f"exact_match does not apply: 0 of {total} references have an answer ({how}); "
                "try --extract last_number or a regex with one group"]
    return [f"exact_match over the {scored} of {total} references that have an answer ({how})"]
