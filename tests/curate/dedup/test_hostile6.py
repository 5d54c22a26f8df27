"""A hostile user of `curate dedup` (session 6): degenerate inputs for every method, the
ASCII fast paths against the normalised path, record tables against JSONL, scores, repeated
sources, option edges, and the embedding store damaged or shared.

The tests under "bugs found" are the bugs this hunt found: each was a strict xfail until
its fix landed (session 6). ``CURATE_HOSTILE_LONG=1`` runs the long hunts."""
from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.config import ConfigError
from curate.dedup import DedupConfig, run
from curate.dedup import minhash as mh
from curate.dedup.semantic import Embedder
from curate.dedup.text import Conversations, normalise
from curate.readers import read_inputs
from curate.record import record_id, records_frame
from tests.helpers import convo, frame

from .test_store import CountingEmbedder

LONG = os.environ.get("CURATE_HOSTILE_LONG") == "1"
REPO = Path(__file__).resolve().parents[3]
TEXT = ("the quick brown fox jumps over the lazy dog and then keeps running far away from the farm "
        "house until the sun goes down behind the hills")


def check_result(df: pl.DataFrame, result) -> None:
    """kept + rejected = read; every duplicate names a kept record and its cluster, which the
    clusters table holds with the same kept member; the kept member of every cluster is kept."""
    assert result.kept.height + result.rejected.height == df.height
    assert sorted(result.kept["source"].to_list() + result.rejected["source"].to_list()) == \
        sorted(df["source"].to_list())
    clusters = result.extra["clusters"]
    kept = set(result.kept["source"].to_list())
    by_source = {s: (c, k, m) for s, c, k, m in clusters.select("source", "cluster", "kept_source", "method").iter_rows()}
    removed_later = {}  # a record kept by one method may be removed by the next
    for row in result.rejected.iter_rows(named=True):
        if row["rule"] in ("dedup.exact", "dedup.minhash", "dedup.semantic"):
            removed_later[row["source"]] = row["rule"]
    for row in result.rejected.iter_rows(named=True):
        if row["rule"] not in ("dedup.exact", "dedup.minhash", "dedup.semantic"):
            continue
        assert row["cluster"] is not None
        cluster, kept_source, method = by_source[row["source"]]
        assert row["cluster"] == cluster and f"dedup.{method}" == row["rule"]
        assert row["reason"].startswith(f"duplicate of {kept_source} (id ")
        assert kept_source in kept or removed_later.get(kept_source, row["rule"]) != row["rule"]
    # one kept member per cluster
    assert clusters.group_by("method", "cluster").agg(pl.col("kept_source").n_unique())["kept_source"].max() in (None, 1)


def _shuffled(seed: int) -> str:
    words = TEXT.split()
    random.Random(seed).shuffle(words)
    return " ".join(words)


def texts_frame(*pairs) -> pl.DataFrame:
    return frame(*[convo(p, r) for p, r in pairs])


EDGE_FRAMES = {
    "empty input": lambda: frame(),
    "one record": lambda: texts_frame(("hi", "there")),
    "all identical (one star bucket)": lambda: texts_frame(*[("Q: " + TEXT, TEXT)] * 150),
    "empty strings": lambda: texts_frame(*[("", "")] * 4),
    "white space only": lambda: texts_frame(("  ", "\n\t"), ("\u3000", "\x0b"), (" ", " ")),
    "punctuation only": lambda: texts_frame(("!!!", "???"), ("!!!", "???"), ("...", ",,,")),
    "fewer words than the n-gram": lambda: texts_frame(("hi", "yes"), ("why", "no"), ("stop", "later"), ("hi", "yes")),
    "case, width, NFC/NFD variants": lambda: texts_frame(
        ("Café au lait", TEXT), ("CAFÉ AU LAIT", TEXT.upper()), (unicodedata.normalize("NFD", "Café au lait"), TEXT),
        ("Ｃａｆé au lait", TEXT), ("Cafe au lait", TEXT)),
}


