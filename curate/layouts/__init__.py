"""Record layouts: how chat and instruction records are laid out in files.

- :mod:`curate.layouts.read`: the input layouts (OpenAI messages, ShareGPT, Alpaca,
  prompt/completion, question/answer): recognise one and turn a raw record into turns.
- :mod:`curate.layouts.write`: the output layouts ``curate export`` writes.

Not to be confused with :mod:`curate.format`, the stage that renders conversations with a
chat template and its loss mask.
"""
