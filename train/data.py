"""The data side of `train sft`: the training files of a build, its conversations, and rows of
input_ids and labels with every loss mask checked (also what `train eval` reads and encodes)."""
from __future__ import annotations

from pathlib import Path

from curate.config import ConfigError

from .config import SFTConfig


def format_folder(src: Path, what: str) -> Path:
    """``src`` itself, or, for a `curate run` build, its last step, which must be a format step."""
    if not (src / "manifest.json").is_file():
        return src
    from curate.jsonfile import read_json

    try:
        final = read_json(src / "manifest.json", "`curate run` manifest", {"final": str})["final"]
    except ConfigError as e:
        raise ConfigError(f"{what} {src}: {e}") from None
    if not final.endswith("-format"):
        raise ConfigError(f"{what} {src}: the build ends with {final}, not a format step; add "
                          "`- format: {tokenizer: ...}` to the pipeline")
    return src / final


def data_files(cfg: SFTConfig) -> dict[str, Path]:
    """train / eval / template files: a `curate format` folder or a `curate run` build (its last
    step), or one JSONL (no eval)."""
    from curate.storage import mirror

    src = format_folder(mirror(cfg.data), "data")  # an s3:// (fsspec) URL is fetched to a local cache
    if src.is_dir():
        train = src / "train.jsonl"
        if not train.is_file():
            raise ConfigError(f"data {src}: no train.jsonl (a `curate format` output folder, or a .jsonl file)")
        files = {"train": train}
        if (src / "eval.jsonl").is_file() and (src / "eval.jsonl").stat().st_size:
            files["eval"] = src / "eval.jsonl"
        if (src / "template.jinja").is_file():
            files["template"] = src / "template.jinja"
        return files
    if src.is_file():
        return {"train": src}
    raise ConfigError(f"data {src}: no such file or folder")


def read_conversations(path: Path) -> tuple[list[list[dict]], list[str]]:
    """The conversations of a JSONL split and each one's source; any unreadable record stops the run."""
    from curate.readers import read_inputs

    read = read_inputs([path])
    if read.rejected.height:
        first = read.rejected.row(0, named=True)
        raise ConfigError(f"data {path}: {read.rejected.height} records cannot be read "
                          f"(first: {first['source']}: {first['rule']}: {first['reason']})")
    from curate import turns

    # the turns as train.jsonl has them: weight (which encode leaves untrained), name, tool calls
    conversations = [[turns.plain(m) for m in c] for c in read.records["messages"].to_list()]
    return conversations, read.records["source"].to_list()


def encode(conversations, sources, template: str, tok, max_length: int, split: str) -> list[dict]:
    """input_ids and labels (-100 where no loss) per conversation, cut to max_length; stops the
    run, naming the records, when one has nothing to train on or a turn whose end is not trained."""
    from curate.format import encode_many
    from curate.format.template import closing_tokens

    eot_ids = set(tok.convert_tokens_to_ids(closing_tokens(template, tok, conversations[:20])))
    rows, empty, open_end, refused = [], [], [], []
    for (ids, mask), src in zip(encode_many(template, conversations, tok), sources):
        if ids is None:
            refused.append(f"{src} ({mask})")
            continue
        ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask):
            empty.append(src)
            continue
        # every trained span must end on an end-of-turn token, or the model never learns to stop
        ends = [i for i in range(len(mask)) if mask[i] and (i + 1 == len(mask) or not mask[i + 1])]
        if any(ids[i] not in eot_ids for i in ends):
            open_end.append(src)
        rows.append({"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]})
    for bad, what in ((refused, "the chat template refuses"), (empty, "no trained tokens"),
                      (open_end, "an assistant turn whose end-of-turn token is not trained")):
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            hint = (f" (cut at max_length {max_length}? raise it or run curate format --max-tokens)"
                    if bad is open_end else "")
            raise ConfigError(f"{split} data: {len(bad)} records with {what}: {', '.join(bad[:3])}{more}{hint}")
    return rows



def encode_splits(cfg: SFTConfig, files: dict[str, Path], template: str, tok) -> tuple[list[dict], list[dict]]:
    """The train and eval rows (no eval rows without an eval file); an empty train split stops the run."""
    train_conv, train_src = read_conversations(files["train"])
    if not train_conv:
        raise ConfigError(f"data {files['train']}: no records to train on (an empty file, or an empty train split)")
    train_rows = encode(train_conv, train_src, template, tok, cfg.max_length, "train")
    eval_rows = []
    if "eval" in files:
        eval_conv, eval_src = read_conversations(files["eval"])
        eval_rows = encode(eval_conv, eval_src, template, tok, cfg.max_length, "eval")
    return train_rows, eval_rows
