"""What every GPU-kit check process does first and keeps doing: read its spec (argv[1]),
quiet transformers, and rewrite its result file (argv[2]) atomically after each measurement,
so a check cut off by its time cap still leaves what it measured."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def start() -> tuple[dict, Path]:
    """(the check's spec, where its result goes); offline, transformers' logs and bars off."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])


def saver(path: Path, result: dict):
    """``save()`` writes ``result`` (as it is then) to ``path``, never half a file."""
    def save():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, path)
    return save
