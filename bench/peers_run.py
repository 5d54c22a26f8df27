"""One peer tool, end to end, in its own process: ``python bench/peers_run.py TOOL IN.jsonl OUT``.

Run by bench/peers.py under ``--peer-python`` (a separate virtual environment with the
``bench`` extra: datatrove pins xxhash<4 and brings spaCy, which the main install must not
get). Standard library and the tool only, nothing from curate. IN is JSONL of
{"id", "text"}; OUT gets the kept documents (JSONL, or the tool's own writer's files).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

NGRAM, NUM_PERM, THRESHOLD = 5, 128, 0.8


def _docs(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write(out: Path, docs, keep) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "kept.jsonl", "w", encoding="utf-8") as f:
        for d, k in zip(docs, keep):
            if k:
                f.write(json.dumps(d) + "\n")


def _shingles(text: str) -> list[str]:
    w = text.lower().split()
    return list({" ".join(w[i:i + NGRAM]) for i in range(max(1, len(w) - NGRAM + 1))})


def rensa(src, out: Path) -> None:
    import rensa as r

    docs = _docs(src)
    matrix = r.RMinHash.digest_matrix_from_token_sets([_shingles(d["text"]) for d in docs], NUM_PERM, 42)
    lsh = r.RMinHashLSH(THRESHOLD, NUM_PERM, 16)  # rensa's bands must divide num_perm
    flags = lsh.insert_matrix_and_query_duplicate_flags(matrix)
    _write(out, docs, [not f for f in flags])


def datasketch(src, out: Path) -> None:
    from datasketch import MinHash, MinHashLSH

    docs = _docs(src)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    keep = []
    for i, d in enumerate(docs):  # the usual loop: keep a document unless an earlier one matches
        m = MinHash(num_perm=NUM_PERM)
        for s in _shingles(d["text"]):
            m.update(s.encode())
        dup = bool(lsh.query(m))
        keep.append(not dup)
        if not dup:
            lsh.insert(i, m)
    _write(out, docs, keep)


def datatrove_minhash(src, out: Path) -> None:
    """datatrove's four MinHash stages, one task each, 18 buckets x 7 hashes (126, as
    curate's choice for 128 permutations at 0.8). Its default normalisation maps every digit
    to 0, which would make this corpus's words (w123) one word: turned off."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.text import TextNormConfig

    config = MinhashConfig(n_grams=NGRAM, num_buckets=18, hashes_per_bucket=7,
                           norm_config=TextNormConfig(norm_numbers=False))
    work = out / "work"
    reader = JsonlReader(str(Path(src).parent), glob_pattern=Path(src).name, id_key="id")
    steps = [
        [reader, MinhashDedupSignature(str(work / "sigs"), config=config)],
        [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
        [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)],
        [reader, MinhashDedupFilter(str(work / "remove")), JsonlWriter(str(out), compression=None)],
    ]
    for i, pipe in enumerate(steps):
        tasks = config.num_buckets if i == 1 else 1
        LocalPipelineExecutor(pipe, tasks=tasks, workers=1, logging_dir=str(work / f"logs{i}")).run()


def datatrove_gopher(src, out: Path) -> None:
    """Gopher repetition and quality filters, datatrove's defaults, one task."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    reader = JsonlReader(str(Path(src).parent), glob_pattern=Path(src).name, id_key="id")
    LocalPipelineExecutor([reader, GopherRepetitionFilter(), GopherQualityFilter(), JsonlWriter(str(out), compression=None)],
                          tasks=1, workers=1, logging_dir=str(out / "logs")).run()


TOOLS = {"rensa": rensa, "datasketch": datasketch, "datatrove_minhash": datatrove_minhash,
         "datatrove_gopher": datatrove_gopher}

if __name__ == "__main__":
    TOOLS[sys.argv[1]](sys.argv[2], Path(sys.argv[3]))
