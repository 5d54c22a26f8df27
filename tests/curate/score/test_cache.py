import multiprocessing as mp
import sqlite3

import pytest

from curate.config import ConfigError

from curate.score.cache import JudgeCache, cache_key


def _open_and_write(path, barrier, n, results):
    barrier.wait()  # every process opens the fresh file at the same moment
    try:
        cache = JudgeCache(path)
        cache.put_many([(cache_key("m", f"p{n}", {}), "m", {"score": n, "reason": ""})])
        results.put(None)
    except Exception as e:  # report, the parent asserts
        results.put(f"{type(e).__name__}: {e}")


def _race(ctx, path, procs: int) -> list[str]:
    """``procs`` processes open the cache at ``path`` at the same moment and write; their errors."""
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_open_and_write, args=(path, barrier, n, results)) for n in range(procs)]
    for p in ps:
        p.start()
    errors = [results.get(timeout=120) for _ in ps]
    for p in ps:
        p.join()
    return [e for e in errors if e]


def test_many_processes_open_a_new_cache_at_once(tmp_path):
    # score actors on Ray open the jury's cache together; the first open switches the file
    # to WAL, which SQLite refuses at once (no busy timeout) to the others
    ctx = mp.get_context("fork")
    procs, rounds = 8, 5
    for r in range(rounds):
        path = tmp_path / f"cache{r}.sqlite"
        assert _race(ctx, path, procs) == []
        got = JudgeCache(path).get_many([cache_key("m", f"p{n}", {}) for n in range(procs)])
        assert sorted(v["score"] for v in got.values()) == list(range(procs))


def test_answers_survive_reopening(tmp_path):
    path = tmp_path / "c.sqlite"
    key = cache_key("m", "prompt", {"temperature": 0})
    JudgeCache(path).put(key, "m", {"score": 4, "reason": "ok"})
    assert JudgeCache(path).get_many([key, "missing"]) == {key: {"score": 4, "reason": "ok"}}
    assert cache_key("m", "prompt", {"temperature": 0}) != cache_key("m", "prompt", {"temperature": 1})


# --- what shapes a score is in its key: the scale (issue #21)



from curate.score import ScoreConfig, run  # noqa: E402
from tests.helpers import convo, frame  # noqa: E402

from .jurytools import api_judge, write_jury  # noqa: E402


def scale_blind_jury(tmp_path, server, scale, mode="json"):
    """A rubric that never mentions the scale: the prompt is the same on every scale."""
    rubric = tmp_path / "blind.j2"
    rubric.write_text("Grade this.\n{{ transcript }}")
    return write_jury(tmp_path, [api_judge(server, mode=mode)], rubric=str(rubric), scale=scale, retries=0)


def test_a_json_score_is_not_replayed_on_another_scale(judge_server, tmp_path):
    records = frame(convo("q @score=4", "x"))
    first = run(records, ScoreConfig(jury=str(scale_blind_jury(tmp_path, judge_server, [1, 5]))))
    assert first.kept["score"].to_list() == [4.0]
    # on 1..3 the same answer is off the scale: asked again (the server says 4 again), never replayed
    second = run(records, ScoreConfig(jury=str(scale_blind_jury(tmp_path, judge_server, [1, 3]))))
    assert second.rejected["score_reasons"].to_list() == [{"a": "error: out_of_scale"}]
    assert second.stats["judges"]["a"]["cache_hits"] == 0 and judge_server.stats()["calls"] == 2
    # on 0..10 the answer is asked for anew and cached beside the first
    third = run(records, ScoreConfig(jury=str(scale_blind_jury(tmp_path, judge_server, [0, 10]))))
    assert third.kept["score"].to_list() == [4.0] and third.stats["judges"]["a"]["cache_hits"] == 0
    assert sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 2


