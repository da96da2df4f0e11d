"""Fixtures for the verifier's performance tests: a throw-away PKI and seal, and a one-seal OFD."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.verify.conftest import Pki, seal_ofd
from tests.verify.conftest import interop_file as interop_file
from tests.verify.conftest import pki as pki


@pytest.fixture(scope="session")
def sealed(pki: Pki, interop_file: Callable[[str], bytes]) -> bytes:
    return seal_ofd(interop_file("ofdrw-sign__helloworld.ofd"), pki)


@pytest.fixture(scope="session")
def root_pem(pki: Pki) -> Path:
    return pki.root_pem
