"""Every input kind and format, and every bad-input case, end up as records or read.* rows."""
import json

import polars as pl
import pytest

from curate.readers import InputError, read_inputs

Q, A = "What is the capital of France?", "Paris."
OPENAI = {"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]}
SHAREGPT = {"conversations": [{"from": "human", "value": Q}, {"from": "gpt", "value": A}]}
ALPACA = {"instruction": Q, "input": "", "output": A}
PC = {"prompt": Q, "completion": A}
QA = {"question": Q, "answer": A}
ALL = [OPENAI, SHAREGPT, ALPACA, PC, QA]


def bare(messages) -> list[dict]:
    """Turns without the optional fields they do not have (null weight, name, tool_calls)."""
    return [{k: v for k, v in m.items() if v is not None} for m in messages.to_list()]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_format_gives_the_same_record_and_id(tmp_path):
    read = read_inputs([write_jsonl(tmp_path / "mixed.jsonl", ALL)])
    assert read.rejected.height == 0
    assert read.records["id"].n_unique() == 1
    assert bare(read.records["messages"][0]) == [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]
    assert read.records["source"].to_list() == [f"{tmp_path}/mixed.jsonl:{i}" for i in range(1, 6)]


def test_same_id_from_jsonl_alpaca_json_parquet_csv(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([ALPACA]))
    pl.DataFrame([PC]).write_parquet(tmp_path / "p.parquet")
    pl.DataFrame([QA]).write_csv(tmp_path / "q.csv")
    ids = set()
    for f in ["a.json", "p.parquet", "q.csv"]:
        ids |= set(read_inputs([tmp_path / f]).records["id"].to_list())
    ids |= set(read_inputs([write_jsonl(tmp_path / "o.jsonl", [OPENAI])]).records["id"].to_list())
    assert len(ids) == 1


def test_alpaca_input_and_system(tmp_path):
    rec = {"instruction": "Translate.", "input": "Bonjour", "output": "Hello", "system": "Be exact.", "lang": "fr"}
    read = read_inputs([write_jsonl(tmp_path / "x.jsonl", [rec])])
    assert bare(read.records["messages"][0]) == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Translate.\n\nBonjour"},
        {"role": "assistant", "content": "Hello"}]
    assert json.loads(read.records["meta"][0]) == {"lang": "fr"}  # unmapped fields kept untouched


def test_sharegpt_system_and_roles(tmp_path):
    rec = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "U"},
                             {"from": "gpt", "value": "A"}], "id": "orig-7"}
    read = read_inputs([write_jsonl(tmp_path / "s.jsonl", [rec])])
    assert [m["role"] for m in read.records["messages"][0].to_list()] == ["system", "user", "assistant"]
    assert json.loads(read.records["meta"][0]) == {"id": "orig-7"}


def test_openai_text_parts_accepted_media_rejected(tmp_path):
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                          {"role": "assistant", "content": "Hello"}]}
    media = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                          {"role": "assistant", "content": "A cat"}]}
    read = read_inputs([write_jsonl(tmp_path / "m.jsonl", [parts, media])])
    assert read.records["messages"][0].to_list()[0]["content"] == "Hi there"
    assert read.rejected["rule"].to_list() == ["read.non_text_content"]


def test_json_array_single_object_and_jsonl_named_json(tmp_path):
    (tmp_path / "arr.json").write_text(json.dumps([ALPACA, QA]))
    (tmp_path / "one.json").write_text(json.dumps(OPENAI))
    (tmp_path / "lines.json").write_text(json.dumps(PC) + "\n" + json.dumps(QA) + "\n")
    assert read_inputs([tmp_path / "arr.json"]).records.height == 2
    assert read_inputs([tmp_path / "one.json"]).records.height == 1
    assert read_inputs([tmp_path / "lines.json"]).records.height == 2