def test_a_logprobs_score_is_not_replayed_on_another_scale(judge_server, tmp_path):
    # the server puts 0.8 on 4 and 0.1 on 3 and 5: on 1..5 the expectation is 4.0, on 4..5 it is 4.11
    records = frame(convo("q @score=4", "x"))
    first = run(records, ScoreConfig(jury=str(scale_blind_jury(tmp_path, judge_server, [1, 5], "logprobs"))))
    assert first.kept["score"].to_list() == [4.0]
    second = run(records, ScoreConfig(jury=str(scale_blind_jury(tmp_path, judge_server, [4, 5], "logprobs"))))
    assert second.stats["judges"]["a"]["cache_hits"] == 0
    assert second.kept["score"].to_list() == [pytest.approx(round((4 * 0.8 + 5 * 0.1) / 0.9, 4))]
    again = run(records, ScoreConfig(jury=str(scale_blind_jury(tmp_path, judge_server, [1, 5], "logprobs"))))
    assert again.stats["judges"]["a"]["cache_hits"] == 1 and again.kept["score"].to_list() == [4.0]


def test_json_mode_is_in_the_key(judge_server, tmp_path):
    records = frame(convo("q @score=4", "x"))
    for json_mode, calls in (("on", 1), ("off", 2), ("on", 2), ("auto", 3)):
        jury = write_jury(tmp_path, [api_judge(judge_server, json_mode=json_mode)])
        run(records, ScoreConfig(jury=str(jury)))
        assert judge_server.stats()["calls"] == calls, json_mode


def legacy_row(tmp_path, server, mode, value, scale=(1, 5)):
    """Store ``value`` as it was stored before the scale was in the key; return the jury file."""
    from curate.score import _prompts
    from curate.score.jury import load_jury

    jury_path = scale_blind_jury(tmp_path, server, list(scale), mode)
    jury = load_jury(jury_path)
    prompt = _prompts(frame(convo("q", "x")), jury)[mode][0]
    judge = jury.judges[0]
    JudgeCache(jury.cache).put(cache_key(judge.model, prompt, judge.params()), judge.model, value)
    return jury_path


@pytest.mark.parametrize("mode, value, scale, replayed", [
    ("logprobs", {"score": 2.5, "reason": "digit probabilities 1:0.10 2:0.40 3:0.40 4:0.05 5:0.05 (scale mass 0.90)"},
     (1, 5), True),    # its digits are the scale's: it stands (so the committed ci cache is still hit)
    ("logprobs", {"score": 2.5, "reason": "digit probabilities 1:0.10 2:0.40 3:0.40 4:0.05 5:0.05 (scale mass 0.90)"},
     (1, 4), False),   # an expectation over other digits
    ("logprobs", {"score": 2.5, "reason": "something else"}, (1, 5), False),
    ("json", {"score": 3, "reason": "ok"}, (1, 5), True),   # the same answer a call would give, on the scale
    ("json", {"score": 3, "reason": "ok"}, (1, 2), False),  # off this scale
    ("json", {"score": "3", "reason": "ok"}, (1, 5), False),  # not a row we wrote
])
def test_answers_stored_before_the_scale_was_in_the_key(judge_server, tmp_path, mode, value, scale, replayed):
    jury = legacy_row(tmp_path, judge_server, mode, value, scale)
    res = run(frame(convo("q", "x")), ScoreConfig(jury=str(jury)))
    a = res.stats["judges"]["a"]
    assert (a["cache_hits"], a["calls"]) == ((1, 0) if replayed else (0, 1))
    if replayed:
        assert res.kept["score"].to_list() == [float(value["score"])]


# --- a corrupt cache file is moved aside, never deleted; other trouble is one line naming the file


def full_cache(path, n=2000):
    cache = JudgeCache(path)
    cache.put_many([(cache_key("m", f"p{i}", {}), "m", {"score": 3, "reason": "r" * 200}) for i in range(n)])
    cache.close()  # the last connection: SQLite checkpoints the WAL into the file, as a finished run leaves it
    assert not (path.parent / (path.name + "-wal")).exists()


def corrupt(path, how):
    if how == "garbage":  # not a database at all
        path.write_bytes(b"this is not SQLite\n" * 400)
    elif how == "pages":  # a sound header, its tables' pages overwritten
        full_cache(path)
        data = bytearray(path.read_bytes())
        data[8192:len(data) - 4096] = bytes((i * 7919) % 251 for i in range(len(data) - 8192 - 4096))
        path.write_bytes(bytes(data))
    elif how == "truncated":  # a sound header, the file cut short
        full_cache(path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 3])
    return path.read_bytes()


