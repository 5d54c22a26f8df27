"""The native tier's ids (issue #23, session 6): the scan hashes each record's canonical JSON
itself, calling libcrypto's SHA256 (curate.jsonl_native.sha256_address), and writes the ids as
hex digits into one buffer that reaches polars as a string_view array; where libcrypto cannot
be called, Python hashes with record.id_of into the same buffer. Both must give record_id's
ids (tables equal to the per-line path's), whatever the scan calls and file chunks."""
import hashlib
import json
import random

import numpy as np
import pyarrow as pa
import pytest

from curate import jsonl_native, readers
from curate import jsonl_native_kernel as kernel
from curate.jsonl_native import read_native, sha256_address
from curate.record import id_of
from tests.curate.test_readers_chunks import captured, mixed_file, pc
from tests.curate.test_readers_fast import assert_same, both


@pytest.fixture(autouse=True)
def native_for_small_files(monkeypatch):
    monkeypatch.setattr(readers, "_NATIVE_MIN_BYTES", 0)


def _libcrypto_mapped() -> bool:
    import _hashlib  # noqa: F401

    with open("/proc/self/maps") as fh:
        return any("/libcrypto" in line for line in fh)


@pytest.fixture(params=[True, False], ids=["libcrypto", "hashlib"])
def sha_mode(request, monkeypatch):
    """Each test twice: the scan hashing (where this machine has libcrypto) and Python."""
    if request.param and not sha256_address():
        pytest.skip("no libcrypto SHA256 to call here")
    monkeypatch.setattr(jsonl_native, "NATIVE_SHA", request.param)
    return request.param


def test_the_scan_calls_hashlibs_libcrypto_where_it_is_mapped():
    """On Linux, where hashlib's OpenSSL module maps libcrypto, the scan hashes (a finder
    that silently fails would make every read take the slower Python loop)."""
    try:
        mapped = _libcrypto_mapped()
    except (ImportError, OSError):
        pytest.skip("no /proc/self/maps or no _hashlib here")
    assert bool(sha256_address()) == mapped


def test_a_library_whose_sha256_differs_from_hashlibs_is_not_used(monkeypatch):
    """The probes compare the library with hashlib: a disagreement means Python hashes."""
    class OtherHash:
        @staticmethod
        def sha256(data):
            return hashlib.sha1(data)

    monkeypatch.setattr(jsonl_native, "hashlib", OtherHash)
    assert sha256_address.__wrapped__() == 0


def test_hash_ids_is_id_of_for_every_length():
    """Every length around SHA-256's 64-byte blocks and their padding (55, 56, 64), long
    inputs, at an offset into the ids (a later scan call's records)."""
    sha = sha256_address()
    if not sha:
        pytest.skip("no libcrypto SHA256 to call here")
    rng = random.Random(3)
    pieces = [rng.randbytes(n) for n in range(300)] + [rng.randbytes(n) for n in (1000, 4095, 65536, 1 << 20)]
    canon = np.frombuffer(b"".join(pieces), np.uint8)
    off = np.zeros(len(pieces) + 1, np.int64)
    off[1:] = np.cumsum([len(p) for p in pieces])
    ids = np.full(kernel.ID_HEX * (len(pieces) + 7), 255, np.uint8)
    kernel.hash_ids(sha, canon, off, len(pieces), ids, 7, np.empty(32, np.uint8))
    digits = ids[kernel.ID_HEX * 7:].tobytes().decode("ascii")
    got = [digits[i:i + kernel.ID_HEX] for i in range(0, len(digits), kernel.ID_HEX)]
    assert got == [id_of(p) for p in pieces]
    assert (ids[:kernel.ID_HEX * 7] == 255).all()  # nothing written before r0


