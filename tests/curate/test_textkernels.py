"""textkernels reads polars' string memory through raw addresses: the layout check."""
import ctypes

import numpy as np
import polars as pl
import pytest

from curate import textkernels as tk


def _read(col):
    addresses, lengths, owner = tk.utf8_spans(col)
    out = [ctypes.string_at(int(a), int(n)).decode() for a, n in zip(addresses.tolist(), lengths.tolist())]
    del owner
    return out


def test_spans_read_every_kind_of_string_back():
    texts = ["", "x", "twelve bytes", "thirteen byte", "é" * 40, "a\nb\tc " * 30, None]
    assert _read(pl.Series(texts)) == [t or "" for t in texts]
    assert _read(pl.Series(texts).slice(2, 3)) == texts[2:5]


def test_the_layout_check_passes_on_this_polars():
    tk.check_layout(tk._spans)


@pytest.mark.parametrize("break_it", [
    lambda a, n: (a + 1, n),  # views point one byte off
    lambda a, n: (a, np.minimum(n, 12)),  # long strings read as if inline
])
def test_a_layout_change_stops_with_one_clear_error(break_it):
    def changed(col):
        a, n, owner = tk._spans(col)
        return (*break_it(a, n), owner)

    with pytest.raises(tk.LayoutError, match="polars .* layout"):
        tk.check_layout(changed)