@pytest.mark.parametrize("how", ["pages", "truncated"])
def test_a_corrupt_cache_is_moved_aside_and_rebuilt(judge_server, tmp_path, capsys, how):
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    before = corrupt(tmp_path / "cache.sqlite", how)
    res = run(frame(convo("q @score=4", "x")), ScoreConfig(jury=str(jury)))
    assert res.kept["score"].to_list() == [4.0]
    aside = sorted(tmp_path.glob("cache.sqlite.corrupt-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm", "-journal"))] == [aside[0].name]
    assert aside[0].read_bytes() == before  # the user's file, byte for byte
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "judge cache" in err and aside[0].name in err
    # the new cache holds the answer: the next run replays it, and moves nothing
    again = run(frame(convo("q @score=4", "x")), ScoreConfig(jury=str(jury)))
    assert again.stats["judges"]["a"]["cache_hits"] == 1 and judge_server.stats()["calls"] == 1
    assert len(list(tmp_path.glob("cache.sqlite.corrupt-*"))) == len(aside)


def test_a_corrupt_cache_found_by_many_processes_is_moved_once(tmp_path):
    # score actors open the jury's cache together: one moves the corrupt file, the rest use the new one
    ctx = mp.get_context("fork")
    procs = 6
    path = tmp_path / "c.sqlite"
    corrupt(path, "pages")
    assert _race(ctx, path, procs) == []
    aside = [p for p in tmp_path.glob("c.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm", "-journal"))]
    assert len(aside) == 1
    got = JudgeCache(path).get_many([cache_key("m", f"p{n}", {}) for n in range(procs)])
    assert sorted(v["score"] for v in got.values()) == list(range(procs))


def test_a_file_that_never_was_a_database_is_one_line_and_left_alone(tmp_path):
    # not a cache that went bad (those keep SQLite's header): someone's file at the cache's path
    path = tmp_path / "c.sqlite"
    before = corrupt(path, "garbage")
    with pytest.raises(ConfigError) as e:
        JudgeCache(path).get_many([cache_key("m", "p", {})])
    assert str(path) in str(e.value) and "not an SQLite database" in str(e.value) and "\n" not in str(e.value)
    assert path.read_bytes() == before and list(tmp_path.glob("*.corrupt-*")) == []


def test_a_database_of_another_kind_is_one_line_and_left_alone(tmp_path):
    path = tmp_path / "mine.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE answers (id INTEGER, text TEXT)")
    con.execute("INSERT INTO answers VALUES (1, 'my data')")
    con.commit()
    con.close()
    before = path.read_bytes()
    cache = JudgeCache(path)  # the table exists: opening it is fine
    with pytest.raises(ConfigError) as e:
        cache.put_many([(cache_key("m", "p", {}), "m", {"score": 1, "reason": ""})])
    assert str(path) in str(e.value) and "not a judge cache" in str(e.value) and "\n" not in str(e.value)
    cache.close()
    assert list(tmp_path.glob("*.corrupt-*")) == [] and sqlite3.connect(path).execute(
        "SELECT text FROM answers").fetchall() == [("my data",)]
    assert before  # not moved, not deleted


def test_a_folder_where_the_cache_should_be_is_one_line(tmp_path):
    (tmp_path / "c.sqlite").mkdir()
    with pytest.raises(ConfigError) as e:
        JudgeCache(tmp_path / "c.sqlite")
    assert str(tmp_path / "c.sqlite") in str(e.value) and "\n" not in str(e.value)


def test_a_corrupt_cache_through_the_cli(judge_server, tmp_path):
    from click.testing import CliRunner

    from curate.cli import main

    from .test_cli import write_records

    data = write_records(tmp_path / "in.jsonl")
    jury = write_jury(tmp_path, [api_judge(judge_server)])
    corrupt(tmp_path / "cache.sqlite", "pages")
    r = CliRunner().invoke(main, ["score", str(data), "-o", str(tmp_path / "out"), "--jury", str(jury)])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "moved aside to cache.sqlite.corrupt-" in r.output