def test_ids_across_many_scan_calls_and_a_record_longer_than_one(tmp_path, monkeypatch, sha_mode):
    """The scan stops every CANON_CHUNK bytes of canonical JSON and hashes that call's
    records (or Python does): many calls, one record whose canonical JSON is longer than a
    call's, all with record_id's ids."""
    rng = random.Random(5)
    words = [f"w{i}" for i in range(40)] + ["é", "\"", "\\", "\n", "e\u0301", "😀", "\r\n"]
    lines = [json.dumps({"prompt": " ".join(rng.choices(words, k=rng.randrange(50, 500))), "completion": "c",
                         "n": i}, ensure_ascii=bool(i % 2)) for i in range(2500)]
    lines.insert(900, pc("long " * (kernel.CANON_CHUNK // 2), "end"))
    assert sum(map(len, lines)) > 3 * kernel.CANON_CHUNK
    fast, slow = both(tmp_path, monkeypatch, lines)
    assert_same(fast, slow)
    assert fast.records.height == len(lines)


@pytest.mark.parametrize("chunk", [61, 4099, 1 << 24])
def test_ids_with_file_chunks_of_every_size(tmp_path, monkeypatch, sha_mode, chunk):
    """Hostile lines of every tier read a few bytes at a time: the ids of each scan call go
    to the right records (at the running record count), in both hashing modes."""
    monkeypatch.setattr(jsonl_native, "CHUNK", chunk)
    for seed in (21, 22):
        fast, slow = both(tmp_path, monkeypatch, [], raw=mixed_file(seed))
        assert_same(fast, slow)


@pytest.mark.parametrize("text", ["", "\n\n  \n", pc("one", "record"), pc("one", "record") + "\n",
                                  "[1]\n" + pc("p", "c", f=1.5), pc("p", "c") + "\n[2]\n" + pc("q", "d")])
def test_small_files(tmp_path, monkeypatch, sha_mode, text):
    """An empty file, blank lines only, one record with and without its newline, no record
    for the native tier at all (every line punted), punted lines around one."""
    fast, slow = both(tmp_path, monkeypatch, [], raw=text.encode())
    assert_same(fast, slow)


def captured_ids(monkeypatch) -> list:
    return captured(monkeypatch, "_id_strings")


@pytest.mark.parametrize("limit", [64, 100, (1 << 31) - 1])
def test_ids_are_views_over_one_buffer_split_at_the_limit(tmp_path, monkeypatch, sha_mode, limit):
    """The id column is a string_view array Arrow's full validation accepts: each view the
    length 32, the first 4 digits, its data buffer and offset; a new data buffer every
    VIEW_LIMIT bytes (32-bit offsets), the same table."""
    monkeypatch.setattr(jsonl_native, "VIEW_LIMIT", limit)
    arrays = captured_ids(monkeypatch)
    lines = [pc(f"p{i} " + "z" * (i % 30), "c" * (i % 17)) for i in range(300)]
    fast, slow = both(tmp_path, monkeypatch, lines)
    assert_same(fast, slow)
    (ids,) = arrays
    assert ids.type == pa.string_view() and len(ids) == 300
    ids.validate(full=True)
    assert ids.to_pylist() == slow.records["id"].to_list()
    views = np.frombuffer(ids.buffers()[1], np.uint8).reshape(-1, 16)
    assert (views[:, :4].view(np.uint32) == kernel.ID_HEX).all()
    data = ids.buffers()[2:]
    assert all(b.size <= limit for b in data)
    assert len(data) == -(-300 // (limit // kernel.ID_HEX))


def test_read_native_of_bytes_in_both_modes(monkeypatch):
    """read_native on bytes (one chunk): the two hashing modes give the same table."""
    raw = mixed_file(31)
    monkeypatch.setattr(jsonl_native, "NATIVE_SHA", False)
    python = read_native(raw, "x", None)
    monkeypatch.setattr(jsonl_native, "NATIVE_SHA", True)
    native = read_native(raw, "x", None)
    assert native.records.equals(python.records) and native.punted == python.punted
    assert native.records.height > 100
