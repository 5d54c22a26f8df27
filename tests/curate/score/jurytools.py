"""Write jury files for tests."""
from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
RUBRIC = str(REPO / "rules" / "rubrics" / "sft_quality.j2")


def write_jury(tmp_path: Path, judges: list[dict], **kw) -> Path:
    body = {"judges": judges, "rubric": RUBRIC, "backoff_s": 0.01, "timeout_s": 1.0,
            "cache": str(tmp_path / "cache.sqlite"), **kw}
    path = tmp_path / "jury.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def api_judge(server, name: str = "a", model: str | None = None, **kw) -> dict:
    return {"name": name, "backend": "openai", "model": model or f"model-{name}", "base_url": server.base_url, **kw}
