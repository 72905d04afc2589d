"""The explorer page (issue 13), continued: every number traced back to the input (every layer
kind, every input channel, the windows, the running sum), honest colours, the keyboard-only
path, axe-core, the phone and desktop layouts (with the docs' screenshots), the practitioner's
report and the presets. Fixtures and helpers come from test_explorer_ui.py."""
# ruff: noqa: F811  (the fixtures imported from test_explorer_ui are the tests' parameters)

from __future__ import annotations

import re

import pytest
import torch
from test_explorer_ui import (  # noqa: F401  (fixtures are used by name)
    load_sample,
    open_page,
    select_tile,
    serious_axe_violations,
    ui_app,
    ui_browser,
    ui_client,
    ui_server,
    ui_shots,
)

NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def held(text: str) -> float:
    return float(re.search(rf"the map holds ({NUMBER})$", text).group(1))


def layer_outputs(lenet, client, index):
    """Every layer's output for test image ``index``, computed here with torch."""
    from cnnlab.inspect import capture

    pixels = client.get(f"/api/runs/lenet/sample/{index}").json()["pixels"]
    image = torch.tensor(pixels, dtype=torch.uint8)
    with torch.no_grad(), capture(lenet.model) as record:
        lenet.model(lenet.preprocess(image[None]))
    outputs = {name: out[0] for name, out in record["outputs"].items()}
    outputs["softmax"] = torch.softmax(outputs["classifier.3"], 0)  # the page's last "layer"
    return outputs


# ------------------------------------------------------------------ defects 5, 7, 8


def test_every_layer_kind_is_explained_with_torchs_numbers(ui_server, ui_browser, ui_client, lenet):
    outputs = layer_outputs(lenet, ui_client, 0)
    page = open_page(ui_browser, ui_server)
    load_sample(page, 0)
    page.wait_for_selector("#overview .layer[data-layer='softmax'] .tile")

    text = select_tile(page, "features.3", 2)  # conv2: 6 input channels x 5x5 = 150 products
    assert page.locator("#kernel-panel").evaluate(  # scrolled into view, pixel labelled
        "e => e.getBoundingClientRect().top < innerHeight && e.getBoundingClientRect().bottom > 0"
    )
    assert text.startswith("features.3 channel 2 at (row 5, column 5): sum of 150 products")
    assert held(text) == pytest.approx(float(outputs["features.3"][2, 5, 5]), abs=1e-3)
    assert page.locator("#kernel details.channel").count() == 6  # every input channel
    subtotals = [
        float(re.search(rf"subtotal ({NUMBER})", s).group(1))
        for s in page.locator("#kernel details.channel summary").all_text_contents()
    ]
    bias = float(re.search(rf"bias ({NUMBER})", text).group(1))
    assert sum(subtotals) + bias == pytest.approx(held(text), abs=1e-3)
    assert "row 5, column 5" in page.locator("#pixel-label").text_content()
    captions = page.locator("#trace-views figcaption").all_text_contents()
    assert captions[0] == "window on features.2, channel 0: rows 5–9, columns 5–9"
    assert captions[1].startswith("receptive field on the input: rows ")

    guess = int(outputs["softmax"].argmax())
    checks = {
        "features.1": (2, "gives", outputs["features.1"][2, 14, 14]),  # ReLU at (14, 14)
        "features.2": (2, "max pooling", outputs["features.2"][2, 7, 7]),
        "classifier.0": (2, "copied from channel 2", outputs["classifier.0"][2]),
        "classifier.1": (3, "sum of 120 products", outputs["classifier.1"][3]),
        "softmax": (guess, "exp(logit)", None),
    }
    for layer, (channel, words, expected) in checks.items():
        text = select_tile(page, layer, channel)
        assert words in text, text
        value = held(text)
        if expected is not None:
            assert value == pytest.approx(float(expected), abs=1e-3), layer
        assert page.locator("#kernel .problem").count() == 0
    assert value == pytest.approx(float(outputs["softmax"][guess]), abs=1e-3)
    assert page.locator("#kernel table tr.winner").count() == 1  # the predicted class's row
    assert page.problems == [], page.problems
    page.close()


def test_the_running_sum_and_the_sliding_window(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server)
    load_sample(page, 0)
    text = select_tile(page, "features.0", 1)
    for _ in range(3):
        page.click("#anim-step")
    running = page.locator("#running-sum").text_content()
    assert running.startswith("product 3 of 25 (channel 0):")
    assert page.locator("#kernel td.current").count() == 1
    assert page.locator("#kernel td.done").count() == 2
    page.click("#anim-play")
    page.wait_for_function(
        "document.querySelector('#running-sum').textContent.startsWith('all 25 products')"
    )
    final = page.locator("#running-sum").text_content()
    assert float(final.rsplit("= ", 1)[1]) == pytest.approx(held(text), abs=2e-4)
    page.click("#anim-slide")  # the window moves one column on: a new pixel, a new sum
    page.wait_for_function(
        "document.querySelector('#kernel-sum')?.textContent.includes('(row 14, column 15)')"
    )
    assert "column 15" in page.locator("#pixel-label").text_content()
    page.close()


