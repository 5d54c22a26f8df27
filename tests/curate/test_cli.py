"""The curate command through click's CliRunner: outputs, tables, one-line errors."""
import json

import polars as pl
from click.testing import CliRunner

from curate.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_filter_writes_stage_outputs_and_table(repo, tmp_path):
    out = tmp_path / "f"
    res = run("filter", repo / "data/demo/raw.jsonl", "-o", out)
    assert res.exit_code == 0, res.output
    stats = json.loads((out / "stats.json").read_text())
    kept, rejected = pl.read_parquet(out / "kept.parquet"), pl.read_parquet(out / "rejected.parquet")
    assert stats["in"] == 2587 == kept.height + rejected.height  # every input line accounted for
    assert stats["kept"] == kept.height and stats["rejected"] == rejected.height
    assert stats["rules"]["read.parse_error"] == 2
    assert sum(stats["rules"].values()) == rejected.height
    assert set(rejected.columns) >= {"id", "messages", "source", "meta", "stage", "rule", "reason"}
    assert "output.refusal" in res.output and "kept" in res.output


def test_filter_is_byte_identical_across_runs(repo, tmp_path):
    for name in ("a", "b"):
        assert run("filter", repo / "data/demo/raw.jsonl", "-o", tmp_path / name).exit_code == 0
    for f in ("kept.parquet", "rejected.parquet"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_filter_with_the_issue_example_rule(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - name: answer_has_final_number\n    kind: regex\n    field: last_assistant\n"
        "    must_match: '####\\s*-?[\\d,.]+\\s*$'\n")
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}) + "\n"
        + json.dumps({"question": "2+2?", "answer": "four"}) + "\n")
    res = run("filter", tmp_path / "d.jsonl", "-o", tmp_path / "o", "--rules", tmp_path / "r.yaml")
    assert res.exit_code == 0, res.output
    rej = pl.read_parquet(tmp_path / "o/rejected.parquet")
    assert rej["rule"].to_list() == ["answer_has_final_number"]


def test_missing_input_is_exit_2_one_line(tmp_path):
    res = run("filter", tmp_path / "nope.jsonl", "-o", tmp_path / "o")
    assert res.exit_code == 2
    assert res.output.strip() == f"Error: {tmp_path}/nope.jsonl: no such file or folder"


def test_unknown_format_is_exit_2(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n')
    res = run("filter", tmp_path / "d.jsonl", "-o", tmp_path / "o", "--format", "llama")
    assert res.exit_code == 2 and "unknown format 'llama'" in res.output
    res = run("filter", tmp_path / "d.jsonl", "-o", tmp_path / "o")
    assert res.exit_code == 2 and "no known format matches the fields (a)" in res.output
    res = run("filter", tmp_path / "d.jsonl", "-o", tmp_path / "o", "--map", "oops")
    assert res.exit_code == 2 and "--map expects FIELD=COLUMN" in res.output


def test_validate_ok_and_errors_name_file_rule_key(tmp_path, repo):
    res = run("validate", repo / "rules/default.yaml")
    assert res.exit_code == 0 and "rule set" in res.output
    bad = tmp_path / "bad.yaml"
    cases = {
        "rules:\n  - {name: too_short, kind: length, field: assistant, min_word: 3}\n":
            "bad.yaml: rules[0] (too_short): unknown key 'min_word' (did you mean 'min_words'?)",
        "rules:\n  - {name: k, kind: keyword, phrases: [x]}\n":
            "bad.yaml: rules[0] (k).kind: 'keyword' is not one of",
        "rules:\n  - {name: r, kind: regex, field: asistant, must_match: x}\n":
            "bad.yaml: rules[0] (r).field: 'asistant' is not one of",
        "rules:\n  - {kind: roles}\n":
            "bad.yaml: rules[0]: required key 'name' is missing",
        "rules:\n  - {name: r, kind: regex, must_match: '(?<=x)y'}\n":
            "bad.yaml: rules[0] (r).must_match: invalid regex",
        "rules: [\n":
            "bad.yaml:2: not valid YAML",
        "rules:\n  - {name: k, kind: keywords, file: nowhere.txt}\n":
            "bad.yaml: rules[0] (k): keyword file 'nowhere.txt' not found",
    }
    for text, expected in cases.items():
        bad.write_text(text)
        res = run("validate", bad)
        assert res.exit_code == 2, text
        line = res.output.strip()
        assert "\n" not in line and "Traceback" not in line
        assert expected in line, (text, line)
    assert "did you mean 'keywords'" in run("validate", _write(bad, "rules:\n  - {name: k, kind: keyword}\n")).output


def _write(path, text):
    path.write_text(text)
    return path


def test_filter_bad_rules_file_is_exit_2(tmp_path, repo):
    res = run("filter", repo / "data/demo/raw.jsonl", "-o", tmp_path / "o",
              "--rules", _write(tmp_path / "r.yaml", "rules: []\n"))
    assert res.exit_code == 2 and "r.yaml: rules" in res.output


def test_export_formats_round_trip(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"instruction": "Say hi", "input": "", "output": "Hi", "system": "Be kind"}) + "\n")
    run("filter", src, "-o", tmp_path / "f")
    for fmt, ext in [("openai", "jsonl"), ("sharegpt", "jsonl"), ("alpaca", "json")]:
        dest = tmp_path / f"out.{fmt}.{ext}"
        res = run("export", tmp_path / "f", "-o", dest, "--layout", fmt)
        assert res.exit_code == 0, res.output
        from curate.readers import read_inputs

        again = read_inputs([dest])
        assert again.rejected.height == 0
        assert again.records["id"].to_list() == pl.read_parquet(tmp_path / "f/kept.parquet")["id"].to_list()


