"""How far MiniLM's vectors and cosines move between CPU settings, and what verify says then.

    python bench/reproducibility.py            # ~1 min on 2 cores

Each setting embeds the same texts (the demo sample's conversations, as the ci pipeline's
semantic step sees them) in its own process, with oneDNN's and MKL's instruction-set caps
and the thread count standing in for another CPU. Printed: the largest difference of any
vector component and of any pair's cosine (float32 BLAS, and the float64 recomputation
the semantic step stores) against the first setting, and how many pairs within 1e-3 of
the 0.92 threshold there are (the ones such a movement could flip).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "native, 1 thread": {"OMP_NUM_THREADS": "1"},
    "native, 2 threads": {"OMP_NUM_THREADS": "2"},
    "AVX2, 1 thread": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "1"},
    "SSE4.1, 1 thread": {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "1"},
    "SSE4.1, 2 threads": {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OMP_NUM_THREADS": "2"},
}
CHILD = """
import sys, numpy as np
sys.path.insert(0, {repo!r})
from curate.readers import read_inputs
from curate.dedup.text import select_text
from curate.dedup.semantic import Embedder
texts = select_text(read_inputs([{data!r}]).records, "conversation")
np.save({out!r}, Embedder(batch_size=8).encode(texts))
"""


def main() -> None:
    from curate.dedup.semantic import exact_cosine

    data = str(REPO / "data" / "demo" / "sample.jsonl")
    vectors = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in SETTINGS.items():
            out = str(Path(tmp) / f"{len(vectors)}.npy")
            code = CHILD.format(repo=str(REPO), data=data, out=out)
            subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
            vectors[name] = np.load(out)
    names = list(vectors)
    base = vectors[names[0]]
    n = len(base)
    left, right = np.triu_indices(n, 1)
    base_f32 = (base @ base.T)[left, right]
    base_f64 = exact_cosine(base, left, right)
    rows = []
    for name in names[1:]:
        v = vectors[name]
        rows.append({"setting": name, "vectors_identical": bool(np.array_equal(v, base)),
                     "max_vector_diff": float(np.abs(v - base).max()),
                     "max_cosine_diff_f32": float(np.abs((v @ v.T)[left, right] - base_f32).max()),
                     "max_cosine_diff_f64": float(np.abs(exact_cosine(v, left, right) - base_f64).max())})
    near = int((np.abs(base_f64 - 0.92) <= 1e-3).sum())
    print(f"{n} texts, {len(left)} pairs; against '{names[0]}'; pairs within 1e-3 of 0.92: {near}")
    print("| setting | vectors identical | max vector diff | max cosine diff (float32 BLAS) | max cosine diff (stored, float64) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['vectors_identical']} | {r['max_vector_diff']:.1e} | {r['max_cosine_diff_f32']:.1e} "
              f"| {r['max_cosine_diff_f64']:.1e} |")
    print(json.dumps({"texts": n, "near_threshold_1e-3": near, "rows": rows}))


if __name__ == "__main__":
    main()
