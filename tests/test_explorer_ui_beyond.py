"""The explorer page beyond CNN Explainer, in a real headless Chromium over real servers: the
network as one picture (lenet's steps and an untrained resnet18's 70, residual adds as two
paths meeting), a convolution's map taken apart into its input channels' maps and their sum,
the window moved by hovering with the patch, kernel and product cells lit together, one colour
scale per map, layer or network, the input's normalisation worked out for a pixel, a softmax as
sorted bars and a linear step's terms linked to the map pixels behind them. Screenshots go to
/tmp/shots-c (or CNNLAB_SHOTS_C)."""
# ruff: noqa: F811  (the fixtures imported from test_explorer_ui are the tests' parameters)

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_explorer_ui import (  # noqa: F401  (fixtures are used by name)
    load_sample,
    open_page,
    select_tile,
    serious_axe_violations,
    serving,
    ui_app,
    ui_browser,
    ui_client,
    ui_server,
)

from cnnlab.explorer import create_app

NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
SIZES = [(1280, 800), (390, 844)]
SHOTS = Path(os.environ.get("CNNLAB_SHOTS_C", "/tmp/shots-c"))


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def watched(browser, server, width=1280, height=800, run="lenet"):
    """``open_page`` with console errors counted as problems too."""
    page = open_page(browser, server, width, height, run)
    page.on(
        "console",
        lambda m: page.problems.append(f"console: {m.text}") if m.type == "error" else None,
    )
    return page


def analysis(client, run, index):
    pixels = client.get(f"/api/runs/{run}/sample/{index}").json()["pixels"]
    return pixels, client.post(f"/api/runs/{run}/analyze", json={"pixels": pixels}).json()


def lit(page, selector: str) -> set[str]:
    return set(page.eval_on_selector_all(selector, "ns => ns.map(n => n.dataset.step)"))


def no_page_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= innerWidth")


def canvas_sum(page, selector: str) -> list[int]:
    """Sum of each of a canvas's R, G and B channels (a fingerprint of its colours)."""
    return page.eval_on_selector(
        selector,
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " const s = [0, 0, 0]; for (let i = 0; i < d.length; i += 4)"
        " { s[0] += d[i]; s[1] += d[i + 1]; s[2] += d[i + 2]; } return s; }",
    )


# ------------------------------------------------------------------ 1. the network as a picture


