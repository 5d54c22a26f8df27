import multiprocessing as mp

from curate.score.cache import JudgeCache, cache_key


def _open_and_write(path, barrier, n, results):
    barrier.wait()  # every process opens the fresh file at the same moment
    try:
        cache = JudgeCache(path)
        cache.put_many([(cache_key("m", f"p{n}", {}), "m", {"score": n, "reason": ""})])
        results.put(None)
    except Exception as e:  # report, the parent asserts
        results.put(f"{type(e).__name__}: {e}")


def test_many_processes_open_a_new_cache_at_once(tmp_path):
    # score actors on Ray open the jury's cache together; the first open switches the file
    # to WAL, which SQLite refuses at once (no busy timeout) to the others
    ctx = mp.get_context("fork")
    procs, rounds = 8, 5
    for r in range(rounds):
        path = tmp_path / f"cache{r}.sqlite"
        barrier, results = ctx.Barrier(procs), ctx.Queue()
        ps = [ctx.Process(target=_open_and_write, args=(path, barrier, n, results)) for n in range(procs)]
        for p in ps:
            p.start()
        errors = [results.get(timeout=120) for _ in ps]
        for p in ps:
            p.join()
        assert [e for e in errors if e] == []
        got = JudgeCache(path).get_many([cache_key("m", f"p{n}", {}) for n in range(procs)])
        assert sorted(v["score"] for v in got.values()) == list(range(procs))


def test_answers_survive_reopening(tmp_path):
    path = tmp_path / "c.sqlite"
    key = cache_key("m", "prompt", {"temperature": 0})
    JudgeCache(path).put(key, "m", {"score": 4, "reason": "ok"})
    assert JudgeCache(path).get_many([key, "missing"]) == {key: {"score": 4, "reason": "ok"}}
    assert cache_key("m", "prompt", {"temperature": 0}) != cache_key("m", "prompt", {"temperature": 1})
