"""The explorer's backprop panel in a real headless Chromium over a real server with a briefly
trained LeNet: the course's example network walked through from the keyboard (its matrices and
autograd's agreement, an option change walking again), one SGD step of the run on a test image
(a row per layer, the loss before and after, as the API computes them), no numbers of an old
input once a new one comes, no serious axe findings, and a 375 px phone without sideways page
scrolling. Screenshots go to /tmp/bp-panel-*.png (or CNNLAB_SHOTS_BP)."""
# ruff: noqa: F811  (the fixtures imported from test_explorer_ui are the tests' parameters)

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from test_explorer_ui import (  # noqa: F401  (fixtures are used by name)
    load_sample,
    open_page,
    serious_axe_violations,
    ui_app,
    ui_browser,
    ui_client,
    ui_server,
)

SHOTS = Path(os.environ.get("CNNLAB_SHOTS_BP", "/tmp"))


def grid(page, selector: str) -> np.ndarray:
    return np.array(
        page.eval_on_selector(
            selector, "t => [...t.rows].map(r => [...r.cells].map(c => Number(c.textContent)))"
        )
    )


def walk_and_step(page) -> None:
    """From the keyboard: Tab from the last option to the walk's button and press it, then
    from the learning rate to the SGD step's button."""
    for field, button, done in (
        ("#bp-seed", "bp-walk-button", "#bp-check"),
        ("#bp-lr", "bp-step-button", "#bp-layers"),
    ):
        page.focus(field)
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == button
        page.keyboard.press("Enter")
        page.wait_for_selector(done)


def test_the_backprop_panel_walks_and_steps(ui_server, ui_browser, ui_client):
    page = open_page(ui_browser, ui_server)
    load_sample(page, 0)
    walk_and_step(page)
    # (a) the example network: the answer's numbers, labelled, and autograd agrees
    walk = ui_client.get("/api/backprop").json()
    assert page.locator("#bp-check").text_content().startswith("torch autograd agrees")
    assert page.locator("#bp-walk .bp-step").count() == 7
    rotated = np.asarray(walk["values"]["kernel_rot180"])
    assert np.allclose(grid(page, "#bp-rot180"), rotated, atol=1e-4)
    assert np.allclose(grid(page, "#bp-dw"), walk["values"]["dC_dw_l"], atol=1e-4)
    page.select_option("#bp-pool", "max")  # an option change walks again
    page.wait_for_function("document.querySelector('#bp-walk').textContent.includes('winners')")
    page.wait_for_selector("#bp-check")
    # (b) the run's SGD step on test image 0: a row per layer call, the loss as the API has it
    pixels = ui_client.get("/api/runs/lenet/sample/0").json()["pixels"]
    step = ui_client.post("/api/runs/lenet/backprop", json={"pixels": pixels}).json()
    names = page.eval_on_selector_all(
        "#bp-layers tr.bp-layer", "rs => rs.map(r => r.dataset.layer)"
    )
    assert names == [row["name"] for row in step["layers"]]
    loss = page.locator("#bp-loss").text_content()
    before, after = map(float, re.search(r": (\S+) → (\S+);", loss).groups())
    assert before == pytest.approx(step["loss_before"], rel=1e-2, abs=1e-4), loss
    assert after == pytest.approx(step["loss_after"], rel=1e-2, abs=1e-4), loss
    assert page.locator("#bp-layers tr.bp-filters table").count() == 2 * sum(
        row["kind"] == "Conv2d" for row in step["layers"]
    )
    assert not serious_axe_violations(page)
    page.locator("#backprop-panel").screenshot(path=str(SHOTS / "bp-panel-desktop.png"))
    # a new input: the old step's numbers go, and a step still on its way is dropped
    page.click("#bp-step-button")
    load_sample(page, 1)
    page.wait_for_timeout(300)
    assert page.locator("#bp-layers").count() == 0
    assert not page.problems, page.problems
    page.close()


def test_the_backprop_panel_on_a_phone(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server, width=375, height=800)
    load_sample(page, 2)
    walk_and_step(page)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    # the layer table is wider than a phone: it scrolls inside its own (focusable) box
    box = page.eval_on_selector(".bp-scroll", "b => [b.scrollWidth, b.clientWidth, b.tabIndex]")
    assert box[1] <= 375 and box[2] == 0
    assert not serious_axe_violations(page)
    page.locator("#backprop-panel").screenshot(path=str(SHOTS / "bp-panel-375.png"))
    assert not page.problems, page.problems
    page.close()
