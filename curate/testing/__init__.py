"""Test doubles and reference implementations: not used by the toolkit itself.

- ``fakeserver``: a small OpenAI-compatible judge server whose answers (and failures) are
  steered by directives in the prompt, for tests, benchmarks and dry runs of a jury
  (``python -m curate.testing.fakeserver --port 8000``).
- ``filter_reference``: a plain per-record Python loop of the filter rules, the oracle the
  vectorised filter engine is tested against and the baseline of ``bench/filter.py``.

They ship with the package so that the README's and docs' examples and the benchmarks run
from an installed toolkit; nothing under ``curate`` outside this package imports them.
"""
