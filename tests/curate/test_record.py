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


