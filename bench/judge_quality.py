"""How well does a jury separate good records from bad ones? A labelled sample of the demo data.

    python bench/judge_quality.py [--jury rules/juries/offline.yaml] [--per-kind 10]

Clean demo records get the human label 5; planted answer defects (placeholder outputs,
refusals, invalid JSON, runaway repetition) get 1. The script writes those labels to a
temporary file and runs `curate score --calibrate` on them, so the table is what a user
would see checking a jury against their own labels. Only agreement matters here, so the
binary labels make exact agreement strict: a judge must say 5 or 1 to agree.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAD = ("placeholder_output", "refusal", "invalid_json", "repetition")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jury", default=str(REPO / "rules" / "juries" / "offline.yaml"))
    ap.add_argument("--per-kind", type=int, default=10)
    args = ap.parse_args()
    by_label: dict[str, list[dict]] = {}
    for line in (REPO / "data" / "demo" / "raw.jsonl").read_bytes().splitlines():
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(rec, dict):
            by_label.setdefault(rec.get("demo_label"), []).append(rec)
    rng = random.Random(0)
    rows = [dict(r, human_score=5) for r in rng.sample(by_label["clean"], args.per_kind * len(BAD))]
    for kind in BAD:
        rows += [dict(r, human_score=1) for r in rng.sample(by_label[kind], args.per_kind)]
    tmp = Path(tempfile.mkdtemp())
    labels = tmp / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} labelled demo records: clean = 5, {', '.join(BAD)} = 1")
    return subprocess.call([sys.executable, "-m", "curate.cli", "score", "--calibrate", str(labels), "--jury", args.jury,
                            "--cache", str(tmp / "cache.sqlite")], cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