@pytest.mark.parametrize("name", list(EDGE_FRAMES))
@pytest.mark.parametrize("methods", ["exact", "minhash", "exact,minhash"])
@pytest.mark.parametrize("on", ["conversation", "prompt", "response"])
def test_degenerate_inputs_keep_the_contract(name, methods, on):
    df = EDGE_FRAMES[name]()
    for signature in ("oph", "kperm"):
        for verify in ("estimate", "exact"):
            result = run(df, DedupConfig(methods=methods, on=on, signature=signature, verify=verify))
            check_result(df, result)


def test_one_giant_cluster_names_the_first_record_everywhere():
    df = EDGE_FRAMES["all identical (one star bucket)"]()
    for methods in (["exact"], ["minhash"]):
        result = run(df, DedupConfig(methods=methods))
        assert result.kept["source"].to_list() == ["test:1"]
        assert set(result.rejected["cluster"].to_list()) == {0}
        assert set(result.extra["clusters"]["kept_source"].to_list()) == {"test:1"}


def test_unicode_variants_are_one_document_for_exact_and_minhash():
    df = EDGE_FRAMES["case, width, NFC/NFD variants"]()
    for methods in (["exact"], ["minhash"]):
        result = run(df, DedupConfig(methods=methods, threshold={"minhash": 1.0} if methods == ["minhash"] else {}))
        # "Cafe" (no accent) is another word; every other variant is the first record
        assert result.kept["source"].to_list() == ["test:1", "test:5"], methods


ALPHABET = list("ab AB\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x00\x7f.,!-'") + [
    "é", "\x85", "\xa0", "ß", "İ", "Ａ", "\u2028", "\u3000", "ﬁ", "e\u0301"]


def _random_frame(rng: random.Random, n: int) -> pl.DataFrame:
    def text(ascii_only):
        alphabet = [c for c in ALPHABET if c.isascii()] if ascii_only else ALPHABET
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))

    rows = []
    for i in range(n):
        ascii_only = rng.random() < 0.7
        turns = [{"role": "user" if t == 0 else rng.choice(["user", "assistant", "system"]), "content": text(ascii_only)}
                 for t in range(rng.randint(1, 4))]
        if rng.random() < 0.2:
            call = [{"type": "function", "function": {"name": "f", "arguments": text(False)}}]
            turns.append({"role": "assistant", "content": text(ascii_only),
                          "tool_calls": json.dumps(call, ensure_ascii=rng.random() < 0.5)})
        rows.append({"id": record_id(turns), "messages": turns, "source": f"r:{i}", "meta": "{}"})
    return records_frame(rows)


@pytest.mark.parametrize("seed", range(30 if LONG else 2))
def test_ascii_fast_paths_sign_as_the_normalised_text(seed):
    """The turns read in place, the String column read in place, and the list path with
    shingle sets all give the signature of the normalised joined text (white space that
    str.split() knows, control characters, NEL, NBSP, ideographic space, ligatures...)."""
    rng = random.Random(seed)
    for _ in range(20 if LONG else 4):
        conv = Conversations(_random_frame(rng, 20)["messages"])
        column = conv.column()
        for signature in ("oph", "kperm"):
            for ngram in (1, 3, 5):
                want = mh.shingle_and_sign([normalise(t) for t in column.to_list()], 64, ngram, seed=1,
                                           signature=signature).signatures
                for got in (mh.shingle_and_sign(conv, 64, ngram, seed=1, signature=signature),
                            mh.shingle_and_sign(column, 64, ngram, seed=1, signature=signature),
                            mh.shingle_and_sign(column.to_list(), 64, ngram, seed=1, signature=signature,
                                                keep_sets=True)):
                    bad = np.flatnonzero((got.signatures != want).any(axis=1))
                    assert len(bad) == 0, repr(column[int(bad[0])])


def test_one_non_ascii_character_elsewhere_changes_nothing_else():
    """The same long document read by the ASCII path and, with one accented word added at its
    end, by the normalised path: a near duplicate, estimated as such."""
    rng = random.Random(1)
    words = [f"w{rng.randrange(5000)}" for _ in range(200_000)]
    text = " ".join(words)
    df = texts_frame(("q", text), ("q", text + " café"), ("q", text.upper()))
    for verify in ("estimate", "exact"):
        result = run(df, DedupConfig(methods=["minhash"], threshold={"minhash": 0.99}, verify=verify))
        assert result.kept["source"].to_list() == ["test:1"], verify


