"""The demo's semantic step before and after #26: embedding work and wall-clock.

    python bench/semantic_speed.py [--time]

Reads the records the demo's semantic step gets (build/demo/03-dedup/kept.parquet: run
`curate run pipelines/demo.yaml` first). Embedding is the cost, and on 2 shared cores a
wall-clock is noisy, so the work is counted exactly as well: the model runs batches of
``batch_size`` rows of one token length, so its work is the sum over batches of
rows x length (token rows; attention adds a little for long texts).
  before: the whole conversation, cut at 256 tokens;
  after:  boilerplate lines left out, a longer text in pieces (curate.dedup.semantic).
``--time`` also embeds both sets of texts from an empty store, one after the other, and
times the whole semantic step with the store warm (the check, conflicts, borderline).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def token_rows(emb, texts: list[str], batch: int = 8) -> tuple[int, int]:
    tok, limit = emb.tokenizer()
    lengths = [min(len(offsets) + 2, limit) for offsets in tok(texts)]  # + [CLS], [SEP]
    groups: dict[int, int] = {}
    for n in lengths:
        groups[n] = groups.get(n, 0) + 1
    passes = sum(-(-c // batch) for c in groups.values())
    return passes, sum(-(-c // batch) * batch * n for n, c in groups.items())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", default=str(REPO / "build" / "demo" / "03-dedup" / "kept.parquet"))
    ap.add_argument("--time", action="store_true")
    args = ap.parse_args()
    import polars as pl

    from curate.dedup import DedupConfig, run
    from curate.dedup.check import boilerplate_lines, strip_boilerplate
    from curate.dedup.semantic import Embedder
    from curate.dedup.text import select_text

    records = pl.read_parquet(args.input)
    before = select_text(records, "conversation")
    after, changed = strip_boilerplate(before, boilerplate_lines(before))
    emb = Embedder()
    pieces = [p for parts in emb.pieces(after) for p, _ in parts]
    out = {"records": records.height, "boilerplate_stripped": changed, "pieced": emb.pieced}
    for name, texts in (("before", before), ("after", pieces)):
        passes, rows = token_rows(emb, texts)
        out[name] = {"texts": len(texts), "forward_passes": passes, "token_rows": rows}
    out["work_ratio"] = round(out["after"]["token_rows"] / out["before"]["token_rows"], 3)
    if args.time:
        with tempfile.TemporaryDirectory() as d:
            for name, texts in (("before", before), ("after", pieces)):
                e = Embedder(store=Path(d) / f"{name}.sqlite")
                e.model()
                t = time.perf_counter()
                e.embed(texts)
                out[name]["embed_seconds"] = round(time.perf_counter() - t, 1)
            warm = Path(d) / "after.sqlite"
            for check in ("agree", "off"):
                t = time.perf_counter()
                run(records, DedupConfig(methods=["semantic"], check=check, embeddings=str(warm)))
                out[f"step_seconds_warm_check_{check}"] = round(time.perf_counter() - t, 2)
    print(json.dumps(out, indent=1))
    (REPO / "bench" / "results" / "semantic_speed.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
