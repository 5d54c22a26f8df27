import os

# No test touches the network or fights the other core.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/datasets is absent")
    return SHARED


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A folder with a tiny random Llama and its BPE tokenizer (ChatML template with
    generation markers); built once per session."""
    from tests.tiny import build_model

    return build_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def judge_server():
    """A real OpenAI-compatible HTTP server on 127.0.0.1 (curate.testing.fakeserver)."""
    from curate.testing.fakeserver import FakeJudgeServer

    srv = FakeJudgeServer(stall_s=2.0, retry_after=0.05).start()
    yield srv
    srv.shutdown()
    srv.server_close()
