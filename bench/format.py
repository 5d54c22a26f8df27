"""Format throughput: curate format against a per-record apply_chat_template loop.

    python bench/format.py [--records 20000]

Same records, same marked template, same SmolLM2 tokenizer, in one run. The loop is what
a hand-written script does: per record, apply_chat_template(tokenize=True,
return_assistant_tokens_mask=True). Ours renders each record once (Jinja), tokenizes all
of them in one batch call of the fast tokenizer, and maps the rendered assistant spans to
tokens through the offsets. Both count tokens and trained tokens; the counts must agree.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "data")]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    args = ap.parse_args()
    import polars as pl

    from curate.format import FormatConfig, run
    from curate.format import template as tpl
    from curate.format.tokenizer import load_tokenizer
    from curate.readers import read_inputs

    shared = REPO.parent / "shared" / "datasets"
    if shared.is_dir():
        records = read_inputs([shared / "gsm8k" / "train.jsonl", shared / "gpteacher" / "roleplay.json"]).records
        label = "GSM8K + GPTeacher roleplay"
    else:
        import make_demo
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "d.jsonl").write_bytes(make_demo.build(n_clean=args.records))
            records = read_inputs([Path(tmp) / "d.jsonl"]).records
        label = "synthetic demo records"
    records = pl.concat([records] * (args.records // records.height + 1)).head(args.records)
    tok = load_tokenizer("smollm2-135m-instruct")
    _, template, _ = tpl.choose(None, tok)
    messages = records["messages"].to_list()
    print(f"{records.height} records ({label}), SmolLM2 tokenizer, its own template with generation markers added")

    run(records.head(200), FormatConfig(tokenizer="smollm2-135m-instruct"), tokenizer=tok)  # warm up
    t = time.perf_counter()
    result = run(records, FormatConfig(tokenizer="smollm2-135m-instruct"), tokenizer=tok)
    ours = time.perf_counter() - t

    t = time.perf_counter()
    loop_tokens = loop_trained = 0
    for m in messages:
        out = tok.apply_chat_template(m, chat_template=template, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        loop_tokens += len(out["input_ids"])
        loop_trained += sum(out["assistant_masks"])
    loop = time.perf_counter() - t

    kept = result.kept
    assert result.rejected.height == 0, result.stats["rules"]
    assert (int(kept["n_tokens"].sum()), int(kept["n_train_tokens"].sum())) == (loop_tokens, loop_trained), \
        "token counts differ from the per-record loop"
    n = records.height
    print(f"{'curate format':<40} {n / ours:>10,.0f} records/s")
    print(f"{'per-record apply_chat_template loop':<40} {n / loop:>10,.0f} records/s")
    print(f"ratio {loop / ours:.1f}x; tokens {loop_tokens:,}, trained {loop_trained:,} (identical on both sides)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
