"""End to end in a real browser: headless Chromium (Debian's) driven by Playwright uploads real clips.

Skips when /usr/bin/chromium (``apt-get install -y chromium``) or the ``playwright`` package is
missing; Playwright's own browser download is never used. The screenshots go to
``$SERKIT_TEST_ARTIFACTS`` (default ``out/test-artifacts``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("SERKIT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(
    os.environ.get("SERKIT_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "out" / "test-artifacts")
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install 'serkit[dev]')")
pytest.importorskip("fastapi", reason="the service needs pip install 'serkit[serve]'")

from tests.test_serve import (  # noqa: E402,F401  (fixtures)
    CLIP,
    LiveServer,
    clip,
    long_clip,
    recognizer,
    serve_model_dir,
)


@pytest.fixture(scope="module")
def page(recognizer, tmp_path_factory):
    from serkit.serve.app import create_app
    from serkit.serve.settings import Settings

    with LiveServer(create_app(recognizer, Settings())) as server, sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 900, "height": 1100},
            bypass_csp=True,  # Playwright evaluates its wait conditions as strings; the page itself needs no eval
        )
        # nothing may leave loopback: a request elsewhere (a CDN, say) fails the test
        outside = []
        context.route(
            lambda url: not url.startswith(server.url), lambda route: (outside.append(route.request.url), route.abort())
        )
        pg = context.new_page()
        console_errors = []
        # the browser logs every 4xx as a console error; the bad-file test provokes one on purpose
        pg.on(
            "console",
            lambda m: console_errors.append(m.text) if m.type == "error" and "status of 4" not in m.text else None,
        )
        pg.goto(server.url + "/")
        yield pg
        context.close()
        assert not outside, f"the page tried to load from outside the server: {outside}"
        assert not console_errors, console_errors


def _painted(page, canvas_id) -> int:
    """Number of non-transparent pixels on a canvas."""
    return page.evaluate(
        """(id) => { const c = document.getElementById(id);
                     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                     let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""",
        canvas_id,
    )


def test_upload_shows_label_and_bar_chart(page, recognizer, clip):
    page.wait_for_function("document.getElementById('model-info').textContent.includes('labels')")
    assert "angry, neutral, sad" in page.text_content("#model-info")
    page.set_input_files("#file", str(clip))
    page.click("#analyse")
    page.wait_for_function(
        "document.body.dataset.state === 'done' || document.body.dataset.state === 'error'", timeout=30000
    )
    assert page.is_hidden("#error"), page.text_content("#error")
    expected = recognizer.predict_file(clip).iloc[0]
    assert page.text_content("#label") == expected["label"]
    rendered = page.get_attribute("#bars", "data-rendered")
    shown = dict(kv.split("=") for kv in rendered.split(","))
    assert set(shown) == {"angry", "neutral", "sad"}
    for label, p in shown.items():
        assert float(p) == pytest.approx(expected[f"p_{label}"], abs=1e-3)
    assert _painted(page, "bars") > 2000
    assert page.is_hidden("#timeline-block")  # 2 s: no timeline
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)


def test_long_upload_shows_timeline(page, long_clip):
    page.set_input_files("#file", str(long_clip))
    page.click("#analyse")
    page.wait_for_function("document.getElementById('timeline').dataset.rendered", timeout=30000)
    page.wait_for_function("document.body.dataset.state === 'done'", timeout=30000)
    assert page.is_visible("#timeline-block")
    import soundfile as sf

    from serkit.windows import spans

    expected = list(spans(sf.info(long_clip).duration, window=4.0, hop=2.0))  # the page asks for 4 s every 2 s
    assert int(page.get_attribute("#timeline", "data-rendered")) == len(expected)
    assert _painted(page, "timeline") > 2000
    page.screenshot(path=str(ARTIFACTS / "browser-timeline.png"), full_page=True)


def test_bad_file_shows_the_servers_message(page, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all\n" * 20)
    page.set_input_files("#file", str(bad))
    page.click("#analyse")
    page.wait_for_function("document.body.dataset.state === 'error'", timeout=30000)
    assert "422" in page.text_content("#error") and "cannot decode 'notes.wav'" in page.text_content("#error")
