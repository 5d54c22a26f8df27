"""Silence specific library messages that are not the user's business, and nothing else.

Each is named here with why it is noise; everything else a library says still reaches the user.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import warnings

# The tokenizer says "Token indices sequence length is longer than the specified maximum sequence
# length" when we measure a text's length before embedding: we count those texts and the dedup
# command says how many were cut, so the tokenizer's own line is a duplicate, and a scary one.
TOO_LONG_LOGGER = "transformers.tokenization_utils_base"


class _Drop(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(f in text for f in self.fragments)


@contextlib.contextmanager
def drop_log_lines(logger_name: str, *fragments: str):
    """Within the block, drop the records of ``logger_name`` whose message holds one of ``fragments``."""
    log, flt = logging.getLogger(logger_name), _Drop(fragments)
    log.addFilter(flt)
    try:
        yield
    finally:
        log.removeFilter(flt)


def too_long_sequence_quiet():
    return drop_log_lines(TOO_LONG_LOGGER, "sequence length is longer than the specified maximum")


@contextlib.contextmanager
def hf_model_quiet(datasets_bars: bool = True):
    """Around loading, generating with and saving a transformers model: drop the
    is_gradient_checkpointing FutureWarning (transformers' own code reads the deprecated
    attribute; nothing the user can change) and the "Loading weights" / "Writing model shards"
    progress bars (a few seconds each; our own line says what happened). ``datasets_bars=False``:
    the datasets library's bars too (TRL's "Truncating eval dataset" ...: noise in a log file)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        libraries = [("transformers.utils.logging", "progress_bar")] + ([] if datasets_bars else [("datasets", "progress_bars")])
        for module, bars in libraries:
            try:
                lib = importlib.import_module(module)
            except ImportError:  # pragma: no cover
                continue
            # transformers: disable_progress_bar(); datasets: disable_progress_bars()
            stack.enter_context(_bars_off(lib.is_progress_bar_enabled, getattr(lib, f"disable_{bars}"),
                                          getattr(lib, f"enable_{bars}")))
        yield


@contextlib.contextmanager
def _bars_off(is_on, off, on):
    """A library's progress bars off within the block, back on after if they were."""
    was = is_on()
    off()
    try:
        yield
    finally:
        if was:
            on()
