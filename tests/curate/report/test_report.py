"""`curate report`: a real build and a real (tiny) training run on it, the page opened in a
real headless chromium."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.config import ConfigError
from curate.pipeline import build
from curate.report import collect, write_report
from curate.report.collect import trained_spans, word_diff
from curate.report.html import render

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def built(project, tiny_model):
    """The project built, and a short LoRA run trained on the build (as `make demo` does)."""
    from train.config import SFTConfig
    from train.sft import sft

    build(Path("pipelines/p.yaml"), echo=lambda *_: None)
    cfg = SFTConfig(model=str(tiny_model), data="build/p", method="lora", max_length=256, lr=5e-3, batch_size=4,
                    max_steps=4, eval_every=2, seed=0, report_to="none", warmup_ratio=0.0, logging_steps=1,
                    lora={"r": 4, "alpha": 8, "dropout": 0.0}, output_dir="build/p/train")
    sft(cfg, echo=lambda *_: None)
    return Path("build/p")


def test_collect_finds_steps_examples_clusters_tokens_and_training(built):
    data = collect(built)
    assert data["records_in"] == 40 and [s["step"] for s in data["steps"]][0] == "01-dedup"
    filt = data["steps"][1]
    assert filt["examples"]["output.refusal"][0]["text"].startswith("[user] Tell me a joke about cats.")
    assert "read.parse_error" in data["steps"][0]["examples"]
    exact = data["steps"][0]["dedup"]
    assert exact["n_clusters"] == 3 and exact["clusters"][0]["size"] == 2
    assert exact["clusters"][0]["duplicates"][0]["text"] == exact["clusters"][0]["kept"][:160]
    score = data["steps"][3]["score"]
    assert set(score["judges"]) == {"a", "b"} and sum(score["histogram"].values()) == data["steps"][3]["in"]
    samples = data["steps"][4]["samples"]  # the trained spans as the format step finds them
    assert samples and all(r["exact"] for r in samples)
    first = samples[0]
    assert [first["text"][a:b] for a, b in first["spans"]][0].startswith("Add the two numbers")
    from curate.report.collect import _samples
    rough = _samples(Path("build/p/05-format"), {"tokenizer": "no-such-tokenizer"})  # not to be had: the approximation
    assert [r["text"] for r in rough] == [r["text"] for r in samples] and not any(r["exact"] for r in rough)
    assert all(a == b[0] for a, b in zip([r["spans"][0][0] for r in rough], [r["spans"][0] for r in samples]))
    tokens = data["steps"][4]["tokens"]
    assert len(tokens["n_tokens"]) == data["steps"][4]["kept"] and all(t > 0 for t in tokens["n_train_tokens"])
    (run,) = data["training"]
    assert run["folder"] == "build/p/train" and run["method"] == "lora"
    history = json.loads(Path("build/p/train/history.json").read_text())
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert (run["eval_before"], run["eval_after"]) == (evals[0], evals[-1]) and len(run["train_loss"]) == 4


def test_a_training_run_on_other_data_is_not_shown(built):
    train = json.loads(Path("build/p/train/provenance.json").read_text())
    train["dataset"]["files"]["train"] = "0" * 64
    Path("build/p/train/provenance.json").write_text(json.dumps(train))
    assert collect(built)["training"] == []
    assert len(collect(built, [Path("build/p/train")])["training"]) == 1  # unless asked for


def test_cli_report_prints_the_gist(built):
    r = CliRunner().invoke(main, ["report", "build/p", "-o", "build/report.html"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "pipeline p: 40 records in"
    assert lines[1] == "  01-dedup        40 ->      36   (dedup.exact 3, read.parse_error 1)"
    assert any(ln.startswith("top rejection reasons: ") for ln in lines)
    assert any(ln.startswith("training build/p/train: eval loss ") for ln in lines)
    assert lines[-1] == "wrote build/report.html"
    page = Path("build/report.html").read_text()
    # self-contained: one inline script (the filter box), nothing loaded from anywhere
    assert page.count("<script") == 1 and "<script>" in page and " src=" not in page
    assert "http://" not in page and "https://" not in page


def test_report_of_a_folder_that_is_no_build(project):
    with pytest.raises(ConfigError, match="nope: no manifest.json and no step folders"):
        write_report(Path("nope"), Path("r.html"))


def test_a_folder_made_by_separate_commands_is_reported(project):
    """`curate filter` then `curate dedup` into folders of their own: no manifest.json, yet a report,
    the steps in the order they ran (by their input counts, not by name)."""
    runner = CliRunner()
    r = runner.invoke(main, ["filter", "data/raw.jsonl", "-o", "sep/filter"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["dedup", "sep/filter/kept.parquet", "-o", "sep/dedup", "--method", "exact"])
    assert r.exit_code == 0, r.output
    assert not Path("sep/manifest.json").exists()
    data = collect(Path("sep"))
    assert [s["step"] for s in data["steps"]] == ["filter", "dedup"] and data["separate"]
    assert data["records_in"] == data["steps"][0]["in"] and data["steps"][1]["in"] == data["steps"][0]["kept"]
    assert data["steps"][1]["dedup"]["n_clusters"] == 3
    r = runner.invoke(main, ["report", "sep", "-o", "sep/report.html"])
    assert r.exit_code == 0, r.output
    page = Path("sep/report.html").read_text()
    assert "step folders made by separate commands" in page and "dedup cluster" not in page
    assert "exact cluster of 2" in page
    # one step folder given on its own is reported too
    assert [s["step"] for s in collect(Path("sep/dedup"))["steps"]] == ["dedup"]


def test_a_cached_step_shows_the_seconds_of_the_run_that_made_it(built):
    build(Path("pipelines/p.yaml"), echo=lambda *_: None)  # again: every step from the cache
    manifest = json.loads(Path("build/p/manifest.json").read_text())
    assert {b["status"] for b in manifest["build"].values()} == {"cached"}
    data = collect(built)
    ran = json.loads(Path("build/p/05-format/step.json").read_text())["counts"]["seconds"]
    fmt = data["steps"][4]
    assert fmt["status"] == "cached" and fmt["ran_seconds"] == ran
    page = render(data)
    assert f"cached (ran in {ran:.2f}s)" in page


def test_word_diff_marks_the_words_that_differ():
    left, right = word_diff("the cat sat on the mat", "the dog sat on the mat!")
    assert "".join(t for t, _ in left) == "the cat sat on the mat"
    assert "".join(t for t, _ in right) == "the dog sat on the mat!"
    assert [t for t, c in left if c] == ["cat", "mat"] and [t for t, c in right if c] == ["dog", "mat!"]
    assert word_diff("same  text", "same  text") == ([("same  text", False)], [("same  text", False)])


def test_trained_spans_find_the_assistant_turns_in_order():
    text = "<u>hi</u><a>hi</a><u>again</u><a>no</a><a>yes</a>"
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "again"}, {"role": "assistant", "content": "no", "weight": 0},
                {"role": "assistant", "content": " yes\n"}]
    assert [text[a:b] for a, b in trained_spans(text, messages)] == ["hi", "yes"]
    assert trained_spans(text, messages)[0][0] == text.index("<a>") + 3  # the answer, not the question


def test_a_long_reason_is_cut_the_regex_not_the_value():
    from curate.report.html import short_reason

    regex = "(?i)(?:(?:^|\\n|:)[^\\S\\n]*(?:[\\w ]{1,20}[:\\-–][^\\S\\n]*)?(?:\\[[^\\]\\n]{0,80}\\]\\(\\s*<?|x)"
    reason = f"user matches /{regex}/: ' https://www.example.com/news/2425'"
    short = short_reason(reason)
    assert short == f"user matches /{regex[:39]}…/: ' https://www.example.com/news/2425'"
    assert short_reason("too short a regex matches /ab+c/: 'abc'") == "too short a regex matches /ab+c/: 'abc'"
    assert short_reason("x" * 500) == "x" * 159 + "…"


def test_record_text_reasons_and_names_are_escaped():
    """Record text is untrusted: markup in it shows as text, everywhere it is shown."""
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    msgs = [{"role": "user", "content": evil}, {"role": "assistant", "content": evil + " ok"}]
    from curate.report.collect import full_text, snippet
    kept, dup = full_text(msgs), full_text(msgs[:1] + [{"role": "assistant", "content": evil + " no"}])
    step = {"step": "01-x<b>", "kind": "dedup", "in": 2, "kept": 1, "rejected": 1, "rules": {"r<i>": 1},
            "options": {}, "seconds": 1.0, "status": "ran",
            "examples": {"r<i>": [{"source": evil, "reason": "matched " + evil * 5, "text": snippet(msgs)}]},
            "dedup": {"methods": [], "n_clusters": 1, "largest": 2, "clusters": [
                {"method": "exact", "size": 2, "kept_id": "k" * 32, "kept_source": evil, "kept": snippet(msgs),
                 "kept_full": kept, "shown": 6, "more": 0, "duplicates": [
                     {"id": "d" * 32, "source": evil, "similarity": 1.0, "text": "", "full": dup,
                      "diff": word_diff(kept, dup)}]}]},
            "samples": [{"source": evil, "text": "x" + evil + "y", "cut": False, "spans": [(1, 9)],
                         "n_tokens": 3, "n_train_tokens": 1, "exact": True}]}
    page = render({"pipeline": "p<x>", "pipeline_file": None, "build": "b", "lock_sha256": None, "inputs": [],
                   "records_in": 2, "steps": [step], "versions": {}, "training": []})
    assert page.count("<script") == 1 and "<img" not in page and "01-x<b>" not in page and "r<i>" not in page
    assert "p<x>" not in page and "01-x&lt;b&gt;" in page
    from curate.report.html import escape
    assert escape("a\x00b\x07c\x7f\td\n'") == "a\u2400b\u2407c\u2421\td\n&#x27;"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "x<span class='trained'>&lt;script&gt;</span>alert(1)" in page  # a trained span of markup, still text
    long = page.split("class='long' title='")[1].split("'>")[0]
    assert "<" not in long and "'" not in long and long.startswith("matched &lt;script&gt;")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (make install puts Debian's there)")
def test_the_page_renders_in_a_real_browser(built, tmp_path, monkeypatch):
    import polars as pl

    playwright = pytest.importorskip("playwright.sync_api")
    # untrusted record text: markup in a rejected record must show as text, and never run
    rejected = pl.read_parquet("build/p/02-filter/rejected.parquet")
    evil = "<script>window.pwned=1</script><img src=x onerror='window.pwned=2'>"
    rejected = rejected.with_columns(pl.when(pl.col("rule") == "output.refusal").then(pl.col("messages").list.eval(
        pl.element().struct.with_fields(pl.field("content") + pl.lit(" " + evil)))).otherwise(pl.col("messages")))
    rejected.write_parquet("build/p/02-filter/rejected.parquet")
    monkeypatch.setattr("curate.report.html.EXAMPLES_PER_RULE", 1)  # so that a rule has "N more" to open
    write_report(built, Path("build/report.html"))
    problems, requests = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(Path("build/report.html").resolve().as_uri())
            for heading in ("Records per step", "Rejections per rule", "Duplicate clusters", "Scores",
                            "Token lengths", "Kept records as trained", "Training on this build"):
                assert page.get_by_role("heading", name=heading).is_visible()
            assert page.locator("svg.chart").count() >= 8
            # the examples behind a rule open on a click
            example = page.locator("details", has_text="output.refusal").first
            assert not example.locator(".ex").first.is_visible()
            example.locator("summary").click()
            assert example.locator(".ex").first.is_visible()
            assert "Tell me a joke about cats." in example.inner_text()
            assert evil in example.inner_text() and page.evaluate("window.pwned") is None
            # "and N more" opens
            exact = page.locator("details.fg", has_text="dedup.exact").first
            exact.locator("summary").first.click()
            more = exact.locator("details.more")
            assert more.locator("summary").inner_text() == "and 2 more examples"
            assert not more.locator(".ex").first.is_visible()
            more.locator("summary").click()
            assert more.locator(".ex").nth(1).is_visible()
            # the filter box: only what matches stays, its group opened; cleared, all is back
            parse = page.locator("details.fg", has_text="read.parse_error").first
            page.fill("#q", "Expecting ',' delimiter")
            assert parse.is_visible() and parse.locator(".ex").first.is_visible()
            assert not example.is_visible() and not exact.is_visible()
            assert page.inner_text("#qn").startswith("1 of ")
            page.fill("#q", "")
            more.locator("summary").click()  # closed again; a match behind "N more" opens it
            hidden = more.locator(".ex").nth(1).text_content().splitlines()[0]  # source: reason
            page.fill("#q", hidden)
            assert more.locator(".ex").nth(1).is_visible() and not more.locator(".ex").first.is_visible()
            page.fill("#q", "")
            assert example.is_visible() and exact.is_visible() and page.inner_text("#qn") == ""
            # a near duplicate beside the record kept, the differing words marked
            near = page.locator("details.fg", has_text="minhash cluster").first
            near.locator("summary").first.click()
            pair = near.locator("table.pair").first
            assert pair.is_visible() and "13!" in pair.locator("ins.d").all_inner_texts()
            assert "13." in pair.locator("del.d").all_inner_texts()
            # kept records as rendered for training, the assistant's answers marked
            trained = page.locator(".sample .trained")
            assert trained.count() >= 1 and trained.first.inner_text().startswith("Add the two numbers")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert all(u.startswith("file://") for u in requests)  # nothing fetched from anywhere
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