def test_export_refuses_multi_turn_as_alpaca(tmp_path):
    msgs = [{"role": r, "content": c} for r, c in [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]]
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": msgs}) + "\n")
    res = run("export", tmp_path / "d.jsonl", "-o", tmp_path / "x.json", "--layout", "alpaca")
    assert res.exit_code == 2 and "has 4 turns and no alpaca form" in res.output


def test_export_takes_o_and_layout_old_spellings_still_work(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"instruction": "Say hi", "input": "", "output": "Hi"}) + "\n")
    res = run("export", src, "--out", tmp_path / "a.json", "--layout", "alpaca")
    assert res.exit_code == 0, res.output
    assert "instruction" in json.loads((tmp_path / "a.json").read_text())[0] and "note:" not in res.output
    res = run("export", src, "--to", tmp_path / "b.json", "--format", "alpaca")  # one more release
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b.json").read_text() == (tmp_path / "a.json").read_text()
    assert "note: export --format is now --layout" in res.output
    help_text = run("export", "--help").output
    assert "--to" not in help_text and "--format" not in help_text and "-o, --out" in help_text
    res = run("export", src)
    assert res.exit_code == 2 and "missing -o/--out" in res.output


def test_mistyped_choice_says_did_you_mean(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    res = run("dedup", src, "-o", tmp_path / "o", "--method", "exact,minhsh")
    assert res.exit_code == 2 and "did you mean 'minhash'?" in res.output, res.output
    res = run("dedup", src, "-o", tmp_path / "o", "--on", "promt")
    assert res.exit_code == 2 and "Did you mean 'prompt'?" in res.output, res.output
    res = run("export", src, "-o", tmp_path / "x.jsonl", "--layout", "sharegtp")
    assert res.exit_code == 2 and "Did you mean 'sharegpt'?" in res.output, res.output


def test_help_is_instant_no_heavy_imports():
    import subprocess
    import sys

    code = "import sys; from curate.cli import main; print(sorted(m for m in ('polars','torch','transformers','pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_output_path_that_is_a_file_is_one_line(repo, tmp_path):
    (tmp_path / "taken").write_text("x")
    res = run("filter", repo / "data/demo/raw.jsonl", "-o", tmp_path / "taken")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "taken" in res.output


def test_export_says_what_it_skipped_and_why(tmp_path):
    src = tmp_path / "raw.jsonl"
    src.write_text("\n".join([json.dumps({"prompt": "a", "completion": "b"}), "{broken", "{also broken",
                              json.dumps({"instruction": "x"}), json.dumps({"question": "q", "answer": "a"})]) + "\n")
    res = CliRunner().invoke(main, ["export", str(src), "--to", str(tmp_path / "o.jsonl")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "skipped 3 unreadable records (read.missing_field 1, read.parse_error 2)" in res.output
    assert "wrote 2 records" in res.output
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 2


def test_reader_notices_reach_the_output(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    (d / "loop").symlink_to(".")
    res = CliRunner().invoke(main, ["filter", str(d), "-o", str(tmp_path / "f")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"note: skipped {d}/loop: a link back to {d} (a folder loop)" in res.output
    stats = json.loads((tmp_path / "f" / "stats.json").read_text())
    assert stats["in"] == 1 and stats["notices"] == [f"skipped {d}/loop: a link back to {d} (a folder loop)"]
    res = CliRunner().invoke(main, ["export", str(d), "--to", str(tmp_path / "o.jsonl")], catch_exceptions=False)
    assert "note: skipped" in res.output and "wrote 1 records" in res.output
