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
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained


def test_report_of_a_folder_that_is_no_build(project):
    with pytest.raises(ConfigError, match="nope: no manifest.json; `curate run PIPELINE` writes one"):
        write_report(Path("nope"), Path("r.html"))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (make install puts Debian's there)")
def test_the_page_renders_in_a_real_browser(built, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
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
                            "Token lengths", "Training on this build"):
                assert page.get_by_role("heading", name=heading).is_visible()
            assert page.locator("svg.chart").count() >= 8
            # the examples behind a rule open on a click
            example = page.locator("details", has_text="output.refusal").first
            assert not example.locator(".ex").first.is_visible()
            example.locator("summary").click()
            assert example.locator(".ex").first.is_visible()
            assert "Tell me a joke about cats." in example.inner_text()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert all(u.startswith("file://") for u in requests)  # nothing fetched from anywhere
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