def test_a_record_table_and_its_jsonl_give_the_same_decisions(tmp_path):
    raw = read_inputs([REPO / "data" / "demo" / "raw.jsonl"]).records
    raw.write_parquet(tmp_path / "raw.parquet")
    table = read_inputs([tmp_path / "raw.parquet"]).records
    for methods in (["exact"], ["minhash"], ["exact", "minhash"]):
        for on in ("conversation", "response"):
            a, b = (run(df, DedupConfig(methods=methods, on=on)) for df in (raw, table))
            for x, y in ((a.kept, b.kept), (a.rejected, b.rejected), (a.extra["clusters"], b.extra["clusters"])):
                assert x.equals(y), (methods, on)


def test_the_same_file_given_twice_keeps_one_copy_and_names_it(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"messages": convo(f"question {i}", _shuffled(i))}) + "\n" for i in range(3)))
    r = CliRunner().invoke(main, ["dedup", str(path), str(path), "-o", str(tmp_path / "out"),
                                  "--method", "exact,minhash"])
    assert r.exit_code == 0, r.output
    kept = pl.read_parquet(tmp_path / "out" / "kept.parquet")
    rejected = pl.read_parquet(tmp_path / "out" / "rejected.parquet")
    assert kept.height == 3 and rejected.height == 3 and rejected["source"].n_unique() == 3
    assert set(rejected["rule"]) == {"dedup.exact"}
    named = {r.split(" ")[2] for r in rejected["reason"].to_list()}
    assert named == set(kept["source"].to_list())


@pytest.mark.parametrize("scores, kept", [
    ([float("nan"), None, 2.0, 2.0], "test:3"),        # NaN and null lose; a tie keeps the first
    ([None, None, None, None], "test:1"),
    ([float("nan")] * 4, "test:1"),
    ([float("-inf"), float("inf"), 5.0, None], "test:2"),
    ([1, None, 3, 3], "test:3"),                        # integers with a null
])
def test_the_kept_member_is_the_best_score_nan_and_null_last(scores, kept):
    df = texts_frame(*[("How do I reset my password today?", TEXT)] * 4).with_columns(pl.Series("score", scores))
    for methods in (["exact"], ["minhash"]):
        result = run(df, DedupConfig(methods=methods))
        assert result.kept["source"].to_list() == [kept], methods
        check_result(df, result)


@pytest.mark.parametrize("args, says", [
    (["--threshold", "0"], "must be in (0, 1]"),
    (["--threshold", "1.5"], "must be in (0, 1]"),
    (["--threshold", "nan"], "must be in (0, 1], got nan"),
    (["--threshold", "exact=0.5"], "threshold given for 'exact'"),
    (["--threshold", "minhash=abc"], "expects a number or METHOD=NUMBER"),
    (["--bands", "10"], "give both bands and rows"),
    (["--bands", "10", "--rows", "20"], "bands*rows (200) exceeds num_perm (128)"),
    (["--num-perm", "1"], "num_perm"),
    (["--ngram", "0"], "ngram"),
    (["--on", "prompts"], "Did you mean 'prompt'?"),
    (["--signature", "x"], "'x' is not one of 'oph', 'kperm'"),
    (["--method", "minhsh"], "did you mean 'minhash'"),
])
def test_bad_options_are_one_line(tmp_path, args, says):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"messages": convo("q", "a")}) + "\n")
    r = CliRunner().invoke(main, ["dedup", str(path), "-o", str(tmp_path / "out"), "--method", "minhash", *args])
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.output.strip().splitlines()
    # one line; click's own usage errors (a bad choice) add its usage lines above it
    assert lines[-1].startswith("Error: ") and says in lines[-1], r.output
    assert len(lines) == 1 or lines[0].startswith("Usage: "), r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bands, rows, num_perm", [(128, 1, 128), (1, 128, 128), (1, 2, 2), (2, 1, 2), (7, 3, 22)])
