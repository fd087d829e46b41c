"""Fixtures for the function runtime: the pinned workerd (installed with npm on first use, or the
tests skip saying how to get npm), and a runtime per test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reef.errors import ServerlessError
from reef.serverless import FunctionRuntime, ensure_workerd, find_workerd


@pytest.fixture(scope="session")
def workerd() -> Path:
    """The pinned workerd binary; skips when it is missing and npm cannot install it."""
    found = find_workerd()
    if found is not None:
        return found
    if shutil.which("npm") is None:
        pytest.skip("workerd is not installed and npm is missing (apt-get install nodejs npm)")
    try:
        return ensure_workerd()
    except ServerlessError as exc:
        pytest.skip(f"cannot install workerd with npm: {exc}")


@pytest.fixture
async def runtime(workerd: Path) -> AsyncIterator[FunctionRuntime]:
    async with FunctionRuntime(workerd, max_idle=4) as rt:
        yield rt
