"""hf_model_quiet turns the libraries' progress bars off inside and back on after."""
from __future__ import annotations

import pytest

from curate.hfquiet import hf_model_quiet

hf_logging = pytest.importorskip("transformers.utils.logging")
datasets = pytest.importorskip("datasets")


@pytest.mark.parametrize("datasets_bars", [True, False])
def test_bars_off_inside_and_restored_after(datasets_bars):
    assert hf_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()
    with hf_model_quiet(datasets_bars=datasets_bars):
        assert not hf_logging.is_progress_bar_enabled()
        assert datasets.is_progress_bar_enabled() == datasets_bars
    assert hf_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()
