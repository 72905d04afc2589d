"""The explorer page (issue 13) in a real headless Chromium over a real server with two briefly
trained runs: one page state (errors never stick, a new input or run clears what depended on
the old one, a late answer never overwrites a newer one), readable error messages, the
playground's limits, no broken images, a favicon and re-uploading the same file.

The trace of one number, accessibility and the phone layout are in test_explorer_ui_trace.py,
which shares this module's fixtures."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cnnlab.explorer import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOC_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "explorer"


@pytest.fixture(scope="module")
def ui_app(runs_root, data_dir):
    return create_app([runs_root / "lenet", runs_root / "cifar"], str(data_dir))


@pytest.fixture(scope="module")
def ui_client(ui_app):
    return TestClient(ui_app, raise_server_exceptions=False)


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread; yields its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the explorer did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def ui_server(ui_app):
    with serving(ui_app) as url:
        yield url


@pytest.fixture(scope="module")
def ui_browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM}; .ci/run installs it"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def ui_shots(tmp_path_factory) -> Path:
    """docs/explorer with CNNLAB_SCREENSHOTS=1 (to refresh the README's pictures), else tmp."""
    folder = DOC_SHOTS if os.environ.get("CNNLAB_SCREENSHOTS") else tmp_path_factory.mktemp("ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, server, width=1280, height=800, run="lenet"):
    """A fresh page on ``run``, with the page's script errors and failed requests recorded."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
    page.on(
        "response",
        lambda r: (
            page.problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and "/explain" not in r.url
            else None
        ),
    )
    page.goto(server)
    page.wait_for_selector("#summary tr:nth-child(3)")
    if run != "lenet":
        page.select_option("#run", run)
        page.wait_for_function(f"document.querySelector('#run').value === '{run}'")
        page.wait_for_selector("#summary tr:nth-child(3)")
    return page


def serious_axe_violations(page) -> list[str]:
    """axe-core's critical and serious findings on the page, one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("critical", "serious")
    ]


def load_sample(page, index) -> None:
    page.fill("#sample-index", str(index))
    page.click("#load-sample")
    page.wait_for_function(
        "(i) => document.querySelector('#input-note').textContent.startsWith(`test image ${i},`)"
        " && document.querySelector('#prediction').dataset.predicted"
        " && document.querySelector('#overview .layer .tile canvas')",
        arg=index,
    )


def select_tile(page, layer, channel=0):
    page.locator(f"#overview .layer[data-layer='{layer}'] .tile[data-channel='{channel}']").click()
    page.wait_for_function(
        "(l) => { const s = document.querySelector('#kernel-sum');"
        " return s && s.textContent.startsWith(l + ' '); }",
        arg=layer,
    )
    return page.locator("#kernel-sum").text_content()


def predicted(client, run, index) -> str:
    pixels = client.get(f"/api/runs/{run}/sample/{index}").json()["pixels"]
    answer = client.post(f"/api/runs/{run}/analyze", json={"pixels": pixels}).json()
    return answer["probabilities"][answer["predicted"]]["class"]


def is_problem(page, selector) -> bool:
    return page.eval_on_selector(selector, "e => e.classList.contains('problem')")


# ------------------------------------------------------------------ defects 1 and 4


def test_an_error_look_never_sticks_and_messages_are_sentences(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server)
    for bad in ["1.5", "", "-3"]:  # defect 4: "[object Object]" and "Not Found" before
        page.fill("#sample-index", bad)
        page.click("#load-sample")
        page.wait_for_function(
            "document.querySelector('#input-note').classList.contains('problem')"
        )
        text = page.locator("#input-note").text_content()
        assert "whole number" in text and "object" not in text and "Not Found" not in text
    page.fill("#sample-index", "99999")  # the server's 404 sentence, shown as it is
    page.click("#load-sample")
    page.wait_for_function("document.querySelector('#input-note').textContent.includes('0..')")
    assert is_problem(page, "#input-note")
    page.problems.clear()  # that 404 was asked for
    load_sample(page, 0)
    assert not is_problem(page, "#input-note")  # defect 1: the red look goes with the error

    # an explanation refused with a 422 sentence; the next good answer is not red
    def refuse(route):
        route.fulfill(status=422, json={"detail": "layer 'features.0' cannot be explained"})

    page.route("**/explain", refuse, times=1)
    page.locator("#overview .layer[data-layer='features.0'] .tile").first.click()
    page.wait_for_selector("#explain-problem")
    assert "cannot be explained" in page.locator("#explain-problem").text_content()
    select_tile(page, "features.0")
    assert page.locator("#kernel .problem, #kernel-sum.problem").count() == 0
    # and FastAPI's list-shaped 422 details read as "field: message", never [object Object]
    message = page.evaluate(
        "import('/static/state.js').then(m => m.readable("
        "[{loc: ['body', 'y'], msg: 'Input should be a valid integer'}], 422))"
    )
    assert message == "y: Input should be a valid integer"
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ defect 2


def panels_are_empty(page) -> None:
    state = page.evaluate(
        """() => ({
        map: document.querySelector('#kernel-map').children.length,
        kernel: document.querySelector('#kernel').children.length,
        views: document.querySelector('#trace-views').children.length,
        hint: !document.querySelector('#trace-hint').hidden,
        pressed: document.querySelectorAll('#overview .tile[aria-pressed=true]').length })"""
    )
    assert state == {"map": 0, "kernel": 0, "views": 0, "hint": True, "pressed": 0}, state


def test_a_new_input_or_run_clears_what_depended_on_the_old_one(ui_server, ui_browser, data_dir):
    page = open_page(ui_browser, ui_server)
    load_sample(page, 0)
    select_tile(page, "features.0", 2)
    load_sample(page, 1)  # a new test image: the traced pixel of the old one goes
    panels_are_empty(page)
    select_tile(page, "features.0", 1)
    page.click("#clear")  # clear clears everything computed from the drawing, not just the canvas
    panels_are_empty(page)
    assert page.locator("#prediction").text_content() == "no input yet"
    assert page.locator("#overview .tile").count() == 0
    assert page.locator("#input-preview").is_hidden() and page.locator("#cam-overlay").is_hidden()
    assert page.locator("#cam-note").text_content() == ""
    load_sample(page, 2)
    page.wait_for_function("document.querySelector('#cam-note').textContent.startsWith('class ')")
    select_tile(page, "features.3")
    page.select_option("#run", "cifar")  # another run: no input, note or Grad-CAM of the old one
    page.wait_for_function("document.querySelector('#run-info').textContent.startsWith('3x32')")
    panels_are_empty(page)
    assert page.locator("#input-note").text_content() == ""
    assert page.locator("#cam-note").text_content() == ""
    assert page.locator("#input-preview").is_hidden() and page.locator("#cam-overlay").is_hidden()
    assert page.locator("#overview .layer").count() == 0
    assert page.locator("#prediction").text_content() == "no input yet"
    page.set_input_files("#upload", str(data_dir / "photos" / "chelsea.png"))
    page.wait_for_function("document.querySelector('#prediction').dataset.predicted")
    assert "chelsea.png" in page.locator("#input-note").text_content()
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ defect 3


def test_a_late_answer_never_overwrites_a_newer_one(ui_server, ui_browser, ui_client):
    first, second = 0, 1
    classes = predicted(ui_client, "lenet", first), predicted(ui_client, "lenet", second)
    assert classes[0] != classes[1], classes  # two inputs the model tells apart
    page = open_page(ui_browser, ui_server)
    held = []

    def hold_the_first(route):
        if not held:
            held.append(route)  # answered only after the second one has landed
        else:
            route.continue_()

    page.route("**/api/runs/lenet/analyze", hold_the_first)
    page.fill("#sample-index", str(first))
    page.click("#load-sample")
    page.wait_for_function(
        "document.querySelector('#input-note').textContent.startsWith('test image 0,')"
    )
    assert len(held) == 1
    load_sample(page, second)
    page.wait_for_function("document.querySelector('#cam-note').textContent.startsWith('class ')")
    assert page.locator("#prediction").get_attribute("data-predicted") == classes[1]
    with contextlib.suppress(Exception):  # the page may have aborted it already: also fine
        held[0].continue_()  # the slow first answer arrives at last
    page.wait_for_timeout(1500)
    assert page.locator("#prediction").get_attribute("data-predicted") == classes[1]
    assert f"class {classes[1]} " in page.locator("#cam-note").text_content()
    assert page.locator("#input-note").text_content().startswith(f"test image {second},")
    page.close()


# ------------------------------------------------------------------ defects 10-12, 14


def test_layer_labels_line_up_and_never_break_mid_word(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server)
    load_sample(page, 0)
    page.wait_for_selector("#overview .layer[data-layer='softmax'] .tile")
    rows = page.eval_on_selector_all(
        "#overview .layer",
        """rows => rows.map(r => {
            const name = r.querySelector('.name strong'), tiles = r.querySelector('.tiles');
            const style = getComputedStyle(name);
            return { text: name.textContent, lines: Math.round(name.getBoundingClientRect().height
                     / parseFloat(style.lineHeight || 16)), label: r.querySelector('.name')
                     .getBoundingClientRect().left, tiles: tiles.getBoundingClientRect().left,
                     kind: r.querySelector('.name span').textContent }; })""",
    )
    assert len(rows) >= 10
    assert (
        len({round(r["label"]) for r in rows}) == 1 and len({round(r["tiles"]) for r in rows}) == 1
    )
    assert all(r["lines"] <= 1 for r in rows), rows  # "features.0", "classifier.3" on one line
    assert {"Conv2d", "ReLU", "MaxPool2d", "Linear"} <= {r["kind"] for r in rows}
    page.close()


def test_the_playground_keeps_its_limits(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server)
    page.fill("#pg-n", "200")
    page.wait_for_function("document.querySelector('#pg-formula').textContent.includes('200')")
    assert page.locator("#pg-formula").text_content() == (
        "input n: enter a whole number from 1 to 64 (got 200)"
    )
    assert is_problem(page, "#pg-formula")
    page.fill("#pg-n", "")  # an empty field is a problem, never "n=0"
    page.wait_for_function("document.querySelector('#pg-formula').textContent.endsWith('1 to 64')")
    assert "n=0" not in page.locator("#pg-formula").text_content()
    page.fill("#pg-n", "9")
    page.fill("#pg-k", "3")
    page.fill("#pg-s", "2")
    page.wait_for_function("document.querySelector('#pg-formula').textContent.includes('= 4')")
    assert not is_problem(page, "#pg-formula")
    assert page.eval_on_selector("#pg-n", "e => e.getAttribute('aria-invalid')") == "false"
    page.close()


def test_no_broken_images_and_a_favicon(ui_server, ui_browser, ui_client):
    page = open_page(ui_browser, ui_server)
    page.wait_for_timeout(500)
    broken = page.evaluate(
        "[...document.images].filter(i => !i.hidden && getComputedStyle(i).display !== 'none'"
        " && !(i.complete && i.naturalWidth > 0)).map(i => i.id || i.alt)"
    )
    assert broken == []  # nothing to show is hidden, never a broken-image icon
    icon = page.get_attribute("link[rel=icon]", "href")
    assert ui_client.get(icon).status_code == 200
    assert ui_client.get(icon).headers["content-type"].startswith("image/svg")
    assert page.problems == [], page.problems  # no 404 (favicon or other) while loading
    load_sample(page, 0)
    page.wait_for_function("document.querySelector('#cam-overlay').naturalWidth > 0")
    page.close()


def test_the_same_file_can_be_uploaded_twice(ui_server, ui_browser, data_dir):
    page = open_page(ui_browser, ui_server, run="cifar")
    photo = str(data_dir / "photos" / "chelsea.png")
    page.set_input_files("#upload", photo)
    page.wait_for_function("document.querySelector('#prediction').dataset.predicted")
    assert page.eval_on_selector("#upload", "e => e.value") == ""  # reset: a new choice fires
    page.click("#clear")
    assert page.locator("#prediction").text_content() == "no input yet"
    page.set_input_files("#upload", photo)
    page.wait_for_function("document.querySelector('#prediction').dataset.predicted")
    assert (
        "resized 451x300 to 48x32, centre-cropped to 32x32"
        in page.locator("#input-note").text_content()
    )
    assert page.problems == [], page.problems
    page.close()