def test_band_edges_run_and_exact_copies_are_always_found(bands, rows, num_perm):
    df = texts_frame(("q one", TEXT), ("q two", "something else entirely"), ("q one", TEXT))
    for signature in ("oph", "kperm"):
        result = run(df, DedupConfig(methods=["minhash"], bands=bands, rows=rows, num_perm=num_perm,
                                     signature=signature, threshold={"minhash": 1.0}))
        assert result.kept["source"].to_list() == ["test:1", "test:2"]
        assert result.stats["methods"][0]["bands"] == bands


# ---- the embedding store ------------------------------------------------------------------------

def _store(path: Path, n: int = 2000) -> list[str]:
    texts = [f"text number {i} " + "padding " * 30 for i in range(n)]
    CountingEmbedder(path).embed(texts)
    return texts


@pytest.mark.parametrize("share", [0.001, 0.1, 0.5, 0.97])
def test_a_truncated_store_is_one_line(tmp_path, share):
    store = tmp_path / "v.sqlite"
    texts = _store(store)
    data = store.read_bytes()
    store.write_bytes(data[:int(len(data) * share)])
    with pytest.raises(ConfigError, match="not a readable embedding store"):
        CountingEmbedder(store).embed(texts)


def test_a_store_that_is_not_sqlite_or_a_folder_is_one_line(tmp_path):
    (tmp_path / "text.sqlite").write_text("hello, not a database " * 100)
    with pytest.raises(ConfigError, match="not a readable embedding store"):
        CountingEmbedder(tmp_path / "text.sqlite").embed(["x"])
    (tmp_path / "other.sqlite").unlink(missing_ok=True)
    con = sqlite3.connect(tmp_path / "other.sqlite")
    con.execute("CREATE TABLE vectors (a INTEGER)")  # another program's table of that name
    con.commit()
    con.close()
    with pytest.raises(ConfigError, match="not a readable embedding store"):
        CountingEmbedder(tmp_path / "other.sqlite").embed(["x"])


def test_a_stored_vector_of_the_wrong_size_is_computed_again(tmp_path):
    store = tmp_path / "v.sqlite"
    texts = _store(store, 3)
    con = sqlite3.connect(store)
    con.execute("UPDATE vectors SET dim = dim + 1")
    con.commit()
    con.close()
    emb = CountingEmbedder(store)
    emb.embed(texts)
    assert emb.seen == texts


_WRITER = """
import sys
sys.path.insert(0, {repo!r})
from tests.curate.dedup.test_store import CountingEmbedder
texts = [f"shared {{i}}" for i in range(300)] + [f"own {{sys.argv[1]}} {{i}}" for i in range(300)]
for k in range(0, len(texts), 50):
    CountingEmbedder({store!r}).embed(texts[k:k + 50])
"""


def test_two_processes_share_one_store(tmp_path):
    store = tmp_path / "v.sqlite"
    code = _WRITER.format(repo=str(REPO), store=str(store))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(k)], stderr=subprocess.PIPE) for k in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    con = sqlite3.connect(store)
    assert con.execute("SELECT count(*) FROM vectors").fetchone()[0] == 900
    con.close()


def test_semantic_on_empty_identical_and_boilerplate_texts(tmp_path):
    """The real offline model on a few texts: empty ones are duplicates of each other, identical
    ones one cluster, the contract holds; a second run replays every vector from the store."""
    df = texts_frame(("", ""), ("", ""), *[("How do I reset my password?", "Use the reset link.")] * 3,
                     ("You are a helpful assistant.", "OK."), ("Name a prime.", "7"))
    store = tmp_path / "v.sqlite"
    emb = Embedder(store=store, cache_dir=tmp_path / "c")  # one model load for both runs
    first = run(df, DedupConfig(methods=["semantic"]), embedder=emb)
    check_result(df, first)
    assert first.kept.height == 4
    embedded = emb.embedded
    again = run(df, DedupConfig(methods=["exact", "semantic"]), embedder=emb)
    check_result(df, again)
    assert again.kept["source"].to_list() == first.kept["source"].to_list()
    assert emb.embedded == embedded and again.stats["methods"][1]["replayed"] > 0


# ---- bugs found (xfail, strict, until fixed) ----------------------------------------------------

