import hashlib

from curate.record import record_id


def test_id_is_stable_across_runs_and_machines():
    # A fixed value: if this changes, every id in every user's built dataset changes.
    msgs = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
    assert record_id(msgs) == "e75ea7f5401fb4ba2b66d536ba9bd31c"
    # ...and it is the documented scheme: sha256 of compact JSON [[role, content], ...], 128 bits
    canon = '[["user","What is 2+2?"],["assistant","4"]]'.encode()
    assert record_id(msgs) == hashlib.sha256(canon).hexdigest()[:32]


def test_id_normalises_newlines_and_outer_blanks_only():
    a = [{"role": "user", "content": "Hi\r\nthere "}, {"role": "assistant", "content": "Yo"}]
    b = [{"role": "user", "content": "Hi\nthere"}, {"role": "assistant", "content": "Yo"}]
    assert record_id(a) == record_id(b)
    c = [{"role": "user", "content": "hi\nthere"}, {"role": "assistant", "content": "Yo"}]
    assert record_id(b) != record_id(c)  # case is content
    d = [{"role": "user", "content": "Hi\nthere"}, {"role": "assistant", "content": "Yo\x0c"}]
    assert record_id(b) != record_id(d)  # a control character is content


def test_id_is_unicode_normalised_and_role_sensitive():
    nfc = [{"role": "user", "content": "caf\u00e9"}]
    nfd = [{"role": "user", "content": "cafe\u0301"}]
    assert record_id(nfc) == record_id(nfd)
    assert record_id(nfc) != record_id([{"role": "assistant", "content": "caf\u00e9"}])


def test_column_wise_ids_and_json_strings_are_pythons():
    """record_ids / json_strings (the JSON Lines fast path's) against record_id / json.dumps,
    on every character below U+0100 and the usual troublemakers."""
    import json
    import random

    import polars as pl

    from curate.record import json_strings, record_ids

    chars = [chr(i) for i in range(0x100)] + ["\u2028", "\u2029", "\U0001F600", "e\u0301", "\u212b", "\ufeff", "\r\n"]
    s = pl.Series([c + "a" + c for c in chars] + [None])
    assert json_strings(s).to_list() == [json.dumps(x, ensure_ascii=False) for x in s.to_list()[:-1]] + [None]
    rng, rows, convs = random.Random(0), [], []
    for k in range(2000):
        conv = []
        for _ in range(rng.randint(1, 4)):
            m = {"role": rng.choice(["user", "assistant", "system"]),
                 "content": "".join(rng.choice(chars) for _ in range(rng.randint(0, 6)))}
            for extra, value in (("weight", rng.choice([0, 1])), ("name", rng.choice(chars) + "x"), ("tool_calls", '[{"a":"\\u00e9"}]')):
                if rng.random() < 0.15:
                    m[extra] = value
            conv.append(m)
            rows.append({"k": k, "weight": None, "name": None, "tool_calls": None, **m})
        convs.append(conv)
    schema = {"k": pl.Int64, "role": pl.String, "content": pl.String, "weight": pl.Int64, "name": pl.String,
              "tool_calls": pl.String}
    got = record_ids(pl.DataFrame(rows, schema=schema), "k")
    assert got["k"].to_list() == list(range(2000))
    assert got["id"].to_list() == [record_id(c) for c in convs]
