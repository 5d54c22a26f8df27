"""Judge throughput: curate score against an OpenAI-compatible server with added latency.

    python bench/score.py [--latency-ms 20] [--per-slot 40] [--local 32]

The server (curate.testing.fakeserver) runs in its own process, as a real one would, and
sleeps --latency-ms per request. For each concurrency c the ideal is c / latency records
per second (one judge, every call a cache miss); the table prints the measured rate beside
it. The local judge's rate is SmolLM2-135M on this CPU, one forward pass per record.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "curate.testing.fakeserver", "--port", str(port),
                             "--latency-ms", str(latency_ms)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # "fake judge server on ..."
    return proc, f"http://127.0.0.1:{port}/v1"


def records(n: int, tag: str):
    from curate.record import record_id, records_frame

    rows = []
    for i in range(n):
        m = [{"role": "user", "content": f"{tag} question {i}: what is {i} + {i}?"},
             {"role": "assistant", "content": f"{i} + {i} = {2 * i}."}]
        rows.append({"id": record_id(m), "messages": m, "source": "bench", "meta": "{}"})
    return records_frame(rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--per-slot", type=int, default=40, help="records per concurrency slot")
    ap.add_argument("--levels", default="1,8,32,64")
    ap.add_argument("--local", type=int, default=32, help="records for the local judge (0: skip)")
    args = ap.parse_args()

    from curate.score import ScoreConfig, run
    from curate.score.jury import Jury

    import openai  # noqa: F401  (a one-time ~0.6 s import, not a per-record cost)

    rubric = str(REPO / "rules" / "rubrics" / "sft_quality.j2")
    proc, base = start_server(args.latency_ms)
    tmp = Path(tempfile.mkdtemp())
    print(f"server: {base}, {args.latency_ms:g} ms per request, in its own process")
    print(f"{'concurrency':>11}  {'records':>7}  {'rec/s':>8}  {'ideal':>8}  {'share':>6}  {'max in flight':>13}"
          f"  {'client CPU/rec':>14}")
    try:
        for c in [int(x) for x in args.levels.split(",")]:
            n = max(200, c * args.per_slot)
            jury = Jury.model_validate({"judges": [{"name": "j", "backend": "openai", "model": "m", "base_url": base}],
                                        "rubric": rubric, "concurrency": c, "cache": str(tmp / f"c{c}.sqlite")})
            data = records(n, f"c{c}")
            urllib.request.urlopen(urllib.request.Request(base + "/reset", data=b"{}", method="POST")).read()
            t0, c0 = time.perf_counter(), time.process_time()
            res = run(data, ScoreConfig(jury=jury))
            took, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert res.kept.height == n, res.stats
            server = json.loads(urllib.request.urlopen(base + "/stats").read())
            rate, ideal = n / took, c / (args.latency_ms / 1000)
            print(f"{c:>11}  {n:>7}  {rate:>8.0f}  {ideal:>8.0f}  {rate / ideal:>6.1%}  {server['max_inflight']:>13}"
                  f"  {cpu / n * 1000:>11.2f} ms")
    finally:
        proc.terminate()
        proc.wait()
    if args.local:
        jury = Jury.model_validate({"judges": [{"name": "s", "backend": "local", "model": "smollm2-135m-instruct"}],
                                    "rubric": rubric, "cache": str(tmp / "local.sqlite"), "max_chars": 3000})
        from curate.models import model_folder

        model_folder("smollm2-135m-instruct")  # conversion is not part of the rate
        data = records(args.local, "local")
        t0 = time.perf_counter()
        res = run(data, ScoreConfig(jury=jury))
        took = time.perf_counter() - t0
        tokens = res.stats["judges"]["s"]["tokens_in"]
        print(f"local judge smollm2-135m-instruct (CPU, batch 8, model load included): {args.local / took:.1f} rec/s, "
              f"{tokens / took:.0f} prompt tokens/s, {tokens / args.local:.0f} tokens a record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
