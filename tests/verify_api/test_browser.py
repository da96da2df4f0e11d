"""The public verification page in headless Chromium: choose files, submit, read the verdict.

Chromium is driven over the DevTools protocol (``browser.py``); the page itself has no script, so
what the test does is what a user does: set the file inputs, click the button, follow the form post.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_or_skip

from ..api.conftest import LiveServer
from .browser import Browser, browser, find_chromium
from .conftest import DATA, RegionSeal

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def page() -> Iterator[Browser]:
    executable = find_chromium()
    require_or_skip(executable is not None, "chromium is not installed (apt-get install chromium)")
    assert executable is not None
    with browser(executable) as b:
        yield b


def _visible(page: Browser, selector: str) -> bool:
    return bool(page.evaluate(f"getComputedStyle(document.querySelector({selector!r})).display !== 'none'"))


@pytest.mark.interop
def test_upload_in_the_browser(
    page: Browser, live_server: LiveServer, region: RegionSeal, interop_dir: Path, tmp_path: Path
) -> None:
    signature = tmp_path / "SignedValue.dat"
    signature.write_bytes(region.sign())
    data = tmp_path / "decision.txt"
    data.write_bytes(DATA)

    page.open(f"{live_server.url}/")  # redirected to the form
    assert page.evaluate("location.pathname") == "/verify"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert _visible(page, 'label[for="file"] [lang="zh-CN"]')
    assert not _visible(page, 'label[for="file"] [lang="en"]')

    # The English switch is a checkbox label: no script, and it travels with the form
    page.evaluate("document.getElementById('lang-toggle').click()")
    assert _visible(page, 'label[for="file"] [lang="en"]')
    assert not _visible(page, 'label[for="file"] [lang="zh-CN"]')

    page.set_files("#file", signature)
    page.set_files("#data", data)
    page.click_and_wait("#submit")
    assert page.evaluate("location.pathname") == "/verify"
    assert page.evaluate("document.getElementById('verdict').dataset.indication") == "PASSED"
    assert page.evaluate("document.documentElement.lang") == "en"
    assert _visible(page, '#verdict [lang="en"]') and not _visible(page, '#verdict [lang="zh-CN"]')
    assert page.evaluate("document.querySelector('#verdict .verdict-word').innerText") == "PASSED"
    sig = "document.querySelector('.signature')"
    assert page.evaluate(f"{sig}.dataset.indication") == "PASSED"
    assert page.evaluate(f"{sig}.querySelector('[data-field=\"seal.es_id\"]').innerText") == region.es_id
    # The seal picture decoded and laid out (a broken image has no natural size)
    assert page.evaluate(f"{sig}.querySelector('.seal-picture img').naturalWidth") == 120
    colour = page.evaluate("getComputedStyle(document.getElementById('verdict')).backgroundColor")
    assert colour == "rgb(27, 127, 59)"  # green

    # A second file, from the report page's link: a third party's expired seal fails
    page.click_and_wait("#again")
    assert page.evaluate("document.getElementById('lang-en').checked") is True  # still English
    page.evaluate("document.getElementById('lang-toggle').click()")  # back to Chinese
    page.set_files("#file", interop_dir / "ofdrw-reader__SESV4SignDoc.ofd")
    page.click_and_wait("#submit")
    assert page.evaluate("document.getElementById('verdict').dataset.indication") == "FAILED"
    assert page.evaluate("document.getElementById('verdict').dataset.subIndication") == "SEAL_EXPIRED"
    assert page.evaluate("document.querySelector('#verdict .verdict-word').innerText") == "失败"
    failed = page.evaluate(
        "[...document.querySelectorAll('.check[data-result=\"failed\"]')].map(e => e.dataset.checkId)"
    )
    assert failed == ["seal.validity_period", "signer.certificate_validity"]
