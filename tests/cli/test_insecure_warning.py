"""Every command that trusts a root says the same of an insecure one (dev, mock), and nothing
of a real one."""

from __future__ import annotations

import pytest

from reef.attestation import TrustedRoot
from reef.cli._output import warn_insecure_root
from reef.home import ReefHome


def test_the_mock_root_is_named_insecure(capsys: pytest.CaptureFixture[str]) -> None:
    warn_insecure_root(TrustedRoot.resolve("mock", ReefHome.from_env()), "verified")
    assert capsys.readouterr().err.replace("\n", " ").strip() == (
        "warning: verified under Oyster's public mock root: INSECURE. Anyone can sign under it."
    )


def test_advice_follows_the_warning(capsys: pytest.CaptureFixture[str]) -> None:
    root = TrustedRoot.resolve("mock", ReefHome.from_env())
    warn_insecure_root(root, "documents are verified", advice="Use another key")
    err = capsys.readouterr().err.replace("\n", " ")
    assert err.startswith("warning: documents are verified under Oyster's public mock root")
    assert err.strip().endswith("Anyone can sign under it. Use another key.")


def test_aws_is_trusted_silently(capsys: pytest.CaptureFixture[str]) -> None:
    warn_insecure_root(TrustedRoot.resolve("aws", ReefHome.from_env()), "verified")
    assert capsys.readouterr().err == ""