def test_hf_datasets_folder_and_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([OPENAI, OPENAI | {"messages": OPENAI["messages"][:1] + [{"role": "assistant", "content": "Lyon?"}]}])
    ds.save_to_disk(str(tmp_path / "ds"))
    read = read_inputs([tmp_path / "ds"])
    assert read.records.height == 2 and read.rejected.height == 0
    assert read.records["source"][0] == f"{tmp_path}/ds:1"
    dd = datasets.DatasetDict({"train": ds, "test": datasets.Dataset.from_list([QA])})
    dd.save_to_disk(str(tmp_path / "dd"))
    read = read_inputs([tmp_path / "dd"])
    assert read.records.height == 3
    assert read.records["source"][-1] == f"{tmp_path}/dd/test:1"


def test_folder_of_files_in_sorted_order(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    write_jsonl(d / "b.jsonl", [QA])
    write_jsonl(d / "a.jsonl", [PC])
    (d / "sub" / "c.json").write_text(json.dumps([ALPACA]))
    (d / "notes.txt").write_text("ignored")
    read = read_inputs([d])
    assert [s.split("/")[-1] for s in read.records["source"].to_list()] == ["a.jsonl:1", "b.jsonl:1", "c.json:1"]


def test_stage_output_folder_chains(tmp_path):
    from curate.stage import StageResult, write_stage

    first = read_inputs([write_jsonl(tmp_path / "x.jsonl", [OPENAI, QA])])
    extra = first.records.with_columns(pl.Series("score", [1.0, 2.0]))
    write_stage(StageResult(extra, first.rejected, {}), tmp_path / "stage")
    again = read_inputs([tmp_path / "stage"])
    assert again.records.equals(extra)  # columns a stage added travel on


def test_bad_lines_become_rejected_rows(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b"\n".join([
        json.dumps(OPENAI).encode(),
        b'{"instruction": "x", "output": ',               # 2: broken JSON
        b'{"prompt": "caf\xe9", "completion": "coffee"}',  # 3: invalid UTF-8
        b'{"instruction": "List three fruits."}',         # 4: missing field
        b'{"question": "2+2?", "answer": 4}',             # 5: mistyped field
        b'{"messages": []}',                              # 6: empty conversation
        b'{"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": ""}]}',  # 7
        b'{"conversations": [{"from": "narrator", "value": "x"}]}',  # 8: unknown role
        b'{"foo": 1}',                                   # 9: unknown format
        b'[1, 2]',                                       # 10: not an object
    ]) + b"\n")
    read = read_inputs([f])
    assert read.records.height == 1
    got = dict(zip(read.rejected["source"].to_list(), read.rejected["rule"].to_list()))
    src = f"{f}:"
    assert got == {
        src + "2": "read.parse_error", src + "3": "read.invalid_utf8", src + "4": "read.missing_field",
        src + "5": "read.bad_field", src + "6": "read.empty_conversation", src + "7": "read.empty_conversation",
        src + "8": "read.bad_role", src + "9": "read.unknown_format", src + "10": "read.bad_record",
    }
    reasons = dict(zip(read.rejected["rule"].to_list(), read.rejected["reason"].to_list()))
    assert reasons["read.missing_field"] == f"{f}:4: field 'output' is missing"
    assert reasons["read.bad_field"] == f"{f}:5: field 'answer' is int, expected a string"
    assert reasons["read.invalid_utf8"] == f"{f}:3: invalid UTF-8 at column 16"
    assert set(read.rejected["stage"].to_list()) == {"read"}
    # nothing lost: the raw input is kept in meta
    raw = dict(zip(read.rejected["rule"].to_list(), read.rejected["meta"].to_list()))
    assert json.loads(raw["read.parse_error"]) == {"raw": '{"instruction": "x", "output": '}
    assert "caf\\xe9" in json.loads(raw["read.invalid_utf8"])["raw"]


def test_invalid_utf8_inside_a_json_array(tmp_path):
    f = tmp_path / "arr.json"
    f.write_bytes(b'[{"prompt": "ok", "completion": "fine"}, {"prompt": "caf\xe9", "completion": "x"}]')
    read = read_inputs([f])
    assert read.records.height == 1
    assert read.rejected["rule"].to_list() == ["read.invalid_utf8"]
    assert read.rejected["source"].to_list() == [f"{f}:2"]


def test_broken_json_array_is_one_rejected_row(tmp_path):
    f = tmp_path / "arr.json"
    f.write_text('[{"prompt": "a", "completion": "b"},\n {"prompt": ')
    read = read_inputs([f])
    assert read.records.height == 0
    assert read.rejected["rule"].to_list() == ["read.parse_error"]


def test_forced_format_and_field_mapping(tmp_path):
    f = write_jsonl(tmp_path / "custom.jsonl", [{"query": Q, "response": A, "topic": "geo"}])
    with pytest.raises(InputError, match="no known format"):
        read_inputs([f])
    read = read_inputs([f], fmt="alpaca", mapping={"instruction": "query", "output": "response"})
    assert read.records["messages"][0].to_list()[1]["content"] == A
    assert json.loads(read.records["meta"][0]) == {"topic": "geo"}
    # auto-detection also works after mapping
    read = read_inputs([f], mapping={"question": "query", "answer": "response"})
    assert read.records.height == 1


def test_input_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        read_inputs([tmp_path / "missing.jsonl"])
    (tmp_path / "data.xml").write_text("<x/>")
    with pytest.raises(InputError, match="unknown input kind '.xml'"):
        read_inputs([tmp_path / "data.xml"])
    with pytest.raises(InputError, match="unknown format 'llama'"):
        read_inputs([tmp_path], fmt="llama")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no readable input files"):
        read_inputs([tmp_path / "empty"])


def test_lone_surrogate_escape_is_rejected_not_a_crash(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text('{"prompt": "bad \\ud800 here", "completion": "x"}\n{"prompt": "ok \\u00e9", "completion": "fine"}\n')
    read = read_inputs([f])
    assert read.records["messages"][0].to_list()[0]["content"] == "ok é"
    assert read.rejected["rule"].to_list() == ["read.invalid_utf8"]
    arr = tmp_path / "s.json"
    arr.write_text('[{"prompt": "bad \\udfff", "completion": "x"}]')
    assert read_inputs([arr]).rejected["rule"].to_list() == ["read.invalid_utf8"]


# ---- hostile input (#21) -------------------------------------------------------------------

def _deep(depth: int, leaf: str = "1") -> str:
    return '{"a": ' * depth + leaf + "}" * depth if depth % 2 else "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [1200, 3001, 50_000])
def test_deep_nesting_is_a_rejected_row_in_any_field(tmp_path, depth):
    deep = _deep(depth)
    lines = [json.dumps(PC), '{"prompt": "a", "completion": "b", "extra": %s}' % deep,
             '{"messages": %s}' % deep, '{"question": "q", "answer": "x", "meta": {"k": %s}}' % deep, json.dumps(QA)]
    f = tmp_path / "deep.jsonl"
    f.write_text("\n".join(lines) + "\n")
    read = read_inputs([f])
    assert read.records["source"].to_list() == [f"{f}:1", f"{f}:5"]
    assert read.rejected["rule"].to_list() == ["read.too_deep"] * 3
    assert read.rejected["source"].to_list() == [f"{f}:2", f"{f}:3", f"{f}:4"]
    assert json.loads(read.rejected["meta"][0])["raw"] == lines[1]  # nothing lost
    # a JSON array: the deep record is one row, the others are read
    arr = tmp_path / "deep.json"
    arr.write_text("[%s,\n %s,\n %s]" % (json.dumps(PC), lines[1], json.dumps(QA)))
    read = read_inputs([arr])
    assert read.records["source"].to_list() == [f"{arr}:1", f"{arr}:3"]
    assert read.rejected["rule"].to_list() == ["read.too_deep"]
    # a single object, and JSON Lines saved as .json
    one = tmp_path / "one.json"
    one.write_text(lines[1])
    assert read_inputs([one]).rejected["rule"].to_list() == ["read.too_deep"]
    lines_json = tmp_path / "lines.json"
    lines_json.write_text("\n".join(lines) + "\n")
    read = read_inputs([lines_json])
    assert read.records.height == 2 and read.rejected["rule"].to_list() == ["read.too_deep"] * 3


def test_every_depth_near_the_parser_limit_is_read_or_rejected(tmp_path):
    # around the recursion limit, parsing may pass and writing meta back fail: never a crash
    for depth in range(960, 1020, 3):
        f = tmp_path / f"d{depth}.jsonl"
        f.write_text('{"prompt": "a", "completion": "b", "x": %s}\n' % _deep(depth))
        arr = tmp_path / f"d{depth}.json"
        arr.write_text('[{"prompt": "a", "completion": "b", "x": %s}]' % _deep(depth))
        for path in (f, arr):
            read = read_inputs([path])
            assert read.records.height + read.rejected.height == 1
            assert set(read.rejected["rule"].to_list()) <= {"read.too_deep"}
            if read.records.height:
                json.loads(read.records["meta"][0])


def test_deeply_nested_parquet_column_is_one_line_not_a_crash(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for depth in (150, 2000):  # polars segfaulted reading a schema a few hundred levels deep
        t, v = pa.int64(), 1
        for _ in range(depth):
            t, v = pa.list_(t), [v]
        f = tmp_path / f"deep{depth}.parquet"
        pq.write_table(pa.table({"prompt": ["a"], "completion": ["b"], "x": pa.array([v], type=t)}), f)
        with pytest.raises(InputError, match=f"'x' is nested {depth} levels deep") as e:
            read_inputs([f])
        assert "\n" not in str(e.value)


def test_csv_bad_row_is_one_rejected_row(tmp_path):
    f = tmp_path / "q.csv"
    f.write_bytes(b'prompt,completion\na,b\n"c,d\ne,f\n"multi\nline",g\nh,i\n')
    read = read_inputs([f])
    assert [m[0]["content"] for m in read.records["messages"].to_list()] == ["a", "e", "multi\nline", "h"]
    assert read.records["source"].to_list() == [f"{f}:1", f"{f}:3", f"{f}:4", f"{f}:5"]
    assert read.rejected["rule"].to_list() == ["read.parse_error"]
    assert read.rejected["reason"].to_list() == [f"{f}:2: line 3: a quote opened here is never closed"]
    assert json.loads(read.rejected["meta"][0]) == {"raw": '"c,d'}
    # invalid UTF-8 (also inside a quoted multi-line cell), too many fields, and a stray quote
    f.write_bytes(b'prompt,completion\r\na,b\r\ncaf\xe9,d\r\n"x\ny\xff",z\r\nq,r,s\r\nk"l,m\r\nn,o\r\n')
    read = read_inputs([f])
    assert [m[0]["content"] for m in read.records["messages"].to_list()] == ["a", "n"]
    got = dict(zip(read.rejected["source"].to_list(), read.rejected["reason"].to_list()))
    assert got[f"{f}:2"] == f"{f}:2: line 3: invalid UTF-8 at column 4"
    assert got[f"{f}:3"] == f"{f}:3: line 5: invalid UTF-8 at column 2"
    assert got[f"{f}:4"].startswith(f"{f}:4: line 6: not a CSV row")
    assert got[f"{f}:5"].startswith(f"{f}:5: line 7: a quote opened here is never closed")
    assert read.rejected["rule"].to_list() == ["read.invalid_utf8", "read.invalid_utf8", "read.parse_error", "read.parse_error"]
    assert "caf\\xe9" in json.loads(read.rejected["meta"][0])["raw"]
    # a header nobody can read is still the whole file's problem
    f.write_bytes(b'"prompt,completion\na,b\n')
    with pytest.raises(InputError, match="header line has an unterminated quote"):
        read_inputs([f])


def test_byte_order_mark_is_skipped(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "b.jsonl").write_bytes(bom + (json.dumps(PC) + "\n" + json.dumps(QA) + "\n").encode())
    (tmp_path / "b.json").write_bytes(bom + json.dumps([PC, QA, ALPACA]).encode())
    (tmp_path / "one.json").write_bytes(bom + json.dumps(OPENAI).encode())
    (tmp_path / "lines.json").write_bytes(bom + (json.dumps(PC) + "\n" + json.dumps(QA) + "\n").encode())
    (tmp_path / "b.csv").write_bytes(bom + b'"prompt",completion\na,b\n')
    (tmp_path / "cat.jsonl").write_bytes(  # two files joined with cat: a BOM mid-file
        bom + json.dumps(PC).encode() + b"\n" + bom + json.dumps(QA).encode() + b"\n")
    for name, n in [("b.jsonl", 2), ("b.json", 3), ("one.json", 1), ("lines.json", 2), ("b.csv", 1), ("cat.jsonl", 2)]:
        read = read_inputs([tmp_path / name])
        assert (read.records.height, read.rejected.height) == (n, 0), name
    # UTF-16 is not read as garbage lines: one line saying what it is
    (tmp_path / "u16.jsonl").write_bytes((json.dumps(PC) + "\n").encode("utf-16"))
    for name in ("u16.jsonl", "u16.json", "u16.csv"):
        (tmp_path / name).write_bytes((tmp_path / "u16.jsonl").read_bytes())
        with pytest.raises(InputError, match="UTF-16"):
            read_inputs([tmp_path / name])


def test_symlink_loops_and_second_links_are_followed_once(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    write_jsonl(d / "a.jsonl", [PC, QA])
    write_jsonl(d / "sub" / "b.jsonl", [ALPACA])
    (d / "sub" / "up").symlink_to("..")            # a link to its parent: a loop
    (d / "self").symlink_to(".")                   # a link to itself
    (d / "alias.jsonl").symlink_to("a.jsonl")      # the same file again
    (d / "zz").symlink_to("sub")                   # the same folder again
    (d / "gone.jsonl").symlink_to("nowhere.jsonl")  # a link to nothing
    (d / "x1.jsonl").symlink_to("x2.jsonl")         # a loop of links
    (d / "x2.jsonl").symlink_to("x1.jsonl")
    read = read_inputs([d])
    assert sorted(s.split("/", 1)[1] for s in read.records["source"].str.replace(str(tmp_path), "").to_list()) == [
        "in/a.jsonl:1", "in/a.jsonl:2", "in/sub/b.jsonl:1"]
    assert read.rejected.height == 0
    notes = "\n".join(read.notices)
    assert f"skipped {d}/sub/up: a link back to {d}" in notes
    assert f"skipped {d}/self: a link back to {d}" in notes
    assert f"skipped {d}/alias.jsonl: the same file as {d}/a.jsonl" in notes
    assert f"skipped {d}/zz: the same folder as {d}/sub" in notes
    assert f"skipped {d}/gone.jsonl: a symbolic link to nothing (nowhere.jsonl)" in notes
    assert f"skipped {d}/x1.jsonl: a symbolic link to nothing (x2.jsonl)" in notes


def test_record_layout_parquet_is_checked_like_any_input(tmp_path):
    from curate.record import RECORD_SCHEMA, record_id

    good = OPENAI["messages"]
    rows = [
        {"id": record_id(good), "messages": good, "source": "x:1", "meta": "{}"},
        {"id": "n1", "messages": None, "source": "x:2", "meta": "{}"},
        {"id": "t1", "messages": [{"role": "user", "content": Q}, {"role": "tool", "content": "{}"}], "source": "x:3", "meta": "{}"},
        {"id": "c1", "messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": None}], "source": "x:4", "meta": "{}"},
        {"id": "e1", "messages": [], "source": "x:5", "meta": "{}"},
        {"id": "b1", "messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": ""}], "source": "x:6", "meta": "{}"},
        {"id": None, "messages": good, "source": "x:7", "meta": "{}"},
        {"id": "m1", "messages": good, "source": "x:8", "meta": None},
        {"id": "r1", "messages": [{"role": None, "content": Q}], "source": "x:9", "meta": "{}"},
        # a blank answer is the filter's business (shape.roles), as it is for any other input
        {"id": "k2", "messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": " "}], "source": "x:10", "meta": "{}"},
        {"id": "s1", "messages": [None, {"role": "user", "content": Q}], "source": "x:11", "meta": "{}"},
    ]
    df = pl.DataFrame(rows, schema=RECORD_SCHEMA)
    f = tmp_path / "records.parquet"
    df.write_parquet(f)
    (tmp_path / "stage").mkdir()
    df.write_parquet(tmp_path / "stage" / "kept.parquet")
    for path, label in ((f, str(f)), (tmp_path / "stage", f"{tmp_path}/stage/kept.parquet")):
        read = read_inputs([path])
        assert read.records["source"].to_list() == ["x:1", "x:10"]
        assert read.rejected["rule"].to_list() == [
            "read.missing_field", "read.bad_role", "read.missing_field", "read.empty_conversation",
            "read.empty_conversation", "read.missing_field", "read.missing_field", "read.bad_role", "read.bad_field"]
        assert read.rejected["source"].to_list() == [f"{label}:{i}" for i in [*range(2, 10), 11]]
        assert read.rejected["reason"][1] == f"{label}:3: messages[1] has role 'tool', not one of ['system', 'user', 'assistant']"


