"""Shared test fixtures: golden-file snapshots and the model-state fingerprint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

SNAPSHOTS = Path(__file__).parent / "snapshots"


# Property tests are derandomized (the same examples on every run, so CI cannot fail by chance)
# and have no deadline (a shared 2-core machine makes timings meaningless).
settings.register_profile("torchscope", derandomize=True, deadline=None, database=None)
settings.load_profile("torchscope")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-snapshots",
        action="store_true",
        default=False,
        help="rewrite tests/snapshots/* golden files from the current output",
    )


@pytest.fixture
def snapshot(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``snapshot(name, text)``: compare ``text`` to ``tests/snapshots/<name>``.

    Golden files change only with ``pytest --update-snapshots``; a missing file is a failure.
    """
    update = bool(request.config.getoption("--update-snapshots"))

    def check(name: str, text: str) -> None:
        path = SNAPSHOTS / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"golden file {path} is missing: run pytest --update-snapshots once")
        expected = path.read_text(encoding="utf-8")
        assert text == expected, f"output differs from {path} (pytest --update-snapshots)"

    return check