def test_a_store_with_a_damaged_page_is_one_line(tmp_path):
    store = tmp_path / "v.sqlite"
    texts = _store(store)
    data = bytearray(store.read_bytes())
    page = 4096 * (len(data) // 4096 // 2)
    data[page:page + 4096] = b"\xff" * 4096
    store.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="not a readable embedding store"):
        CountingEmbedder(store).embed(texts)


@pytest.mark.parametrize("scores", [["1.5", "high", None, "2"], [[1.0], [2.0], None, [3.0]]])
def test_a_non_numeric_score_column_is_one_line_or_ignored(tmp_path, scores):
    df = texts_frame(*[("How do I reset my password today?", TEXT)] * 4).with_columns(pl.Series("score", scores))
    df.write_parquet(tmp_path / "t.parquet")
    r = CliRunner().invoke(main, ["dedup", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "out")])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 2), r.output


def test_repeated_keys_still_give_each_duplicate_its_own_cluster():
    a, b = convo("alpha question here", TEXT), convo("beta question here", TEXT + " beta")
    rows = [(a, "P"), (a, "X"), (b, "Q"), (b, "X")]
    df = records_frame([{"id": record_id(m), "messages": m, "source": s, "meta": "{}"} for m, s in rows])
    result = run(df, DedupConfig(methods=["exact"]))
    assert result.rejected["reason"].str.slice(0, 14).to_list() == ["duplicate of P", "duplicate of Q"]
    assert result.rejected["cluster"].to_list() == [0, 1]


@pytest.mark.parametrize("inside", ["", "out"])
def test_an_output_folder_in_the_input_folder_does_not_change_the_input(tmp_path, inside):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(json.dumps({"messages": convo(f"q {i}", _shuffled(i))}) + "\n"
                                            for i in range(3)))
    out = folder / inside if inside else folder
    runner = CliRunner()
    first = runner.invoke(main, ["dedup", str(folder), "-o", str(out)])
    (folder / "b.jsonl").write_text(json.dumps({"messages": convo("q new", "a new record")}) + "\n")
    second = runner.invoke(main, ["dedup", str(folder), "-o", str(out)])
    if first.exit_code == 0 and second.exit_code == 0:
        assert json.loads((out / "stats.json").read_text())["in"] == 4
    else:  # refused: an output folder that is (or is inside) the input
        assert first.exit_code == 2 and len(first.output.strip().splitlines()) == 1, first.output


@pytest.mark.skipif(not LONG, reason="CURATE_HOSTILE_LONG=1: a 10 MB document")
def test_long_a_ten_megabyte_document(tmp_path):
    rng = random.Random(0)
    vocab = ["".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(5000)]
    big = " ".join(rng.choice(vocab) for _ in range(1_700_000))
    df = texts_frame(("q", big), ("q", big + " é"), ("q", big.upper()), ("q", "short"))
    for methods in (["exact"], ["minhash"]):
        for verify in ("estimate", "exact"):
            result = run(df, DedupConfig(methods=methods, verify=verify))
            check_result(df, result)
            assert result.kept.height == (3 if methods == ["exact"] else 2)


def test_the_ray_exact_reducer_takes_an_empty_partition():
    pa = pytest.importorskip("pyarrow")
    from curate.engine.ray_shuffle import ROW, _exact_part

    empty = pa.table({ROW: pa.array([], pa.int64()), "h1": pa.array([], pa.uint64()), "h2": pa.array([], pa.uint64())})
    assert _exact_part(empty).num_rows == 0


@pytest.mark.skipif(not LONG, reason="CURATE_HOSTILE_LONG=1: starts a local Ray instance (~20 s)")
def test_long_ray_and_local_engines_agree_on_degenerate_inputs(monkeypatch):
    pytest.importorskip("ray")
    from curate.engine.ray_engine import connect, ray_run

    monkeypatch.setenv("CURATE_RAY_CPUS", "2")
    monkeypatch.setenv("CURATE_RAY_BLOCK_ROWS", "23")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray = connect()
    try:
        failures = []
        for name in ("one record", "all identical (one star bucket)", "case, width, NFC/NFD variants"):
            df = EDGE_FRAMES[name]()
            for methods in (["exact"], ["minhash"], ["exact", "minhash"]):
                config = DedupConfig(methods=methods)
                try:
                    a = ray_run("dedup", config)(df)
                except Exception as e:  # noqa: BLE001 -- collected, then reported together
                    failures.append(f"{name} {methods}: {type(e).__name__}")
                    continue
                b = run(df, config)
                if not (a.kept.equals(b.kept) and a.rejected.equals(b.rejected)):
                    failures.append(f"{name} {methods}: differ")
        assert not failures, failures
    finally:
        import ray as ray_module

        ray_module.shutdown()