def test_the_keyboard_alone_reaches_an_explanation(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server)
    load_sample(page, 0)
    page.wait_for_selector("#overview .layer[data-layer='features.0'] .tile")
    page.locator("#shared-scale").focus()  # the maps' options come right before the maps
    for _ in range(40):
        page.keyboard.press("Tab")
        where = page.evaluate(
            "document.activeElement.closest('.layer')?.dataset.layer + ' ' +"
            " document.activeElement.className"
        )
        if where == "features.0 tile":
            break
    assert where == "features.0 tile"
    label = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert label.startswith("features.0 channel 0, values ")
    page.keyboard.press("Enter")
    page.wait_for_selector("#kernel-sum")
    assert page.evaluate("document.activeElement.className") == "mapbox"
    assert "(row 14, column 14)" in page.locator("#kernel-sum").text_content()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    page.wait_for_function(
        "document.querySelector('#kernel-sum')?.textContent.includes('(row 15, column 15)')"
    )
    status = page.locator("#status")
    assert status.get_attribute("aria-live") == "polite"
    page.wait_for_function("document.querySelector('#status').textContent.includes('column 15')")
    page.close()


# ------------------------------------------------------------------ defect 6 and honest colour


def pixel(page, selector):
    return page.eval_on_selector(
        selector, "c => Array.from(c.getContext('2d').getImageData(0, 0, 1, 1).data.slice(0, 3))"
    )


def test_constant_maps_show_their_value_and_every_channel_can_be_shown(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server)
    load_sample(page, 0)
    layer = "#overview .layer[data-layer='features.6']"  # 120 maps of 1x1: one value each
    page.wait_for_selector(f"{layer} .tile canvas")
    assert page.locator(f"{layer} .tile").count() == 16
    assert page.locator(f"{layer} .tile.constant").count() == 0  # one value is no "constant"
    assert "= " in page.locator(f"{layer} .tile").first.text_content()
    expected = page.evaluate(  # coloured on the layer's range, as the colour legend says
        "Promise.all([import('/static/state.js'), import('/static/maps.js')]).then(([s, m]) => {"
        " const l = s.state.analysis.layers.find(x => x.name === 'features.6');"
        " return m.colourOf(l.maps[0].min, l.layer_min, l.layer_max).map(Math.round); })"
    )
    assert pixel(page, f"{layer} .tile canvas") == pytest.approx(expected, abs=1)
    page.click(f"{layer} button.show-all")  # "16 of 120 — show all"
    page.wait_for_function(f'document.querySelectorAll("{layer} .tile").length === 120')
    assert page.locator(f"{layer} .show-all").count() == 0

    conv = "#overview .layer[data-layer='features.0'] .tile[data-channel='0'] canvas"
    own = pixel(page, conv)
    page.check("#shared-scale")  # one scale per layer repaints the maps
    page.wait_for_function(
        '(o) => { const c = document.querySelector("' + conv + '");'
        " const d = c.getContext('2d').getImageData(0, 0, 1, 1).data;"
        " return d[0] !== o[0] || d[1] !== o[1] || d[2] !== o[2]; }",
        arg=own,
    )
    select_tile(page, "features.0")
    bar = page.locator("#kernel-map .colourbar").text_content()
    assert re.search(NUMBER, bar)  # the colour bar names its low and high ends
    assert "#2166ac" in page.locator("#kernel-map .legend-bar").get_attribute("style").lower() or (
        "rgb(33, 102, 172)" in page.locator("#kernel-map .legend-bar").get_attribute("style")
    )  # signed values: the diverging map
    page.close()


def test_grad_cam_has_a_colour_blind_safe_legend(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server)
    load_sample(page, 0)
    page.wait_for_selector("#cam-legend:not([hidden])")
    assert page.locator("#cam-colormap").input_value() == "viridis"
    assert "#440154" in page.locator("#cam-legend .legend-bar").get_attribute("style")
    page.select_option("#cam-colormap", "jet")
    page.wait_for_function(
        "document.querySelector('#cam-legend .legend-bar').style.background.includes('127)')"
    )
    page.close()


# ------------------------------------------------------------------ defect 9, 15: screens, axe