@pytest.mark.parametrize("width, height", SIZES)
def test_the_network_picture_lights_what_a_step_reads_and_what_reads_it(
    ui_server, ui_browser, ui_client, width, height
):
    _, answer = analysis(ui_client, "lenet", 0)
    steps = answer["layers"]
    page = watched(ui_browser, ui_server, width, height)
    load_sample(page, 0)
    page.wait_for_selector("#graph .node[data-step='softmax']")
    assert page.locator("#graph .node").count() == len(steps) + 1  # and the input
    assert page.locator("#graph path").count() == sum(len(s["reads"]) for s in steps)
    names = page.eval_on_selector_all("#graph button.node", "ns => ns.map(n => n.dataset.step)")
    assert names == [s["name"] for s in steps]  # in execution order
    conv = next(s for s in steps if s["kind"] == "conv")
    thumb = f"#graph .node[data-step='{conv['name']}'] canvas"
    page.wait_for_function(f'document.querySelector("{thumb}").width === {conv["shape"][2]}')
    assert max(canvas_sum(page, thumb)) > 0  # its first map, painted

    middle = steps[len(steps) // 2]
    readers = {s["name"] for s in steps if middle["name"] in s["reads"]}
    node = page.locator(f"#graph .node[data-step='{middle['name']}']")
    if width > 500:
        node.hover()
    else:
        node.focus()
    assert lit(page, "#graph .node.is-read") == set(middle["reads"])
    assert lit(page, "#graph .node.is-reader") == readers
    assert lit(page, "#graph .node.is-current") == {middle["name"]}
    assert page.locator("#graph path.lit").count() == len(middle["reads"]) + len(readers)
    page.mouse.move(1, 1)  # the pointer leaves the picture: the keyboard alone now
    node.focus()
    page.keyboard.press("ArrowRight")  # the arrow keys walk the steps, lighting as they go
    after = steps[len(steps) // 2 + 1]["name"]
    assert page.evaluate("document.activeElement.dataset.step") == after
    assert lit(page, "#graph .node.is-current") == {after}
    assert page.locator("#graph .node[tabindex='0']").count() == 1  # one tab stop
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.dataset.step") == middle["name"]
    page.keyboard.press("Enter")  # selects the step as its first map does
    page.wait_for_function(
        "(n) => document.querySelector('#kernel-sum')?.textContent.startsWith(n + ' ')",
        arg=middle["name"],
    )
    assert no_page_scroll(page)
    page.locator("#graph-panel").scroll_into_view_if_needed()
    shot(page, f"graph-lenet-{width}.png")
    assert page.problems == [], page.problems
    page.close()


@pytest.fixture(scope="module")
def resnet_server():
    """An untrained resnet18 opened by name (no run folder, no test set)."""
    with serving(create_app(["resnet18"])) as url:
        yield url


def test_resnet18s_seventy_steps_scroll_inside_the_panel_and_adds_join_two_paths(
    resnet_server, ui_browser
):
    page = watched(ui_browser, resnet_server, 1280, 800, run="lenet")  # its one run: resnet18
    box = page.locator("#draw").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 180, box["y"] + 200, steps=8)
    page.mouse.up()
    page.wait_for_selector("#graph .node[data-step='softmax']", timeout=60000)
    assert page.locator("#graph button.node").count() == 70
    add = "layer1.0.add"
    assert page.locator(f"#graph path[data-to='{add}']").count() == 2  # two paths meet
    assert page.locator(f"#graph path.skip[data-to='{add}']").count() == 1  # the shortcut arcs
    page.locator(f"#graph .node[data-step='{add}']").hover()
    assert lit(page, "#graph .node.is-read") == {"layer1.0.bn2", "maxpool"}
    assert lit(page, "#graph .node.is-reader") == {"layer1.0.relu#2"}
    scroll = page.eval_on_selector("#graph", "g => [g.scrollWidth, g.clientWidth]")
    assert scroll[0] > 3 * scroll[1]  # the panel scrolls sideways ...
    assert no_page_scroll(page)  # ... never the page
    page.locator(f"#graph .node[data-step='{add}']").scroll_into_view_if_needed()
    shot(page, "graph-resnet18-1280.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert no_page_scroll(page)
    page.locator(f"#graph .node[data-step='{add}']").scroll_into_view_if_needed()
    shot(page, "graph-resnet18-390.png")
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ 2. a map taken apart


def test_a_convolution_map_is_its_input_channels_maps_plus_bias(ui_server, ui_browser, ui_client):
    pixels, _ = analysis(ui_client, "lenet", 0)
    expected = ui_client.post(
        "/api/runs/lenet/contributions",
        json={"pixels": pixels, "layer": "features.3", "channel": 2, "limit": 8},
    ).json()
    assert expected["sum"].startswith("data:image/png;base64,")
    page = watched(ui_browser, ui_server)
    load_sample(page, 0)
    select_tile(page, "features.3", 2)
    page.wait_for_selector("#contrib-output canvas")
    shown = page.eval_on_selector_all(
        "#contrib-maps figure[data-input]", "fs => fs.map(f => +f.dataset.input)"
    )
    assert shown == expected["inputs"] and len(shown) == min(8, expected["count"])
    bias = re.search(NUMBER, page.locator("#contrib-bias").text_content()).group(0)
    assert float(bias) == pytest.approx(expected["bias"], abs=1e-4)
    assert "one scale for every map here" in page.locator("#contrib-legend").text_content()
    assert "equals the output map" in page.locator("#contrib-check").text_content()
    # the sum and the output are drawn on the same scale: the same picture
    difference = page.evaluate(
        "() => { const get = (s) => { const c = document.querySelector(s + ' canvas');"
        " return c.getContext('2d').getImageData(0, 0, c.width, c.height).data; };"
        " const a = get('#contrib-sum'), b = get('#contrib-output'); let m = 0;"
        " for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i])); return m; }"
    )
    assert difference <= 3
    first = canvas_sum(page, "#contrib-maps figure canvas")
    assert first != canvas_sum(page, "#contrib-sum canvas")  # a part is not the whole
    page.locator("#contrib-view").scroll_into_view_if_needed()
    shot(page, "contributions-1280.png")
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ 3 and 5: the window, the cells


def test_hovering_moves_the_window_and_one_cell_lights_in_all_three_grids(
    ui_server, ui_browser, ui_client
):
    pixels, answer = analysis(ui_client, "lenet", 0)
    first = next(s for s in answer["layers"] if s["kind"] == "conv")
    assert first["reads"] == ["fit"]  # LeNet zero-pads the 28x28 digit to 32x32 first
    norm = answer["normalisation"]
    page = watched(ui_browser, ui_server)
    load_sample(page, 0)
    select_tile(page, first["name"], 1)
    box = page.locator("#kernel-map .mapbox").bounding_box()
    height, width = first["shape"][1:]
    page.mouse.move(box["x"] + box["width"] * 9.5 / width, box["y"] + box["height"] * 6.5 / height)
    page.wait_for_function(
        "document.querySelector('#kernel-sum')?.textContent.includes('(row 6, column 9)')"
    )
    assert "row 6, column 9" in page.locator("#pixel-label").text_content()
    grids = page.locator("#kernel details.channel .grids").first
    grids.locator("table").first.locator("tr").nth(1).locator("td").nth(2).hover()
    cells = page.eval_on_selector_all(
        "#kernel td.lit", "ts => ts.map(t => [t.parentElement.rowIndex, t.cellIndex])"
    )
    assert cells == [[1, 2]] * 3  # the patch cell, its weight and their product
    grids.focus()
    for key in ["ArrowRight", "ArrowDown", "ArrowDown"]:
        page.keyboard.press(key)
    cells = page.eval_on_selector_all(
        "#kernel td.lit", "ts => ts.map(t => [t.parentElement.rowIndex, t.cellIndex])"
    )
    assert cells == [[3, 3]] * 3
    texts = [
        float(t)
        for t in page.eval_on_selector_all("#kernel td.lit", "ts => ts.map(t => t.textContent)")
    ]
    assert texts[0] * texts[1] == pytest.approx(texts[2], abs=2e-3)

    # 5: the input pixel behind the lit patch cell, normalised
    line = page.locator("#kernel .norm-pixel").first
    y, x = int(line.get_attribute("data-y")), int(line.get_attribute("data-x"))
    window = ui_client.post(
        "/api/runs/lenet/explain",
        json={"pixels": pixels, "layer": first["name"], "channel": 1, "y": 6, "x": 9},
    ).json()["window"]
    pad = 2  # the fit step's zero padding: its row 2 is the image's row 0
    assert (y, x) == (window["y0"] + 3 - pad, window["x0"] + 3 - pad)  # the window's (3, 3)
    raw = pixels[0][y][x]
    assert raw > 0  # on the digit's stroke
    assert int(line.get_attribute("data-raw")) == raw
    text = line.text_content()
    assert text.startswith(f"fit row {y + pad}, column {x + pad} is input channel 0, row {y}, ")
    numbers = [float(n) for n in re.findall(NUMBER, text.split(":", 1)[1])]
    value = (raw / 255 - norm["mean"][0]) / norm["std"][0]
    assert numbers[:3] == [raw, raw, 255] and numbers[3] == pytest.approx(raw / 255, abs=1e-4)
    assert numbers[-2] == pytest.approx(value, abs=1e-3)  # (x / 255 - mean) / std
    assert numbers[-1] == pytest.approx(texts[0], abs=1e-3)  # ... is the patch's number
    row = page.locator("#norm-row").text_content()
    assert "x / 255" in row
    mean, std = (float(re.search(rf"{w} ({NUMBER})", row).group(1)) for w in ("mean", "std"))
    assert (mean, std) == pytest.approx((norm["mean"][0], norm["std"][0]), abs=1e-4)
    shot(page, "window-and-cells-1280.png")
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ 4. the colour scale


def test_one_colour_scale_per_map_layer_or_network_recolours_the_tiles(ui_server, ui_browser):
    page = watched(ui_browser, ui_server)
    load_sample(page, 0)
    tile = "#overview .layer[data-layer='features.3'] .tile[data-channel='0'] canvas"
    page.wait_for_selector(tile)
    legends, colours = [], []
    for choice in ["#scale-map", "#shared-scale", "#scale-all"]:
        page.check(choice)
        legends.append(page.locator("#scale-legend").text_content())
        colours.append(canvas_sum(page, tile))
    assert "own range" in legends[0] and "one per layer" in legends[1]
    assert "every map of every step" in legends[2] and re.search(
        NUMBER + " … " + NUMBER, legends[2]
    )
    assert len({tuple(c) for c in colours}) == 3  # each scale paints the tile differently
    thumb = "#graph .node[data-step='features.3'] canvas"
    all_scale = canvas_sum(page, thumb)
    page.check("#scale-map")
    assert canvas_sum(page, thumb) != all_scale  # the picture's thumbnails follow
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ 6. softmax and linear


@pytest.mark.parametrize("width, height", SIZES)
def test_softmax_bars_are_sorted_and_a_linear_term_selects_its_map_pixel(
    ui_server, ui_browser, ui_client, width, height
):
    pixels, answer = analysis(ui_client, "lenet", 0)
    page = watched(ui_browser, ui_server, width, height)
    load_sample(page, 0)
    page.wait_for_selector("#overview .layer[data-layer='softmax'] .tile")
    select_tile(page, "softmax", answer["predicted"])
    bars = page.eval_on_selector_all(
        "#softmax-bars li", "ls => ls.map(l => [+l.dataset.class, +l.dataset.p, l.textContent])"
    )
    assert len(bars) == 10
    assert [p for _, p, _ in bars] == sorted((p for _, p, _ in bars), reverse=True)
    assert bars[0][0] == answer["predicted"]
    classes = [p["class"] for p in answer["probabilities"]]
    assert all(text.startswith(classes[index]) for index, _, text in bars)
    shot(page, f"softmax-{width}.png")

    linear = next(s for s in answer["layers"] if s["kind"] == "linear")
    flatten = linear["reads"][0]
    select_tile(page, linear["name"], 3)
    link = page.locator("#linear-terms .term-link").first
    index = int(link.get_attribute("data-index"))
    source = ui_client.post(
        "/api/runs/lenet/explain",
        json={"pixels": pixels, "layer": flatten, "channel": index, "y": 0, "x": 0},
    ).json()["source"]
    term = ui_client.post(
        "/api/runs/lenet/explain",
        json={"pixels": pixels, "layer": linear["name"], "channel": 3, "y": 0, "x": 0},
    ).json()["top_terms"][0]
    assert term["index"] == index
    link.click()
    step, channel = source["step"], source["channel"]
    where = f"{step} channel {channel} at (row {source['y']}, column {source['x']})"
    page.wait_for_function(
        "(w) => document.querySelector('#kernel-sum')?.textContent.startsWith(w + ':')", arg=where
    )
    held = re.search(rf"the map holds ({NUMBER})$", page.locator("#kernel-sum").text_content())
    assert float(held.group(1)) == pytest.approx(term["input"], abs=1e-3)
    title = page.locator("#kernel-map .map-title").text_content()
    assert title.startswith(step) and title.endswith(f"channel {channel}")
    page.wait_for_function("document.querySelector('#kernel-map .mapbox img').naturalWidth > 0")
    tile = f"#overview .layer[data-layer='{step}'] .tile[data-channel='{channel}']"
    assert page.get_attribute(tile, "aria-pressed") == "true"  # its map is shown, pressed
    assert no_page_scroll(page)
    shot(page, f"linear-link-{width}.png")
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ axe


@pytest.mark.parametrize("width, height", SIZES)
def test_axe_finds_nothing_critical_or_serious_with_the_new_panels(
    ui_server, ui_browser, width, height
):
    page = watched(ui_browser, ui_server, width, height)
    load_sample(page, 0)
    page.wait_for_selector("#overview .layer[data-layer='softmax'] .tile")
    select_tile(page, "features.3", 1)
    page.wait_for_selector("#contrib-output canvas")
    page.locator("#graph .node[data-step='features.3']").hover()
    bad = serious_axe_violations(page)
    assert bad == []
    assert no_page_scroll(page)
    page.close()