@pytest.mark.parametrize("content, says", [
    (b"", "no labelled pairs"),
    (b'{"a": "x", "b": "y"}\n', "line 1"),
    (b'{"a": "x", "b": "y", "duplicate": "yes"}\n', "line 1"),
    (b'{"a": ["hi"], "b": "y", "duplicate": true}\n', "line 1"),
    (b"null\n", "line 1"),
    (b"\n\n[1, 2]\n", "line 3"),
])
def test_a_bad_calibration_file_is_one_line(tmp_path, content, says):
    from curate.dedup.calibrate import read_pairs

    (tmp_path / "pairs.jsonl").write_bytes(content)
    with pytest.raises(ConfigError, match=says):
        read_pairs(tmp_path / "pairs.jsonl")


@pytest.mark.parametrize("content", [b'\xff\xfe{"a": "x", "b": "y", "duplicate": true}\n',
                                     b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b', "b": "y", "duplicate": true}\n'])
def test_an_unreadable_calibration_file_is_one_line(tmp_path, content):
    from curate.dedup.calibrate import read_pairs

    (tmp_path / "pairs.jsonl").write_bytes(content)
    with pytest.raises(ConfigError):
        read_pairs(tmp_path / "pairs.jsonl")


def test_an_embedding_store_that_is_a_folder_is_one_line(tmp_path):
    (tmp_path / "store").mkdir()
    with pytest.raises(ConfigError, match="store"):
        CountingEmbedder(tmp_path / "store").embed(["x"])


def test_borderline_pairs_print_no_terminal_escapes(tmp_path, monkeypatch):
    unit = np.zeros((1, 8), dtype=np.float32)
    unit[0, 0] = 1.0
    monkeypatch.setattr(Embedder, "embed", lambda self, texts, encode=None: np.repeat(unit, len(texts), axis=0))
    path = tmp_path / "esc.jsonl"
    path.write_text("".join(json.dumps({"messages": convo(f"How {w} I reset my password \x1b]0;PWNED\x07 \x1b[2J?",
                                                          "Use the reset link.")}) + "\n" for w in ("do", "can")))
    r = CliRunner().invoke(main, ["dedup", str(path), "-o", str(tmp_path / "out"), "--method", "semantic"])
    assert r.exit_code == 0, r.output
    assert "borderline pairs" in r.output
    assert "\x1b" not in r.output and "\x07" not in r.output


# ---- found beside the hunt (fixed with it) -------------------------------------------------------

@pytest.mark.parametrize("present", [["kept.parquet"], ["stats.json"], ["kept.parquet", "stats.json"]])
def test_a_users_files_named_like_outputs_are_never_overwritten(tmp_path, present):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"messages": convo("q", TEXT)}) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    for name in present:
        (out / name).write_text("the user's own file\n")  # a stats.json without a stage's "stage"
    r = CliRunner().invoke(main, ["dedup", str(path), "-o", str(out)])
    assert r.exit_code == 2 and "no curate stage wrote" in r.output, r.output
    assert all((out / name).read_text() == "the user's own file\n" for name in present)


def test_a_stage_folder_is_rewritten_run_after_run(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"messages": convo("q", TEXT)}) + "\n")
    for _ in range(2):
        r = CliRunner().invoke(main, ["dedup", str(path), "-o", str(tmp_path / "out")])
        assert r.exit_code == 0, r.output


def test_a_check_across_options_names_no_empty_field(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"messages": convo("q", TEXT)}) + "\n")
    r = CliRunner().invoke(main, ["dedup", str(path), "-o", str(tmp_path / "out"), "--bands", "3"])
    assert r.exit_code == 2 and "dedup options: give both bands and rows" in r.output, r.output
