"""hf_model_quiet turns the libraries' progress bars off inside and back on after."""
from __future__ import annotations

import pytest

from curate.hfquiet import hf_model_quiet

hf_logging = pytest.importorskip("transformers.utils.logging")
datasets = pytest.importorskip("datasets")


@pytest.fixture
def bars_on():
    # other tests (the CLI's quiet mode) may have left the bars off: start from on, put back after
    was = hf_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    datasets.enable_progress_bars()
    yield
    (hf_logging.enable_progress_bar if was[0] else hf_logging.disable_progress_bar)()
    (datasets.enable_progress_bars if was[1] else datasets.disable_progress_bars)()


@pytest.mark.parametrize("datasets_bars", [True, False])
def test_bars_off_inside_and_restored_after(bars_on, datasets_bars):
    with hf_model_quiet(datasets_bars=datasets_bars):
        assert not hf_logging.is_progress_bar_enabled()
        assert datasets.is_progress_bar_enabled() == datasets_bars
    assert hf_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()
