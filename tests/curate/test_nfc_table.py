"""The table of characters that can change under NFC (curate.nfc_table) is this Python's,
and a string without any of them is unchanged by Python's NFC."""
import random
import unicodedata

import polars as pl
import pytest

from curate.nfc_table import NFC_UNSTABLE, UNIDATA_VERSION, regex_class, unstable_ranges

pytestmark = pytest.mark.skipif(unicodedata.unidata_version != UNIDATA_VERSION,
                                reason="the table is only used with the Unicode version it was made from")
FLAGGED = {cp for a, b in NFC_UNSTABLE for cp in range(a, b + 1)}


def test_table_is_this_pythons_unicode_database():
    assert unstable_ranges() == NFC_UNSTABLE


def test_strings_without_an_unstable_character_are_already_nfc():
    rng = random.Random(0)
    stable = [cp for cp in rng.sample(range(0x110000), 60_000) if cp not in FLAGGED and not 0xD800 <= cp <= 0xDFFF]
    pool = stable + [0x41, 0x65, 0x1100, 0xAC00, 0xE9]  # starters that begin compositions
    for _ in range(20_000):
        s = "".join(chr(rng.choice(pool)) for _ in range(rng.randint(1, 6)))
        assert unicodedata.normalize("NFC", s) == s, [hex(ord(c)) for c in s]
    # and the usual suspects are in the table: combining marks, Hangul vowels, singletons
    assert all(ord(c) in FLAGGED for c in "\u0301\u1161\u11a8\u212b\u0344\u0cd5")


def test_the_regex_class_is_the_table():
    rng = random.Random(1)
    cps = [cp for cp in rng.sample(range(0x80, 0x110000), 50_000) if not 0xD800 <= cp <= 0xDFFF] + sorted(FLAGGED)
    got = pl.Series([chr(cp) for cp in cps]).str.contains(regex_class()).to_list()
    assert got == [cp in FLAGGED for cp in cps]
