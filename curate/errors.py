"""The toolkit's own exceptions for input, in a module that imports nothing of the project's,
so readers, formats, turns and storage can all raise them without importing each other.

- ``InputError``: a user mistake about an input as a whole (no such file, an unreadable
  kind of input): one line, exit status 2.
- ``RecordError``: one record that cannot become a conversation: a rejected row with
  ``rule`` and ``reason``, never a crash.

Config files' errors are ``curate.config.ConfigError``.
"""
from __future__ import annotations


class InputError(Exception):
    """A user mistake about the input as a whole: reported as one line, exit status 2."""


class RecordError(Exception):
    def __init__(self, rule: str, reason: str):
        super().__init__(reason)
        self.rule = rule
        self.reason = reason
