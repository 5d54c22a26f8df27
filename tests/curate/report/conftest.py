from tests.curate.pipeline.conftest import project  # noqa: F401  (the same small project folder)