def test_non_finite_numbers_become_null_in_meta(tmp_path):
    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))

    f = tmp_path / "n.jsonl"
    f.write_text('{"prompt": "a", "completion": "b", "score": NaN, "x": [Infinity, {"y": -Infinity}], "ok": 1.5}\n'
                 '{"prompt": "a", "completion": 7, "score": NaN}\n')
    read = read_inputs([f])
    assert strict(read.records["meta"][0]) == {"score": None, "x": [None, {"y": None}], "ok": 1.5}
    strict(read.rejected["meta"][0])
    p = tmp_path / "n.parquet"
    pl.DataFrame({"prompt": ["a"], "completion": ["b"], "score": [float("nan")], "v": [[float("inf"), 1.0]]}).write_parquet(p)
    assert strict(read_inputs([p]).records["meta"][0]) == {"score": None, "v": [None, 1.0]}


def test_a_number_python_will_not_read_is_a_rejected_row_not_a_crash(tmp_path):
    # valid JSON, but json.loads raises ValueError (not JSONDecodeError) past 4,300 digits
    big = "1" + "0" * 5000
    (tmp_path / "a.jsonl").write_text('{"prompt":"a","completion":"b"}\n{"prompt":"x","completion":"y","n":' + big
                                      + '}\n{"prompt":"c","completion":"d"}\n')
    (tmp_path / "b.json").write_text('[{"prompt":"x","completion":"y","n":' + big + '}, {"prompt":"e","completion":"f"}]')
    (tmp_path / "c.json").write_text('{"prompt":"x","completion":"y","n":' + big + '}')
    read = read_inputs([tmp_path / "a.jsonl", tmp_path / "b.json", tmp_path / "c.json"], labels=["a.jsonl", "b.json", "c.json"])
    assert read.records["source"].to_list() == ["a.jsonl:1", "a.jsonl:3", "b.json:2"]
    assert read.rejected.select("source", "rule").rows() == [
        ("a.jsonl:2", "read.parse_error"), ("b.json:1", "read.parse_error"), ("c.json:1", "read.parse_error")]
    assert all("a number too long to read" in r for r in read.rejected["reason"].to_list())