def test_phone_and_desktop_layouts(ui_server, ui_browser, ui_shots):
    for width, height, name in [(1280, 800, "explorer-1280.png"), (390, 844, "explorer-390.png")]:
        page = open_page(ui_browser, ui_server, width, height)
        assert "width=device-width" in page.get_attribute("meta[name=viewport]", "content")
        load_sample(page, 0)
        page.wait_for_selector("#overview .layer[data-layer='softmax'] .tile")
        select_tile(page, "features.3", 2)
        page.wait_for_selector("#trace-views figure canvas")
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing sideways
        boxes = page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('main section')].map(s =>"
            " [s.id, s.getBoundingClientRect().left]))"
        )
        if width == 390:  # one column
            assert len({round(x) for x in boxes.values()}) == 1, boxes
        else:  # the traced number fills the right third
            assert boxes["kernel-panel"] > width * 0.5, boxes
        page.locator("#kernel-panel").evaluate("e => e.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(ui_shots / name))
        page.close()


def test_the_readme_pictures_a_drawn_digit_and_the_cat(ui_server, ui_browser, ui_shots, data_dir):
    page = open_page(ui_browser, ui_server, 1280, 800)
    box = page.locator("#draw").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 50)
    page.mouse.down()
    for step in range(20):  # a vertical stroke: a "1"
        page.mouse.move(x + step * 0.5, box["y"] + 50 + step * 9)
    page.mouse.up()
    page.wait_for_function("document.querySelector('#prediction').dataset.predicted")
    assert page.locator("#prediction").get_attribute("data-predicted") == "1"
    page.wait_for_selector("#overview .layer[data-layer='features.0'] .tile")
    select_tile(page, "features.0", 3)
    page.locator("#kernel-map .mapbox").click(position={"x": 155, "y": 115})
    page.wait_for_function(
        "document.querySelector('#kernel-sum')?.textContent.includes('(row 11, column 15)')"
    )
    page.wait_for_selector("#cam-legend:not([hidden])")
    page.evaluate("window.scrollTo(0, 0)")  # the traced number stays in view (sticky)
    page.screenshot(path=str(ui_shots / "digit.png"))
    page.close()

    page = open_page(ui_browser, ui_server, 1280, 800, run="cifar")
    page.set_input_files("#upload", str(data_dir / "photos" / "chelsea.png"))
    page.wait_for_function("document.querySelector('#cam-overlay').naturalWidth === 32")
    page.wait_for_selector("#overview .layer .tile canvas")
    first_conv = page.eval_on_selector("#overview .layer[data-kind='conv']", "e => e.dataset.layer")
    select_tile(page, first_conv, 0)
    page.wait_for_selector("#trace-views figure canvas")
    page.wait_for_timeout(300)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ui_shots / "cat.png"))
    page.close()


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_axe_finds_nothing_critical_or_serious(ui_server, ui_browser, width, height):
    page = open_page(ui_browser, ui_server, width, height)
    load_sample(page, 0)
    page.wait_for_selector("#overview .layer[data-layer='softmax'] .tile")
    select_tile(page, "features.3", 1)
    page.wait_for_selector("#report table")
    bad = serious_axe_violations(page)
    assert bad == []
    page.close()


# ------------------------------------------------------------------ report and presets


def test_the_report_and_the_presets(ui_server, ui_browser, ui_client):
    page = open_page(ui_browser, ui_server)
    page.wait_for_selector("#report table.confusion")
    assert page.locator("#report table.confusion tr").count() == 11  # header + 10 classes
    assert page.locator("#report .per-class li").count() == 10
    assert page.locator("#report canvas").count() == 2  # loss and accuracy by epoch
    page.wait_for_function(
        "[...document.querySelectorAll('#report .mistakes img')].every(i => i.naturalWidth > 0)"
    )
    presets = ui_client.get("/api/presets").json()
    assert len(presets) >= 4
    for preset in presets:
        page.click(f"#presets button[data-key='{preset['key']}']")
        page.wait_for_selector(f"#preset-open[data-key='{preset['key']}']")
        assert page.locator("#preset-open h3").text_content() == preset["title"]
        if preset["kind"] == "arithmetic":
            assert page.input_value("#pg-n") == str(preset.get("n", preset["inputs"].get("n")))
            page.wait_for_function(
                "document.querySelector('#pg-formula').textContent.startsWith('output = ')"
            )
    page.close()


def test_the_gradient_of_one_kernel_matches_autograd(ui_server, ui_browser, ui_client, lenet):
    pixels = ui_client.get("/api/runs/lenet/sample/0").json()["pixels"]
    image = torch.tensor(pixels, dtype=torch.uint8)
    model = lenet.model
    model.zero_grad()
    logits = model(lenet.preprocess(image[None]))
    target = logits.argmax(1)
    loss = torch.nn.functional.cross_entropy(logits, target)
    loss.backward()
    weight_grad = dict(model.named_modules())["features.3"].weight.grad[2]
    model.zero_grad()

    page = open_page(ui_browser, ui_server)
    load_sample(page, 0)
    select_tile(page, "features.3", 2)
    page.click("#kernel .gradient button")
    page.wait_for_selector("#gradient details ~ .grids table.gradient-grid")
    shown = page.locator("#gradient p").first.text_content()
    assert float(re.search(rf"loss ({NUMBER})", shown).group(1)) == pytest.approx(
        loss.detach().item(), abs=1e-4
    )
    tables = page.locator("#gradient details ~ .grids table.gradient-grid")
    assert tables.count() == 6  # dL/dW for every input channel of the kernel
    for channel in (0, 5):
        cells = tables.nth(channel).locator("td").all_text_contents()
        values = torch.tensor([float(c) for c in cells]).reshape(5, 5)
        assert torch.allclose(values, weight_grad[channel], atol=1e-4, rtol=1e-3), channel
    page.close()
