"""The explorer page's audit defects (the issue's numbers), each in a real headless Chromium over
the real server of test_explorer_ui.py: inputs tied to the run and generation that asked for
them, a layout where the sticky trace never covers a panel, no stale number while a pixel loads,
keyboard focus kept, honest colours and legend, the presets, the phone's way back to the maps,
1x1 maps, whole range captions, the running sum's speed and the report only for runs with a
history. Slow answers are held with route interception."""
# ruff: noqa: F811  (the fixtures imported from test_explorer_ui are the tests' parameters)

from __future__ import annotations

import contextlib
import json
import re

import pytest
from test_explorer_ui import (  # noqa: F401  (fixtures are used by name)
    load_sample,
    open_page,
    select_tile,
    ui_app,
    ui_browser,
    ui_client,
    ui_server,
)

NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def open_watched(browser, server, *args, **kwargs):
    """``open_page``, with console errors counted as problems too (but those of /explain
    answers the tests provoke)."""
    page = open_page(browser, server, *args, **kwargs)

    def console(message):
        if message.type == "error" and "/explain" not in message.location.get("url", ""):
            page.problems.append(f"console: {message.text}")

    page.on("console", console)
    return page


class Held:
    """The requests of ``page`` matching ``pattern``, held until ``release`` (a slow server)."""

    def __init__(self, page, pattern):
        self.page, self.pattern, self.routes = page, pattern, []
        page.route(pattern, lambda route: self.routes.append(route))

    def wait(self, count=1) -> None:
        for _ in range(400):
            if len(self.routes) >= count:
                return
            self.page.wait_for_timeout(25)
        got = len(self.routes)
        raise AssertionError(f"{count} request(s) of {self.pattern} expected, got {got}")

    def release(self) -> None:
        """Let the held requests go on; later ones are no longer held."""
        self.page.unroute(self.pattern)
        for route in self.routes:
            with contextlib.suppress(Exception):  # the page may have aborted it: also fine
                route.continue_()


def record(page, suffix) -> list[str]:
    """The URLs of the requests the page makes that end with ``suffix``, from now on."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if r.url.endswith(suffix) else None)
    return seen


# ------------------------------------------------------------------ defect 2


@pytest.mark.parametrize(
    "source, interruption",
    [("sample", "run"), ("upload", "run"), ("sample", "clear"), ("upload", "clear")],
)
def test_an_input_still_loading_is_dropped_by_a_run_switch_or_clear(
    ui_server, ui_browser, data_dir, source, interruption
):
    page = open_watched(ui_browser, ui_server)
    analyzed = record(page, "/analyze")
    if source == "sample":
        held = Held(page, "**/api/runs/lenet/sample/*")
        page.fill("#sample-index", "0")
        page.click("#load-sample")
    else:
        held = Held(page, "**/api/runs/lenet/upload")
        page.set_input_files("#upload", str(data_dir / "photos" / "chelsea.png"))
    held.wait()
    if interruption == "run":
        page.select_option("#run", "cifar")
        page.wait_for_function("document.querySelector('#run-info').textContent.startsWith('3x32')")
    else:
        page.click("#clear")
        assert page.locator("#status").text_content().startswith("Cleared")
    held.release()  # the old input's answer arrives (or was aborted) after the switch or clear
    page.wait_for_timeout(800)
    assert analyzed == []  # no model was asked about the old input
    assert page.locator("#input-note").text_content() == ""
    assert page.locator("#prediction").text_content() == "no input yet"
    assert page.locator("#overview .layer").count() == 0
    if interruption == "clear":
        assert page.locator("#status").text_content().startswith("Cleared")
    assert page.problems == [], page.problems
    # the page still works: a new input after the interruption is analysed by the chosen run
    run = "cifar" if interruption == "run" else "lenet"
    page.set_input_files("#upload", str(data_dir / "photos" / "chelsea.png"))
    page.wait_for_function("document.querySelector('#prediction').dataset.predicted")
    assert analyzed and all(f"/api/runs/{run}/" in url for url in analyzed), analyzed
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ defect 1

OVERLAP = """() => {
  const panel = document.querySelector('#kernel-panel').getBoundingClientRect();
  return ['#report-panel', '#summary-panel', '#playground'].filter(id => {
    const r = document.querySelector(id).getBoundingClientRect();
    return r.left < panel.right && panel.left < r.right && r.top < panel.bottom
      && panel.top < r.bottom && panel.bottom > 0 && panel.top < innerHeight;
  });
}"""

HIT = """(selector) => [...document.querySelectorAll(selector)].map(e => {
  e.scrollIntoView({block: 'center', inline: 'nearest'});
  const r = e.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return e.contains(hit) ? null : `${selector}: ${hit ? hit.closest('section')?.id : 'nothing'}`;
}).filter(Boolean)"""


def test_the_sticky_trace_never_covers_the_panels_below(ui_server, ui_browser):
    page = open_watched(ui_browser, ui_server, 1280, 800)
    load_sample(page, 0)
    select_tile(page, "features.3", 2)  # a tall trace panel, as in the audit
    page.wait_for_selector("#report table.confusion")
    page.wait_for_selector("#presets button")
    height = page.evaluate("document.documentElement.scrollHeight")
    for y in range(0, height, 150):  # every scroll position: no overlap with a full-width panel
        page.evaluate(f"window.scrollTo(0, {y})")
        assert page.evaluate(OVERLAP) == [], y
    targets = [
        "#summary tr td:nth-child(5)",  # params
        "#summary tr td:nth-child(6)",  # mult-adds
        "#summary tr td:nth-child(7)",  # receptive field
        "#report .per-class li",
        "#presets button",
        "#pg-cin",
        "#pg-cout",
    ]
    for selector in targets:
        assert page.locator(selector).count() > 0, selector
        assert page.evaluate(HIT, selector) == [], selector
    page.locator("#pg-cout").click()  # the click lands on the field, not on the trace panel
    page.keyboard.press("Control+A")
    page.keyboard.type("4")
    page.wait_for_function(
        "document.querySelector('#pg-counts').textContent.includes('3*3*1*4 + 4')"
    )
    page.evaluate("window.scrollTo(0, 0)")  # at the top the trace is still beside the maps
    boxes = page.evaluate(
        "['kernel-panel', 'overview-panel'].map(id =>"
        " document.getElementById(id).getBoundingClientRect().left)"
    )
    assert boxes[0] > 1280 * 0.5 > boxes[1], boxes
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ defect 4

EXACT = rf"\) = ({NUMBER});"


def test_no_stale_number_or_window_while_a_new_pixel_loads(ui_server, ui_browser):
    page = open_watched(ui_browser, ui_server)
    load_sample(page, 0)
    select_tile(page, "features.3", 2)  # a conv pixel at (5, 5): its window and receptive field
    page.wait_for_selector("#trace-views figure canvas")
    assert re.search(EXACT, page.locator("#pixel-label").text_content())  # the exact value

    slow = Held(page, "**/explain")
    page.locator("#kernel-map .mapbox").focus()
    page.keyboard.press("ArrowRight")  # a new pixel whose explanation is held
    slow.wait()
    label = page.locator("#pixel-label").text_content()
    assert "(row 5, column 6)" in label
    assert not re.search(EXACT, label), label  # no exact number of the old pixel
    assert page.locator("#trace-views figure").count() == 0  # no window of the old pixel
    assert page.locator("#kernel-sum").count() == 0
    assert page.locator("#explain-loading").count() == 1
    slow.release()
    page.wait_for_function(
        "document.querySelector('#kernel-sum')?.textContent.includes('(row 5, column 6)')"
    )
    assert re.search(EXACT, page.locator("#pixel-label").text_content())
    assert page.locator("#trace-views figure").count() == 2

    slow = Held(page, "**/explain")  # another map: the old map's numbers never show on it
    page.locator("#overview .layer[data-layer='features.0'] .tile[data-channel='1']").click()
    slow.wait()
    assert "(row 14, column 14)" in page.locator("#pixel-label").text_content()
    assert not re.search(EXACT, page.locator("#pixel-label").text_content())
    assert page.locator("#trace-views figure").count() == 0
    slow.release()
    page.wait_for_function(
        "document.querySelector('#kernel-sum')?.textContent.startsWith('features.0 ')"
    )
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ defect 11


def wait_for_pixel(page, row, column) -> None:
    page.wait_for_function(
        "(w) => document.querySelector('#kernel-sum')?.textContent.includes(w)",
        arg=f"(row {row}, column {column})",
    )


def test_the_keyboard_slides_the_window_and_loads_a_test_image(ui_server, ui_browser):
    page = open_watched(ui_browser, ui_server)
    page.fill("#sample-index", "1")
    page.locator("#sample-index").press("Enter")  # Enter in the field loads the image
    page.wait_for_function(
        "document.querySelector('#input-note').textContent.startsWith('test image 1,')"
        " && document.querySelector('#prediction').dataset.predicted"
    )
    page.wait_for_selector("#overview .layer[data-layer='features.0'] .tile canvas")
    select_tile(page, "features.0", 1)  # 28x28 maps, the pixel (14, 14)
    page.locator("#anim-slide").focus()
    for column, key in [(15, "Enter"), (16, "Enter"), (17, " ")]:
        page.keyboard.press(key)
        wait_for_pixel(page, 14, column)
        assert page.evaluate("document.activeElement.id") == "anim-slide", column  # kept
    page.locator("#kernel-map .mapbox").focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    wait_for_pixel(page, 14, 27)
    page.locator("#anim-slide").focus()
    page.keyboard.press("Enter")  # at the row's end the window slides to the next row
    wait_for_pixel(page, 15, 0)
    assert page.evaluate("document.activeElement.id") == "anim-slide"
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ defect 5

PIXELS = """(c) => {
  const canvas = document.querySelector(
    `#overview .layer[data-layer="features.0"] .tile[data-channel="${c}"] canvas`);
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const out = [];
  for (let i = 0; i < d.length; i += 4) out.push([d[i], d[i + 1], d[i + 2]]);
  return out;
}"""


def test_map_colours_and_the_legend_agree_for_every_sign(ui_server, ui_browser):
    """The audit's all-negative map drawn grey although the legend says grey = values >= 0."""
    page = open_watched(ui_browser, ui_server)
    ranges = {0: (-2.0, -0.5), 1: (0.5, 2.0), 2: (-1.0, 1.0), 3: (-1.5, -1.5)}

    def rewrite(route):  # the real answer, with four maps of known sign
        response = route.fetch()
        answer = response.json()
        layer = next(x for x in answer["layers"] if x["name"] == "features.0")
        for channel, (low, high) in ranges.items():
            layer["maps"][channel] = {"min": low, "max": high, "constant": low == high}
        route.fulfill(response=response, json=answer)

    page.route("**/api/runs/lenet/analyze", rewrite)
    load_sample(page, 0)
    page.wait_for_selector("#overview .layer[data-layer='features.0'] .tile[data-channel='3']")
    negative, positive, mixed, constant = (page.evaluate(PIXELS, c) for c in range(4))

    assert all(r <= g <= b for r, g, b in negative)  # all below 0: shades of blue, never grey
    assert any(r < b for r, g, b in negative)
    assert all(r == g == b for r, g, b in positive)  # all >= 0: grey
    assert any(r < b for r, g, b in mixed) and any(r > b for r, g, b in mixed)  # blue and red
    assert all(p == [160, 160, 160] for p in constant)  # flat grey, and marked constant
    tile = "#overview .layer[data-layer='features.0'] .tile[data-channel='{}']"
    assert page.locator(tile.format(3)).get_attribute("class") == "tile constant"
    assert "constant" in page.locator(tile.format(3)).text_content()
    assert page.locator(".tile.constant").count() == 1

    def scale_of(channel):  # the traced map's colour bar uses the same scale
        select_tile(page, "features.0", channel)
        return page.locator("#kernel-map .legend-bar").get_attribute("style")

    assert "#2166ac" in scale_of(0) and "#000000" not in scale_of(0)
    assert "#000000" in scale_of(1) and "#2166ac" not in scale_of(1)
    assert "#2166ac" in scale_of(2) and "#b2182b" in scale_of(2)
    select_tile(page, "features.0", 3)
    assert "constant = -1.5" in page.locator("#kernel-map .colourbar").text_content()
    legend = page.locator("#map-legend").text_content()  # and the legend says just that
    assert "grey: every value ≥ 0" in legend and "some value below 0" in legend
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ defect 9

FIELDS = ["#pg-n", "#pg-k", "#pg-s", "#pg-p", "#pg-d", "#pg-cin", "#pg-cout"]
BLANK = "c => !c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v > 0)"


def test_every_preset_puts_numbers_only_in_the_playground(ui_server, ui_browser, ui_client):
    presets = ui_client.get("/api/presets").json()
    kinds = [p["kind"] for p in presets]
    assert {"correlate", "pool", "arithmetic", "cost"} <= set(kinds), kinds
    # an arithmetic preset right before the cost one: its animation must not stay
    presets.sort(key=lambda p: ["correlate", "pool", "arithmetic", "cost"].index(p["kind"]))
    page = open_watched(ui_browser, ui_server)
    page.wait_for_selector("#presets button")
    for preset in presets:
        page.click(f"#presets button[data-key='{preset['key']}']")
        page.wait_for_selector(f"#preset-open[data-key='{preset['key']}']")
        values = [page.input_value(f) for f in FIELDS]
        assert all(re.fullmatch(r"\d+", v) for v in values), (preset["key"], values)
        view = page.locator("#preset-view").text_content()
        answer = page.locator("#preset-open > p").first.text_content()
        assert not re.search(r"\d\.\d{5,}", answer), answer  # numbers are rounded
        if preset["kind"] == "cost":
            assert "9.677" in answer and "120,422,400" in answer, answer
            assert page.locator("#pg-canvas").is_hidden()  # no other preset's animation
            assert "not one sliding window" in view
            continue
        page.wait_for_function(
            "document.querySelector('#pg-formula').textContent.startsWith('output = ')"
        )
        assert page.eval_on_selector("#pg-formula", "e => e.classList.contains('problem')") is False
        assert page.locator("#pg-canvas").is_visible()
        assert page.eval_on_selector("#pg-canvas", BLANK) is False  # the kernel is drawn
        out = {
            "correlate": lambda a: len(a["feature_map"]),
            "pool": lambda a: len(a["max"]),
            "arithmetic": lambda a: a["playground"]["out"],
        }[preset["kind"]](preset["answer"])
        formula = page.locator("#pg-formula").text_content()
        assert formula.endswith(f"= {out}"), (preset["key"], formula)  # the preset's own size
    page.fill("#pg-k", "5")  # a field changed after the cost preset: the animation is back
    page.wait_for_function("!document.querySelector('#pg-canvas').hidden")
    assert page.problems == [], page.problems
    page.close()


# ------------------------------------------------------------------ defect 12 (front end)


def test_a_phone_tap_on_a_tile_has_a_way_back(ui_server, ui_browser):
    page = open_watched(ui_browser, ui_server, 390, 844)
    load_sample(page, 0)
    tile = "#overview .layer[data-layer='features.3'] .tile[data-channel='2']"
    page.wait_for_selector(tile)
    page.locator(tile).click()
    page.wait_for_selector("#kernel-sum")
    in_view = (
        "e => { const r = e.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; }"
    )
    assert page.eval_on_selector("#kernel-panel h2", in_view)  # the jump to the trace
    assert not page.eval_on_selector(tile, in_view)
    back = page.locator("#back-to-maps")
    assert back.is_visible() and "back to the maps" in back.text_content()
    back.click()
    assert page.eval_on_selector(tile, in_view)  # back at the tile, focus on it
    assert page.eval_on_selector(tile, "e => e === document.activeElement")
    assert page.locator(tile).get_attribute("aria-pressed") == "true"
    page.screenshot(path="/tmp/shots-a/back-to-maps-390.png")
    assert page.problems == [], page.problems
    page.close()


def test_one_by_one_maps_are_values_and_range_captions_are_whole(ui_server, ui_browser):
    page = open_watched(ui_browser, ui_server)
    load_sample(page, 0)
    page.wait_for_selector("#overview .layer[data-layer='softmax'] .tile")
    page.wait_for_selector("#overview .layer[data-layer='features.6'] .tile canvas")
    single = "#overview .layer[data-layer='features.6'] .tile"  # 120 maps of 1x1
    assert page.locator(single).count() == 16
    assert page.locator(f"{single}.constant").count() == 0  # one value is not "constant"
    analysis = page.evaluate("import('/static/state.js').then(m => m.state.analysis)")
    layers = {layer["name"]: layer for layer in analysis["layers"]}
    first = layers["features.6"]["maps"][0]["min"]
    caption = page.locator(single).first.text_content()
    assert caption.startswith("0= ") and "constant" not in caption
    assert float(caption[3:]) == pytest.approx(first, rel=0.05, abs=1e-3)
    label = page.locator(single).first.get_attribute("aria-label")
    assert label.startswith("features.6 channel 0, value ")

    captions = page.evaluate(
        """() => [...document.querySelectorAll('#overview .tile .range')].map(r => ({
          layer: r.closest('.layer').dataset.layer, channel: +r.closest('.tile').dataset.channel,
          text: r.textContent, cut: r.scrollWidth > r.clientWidth + 1,
          outside: r.getBoundingClientRect().right
            > r.closest('.tile').getBoundingClientRect().right
        }))"""
    )
    assert len(captions) > 50
    assert [c for c in captions if c["cut"] or c["outside"]] == []  # nothing cut off
    for c in captions:
        stats = layers[c["layer"]]["maps"][c["channel"]]
        found = re.fullmatch(rf"({NUMBER})…({NUMBER})", c["text"])
        if found:  # a range: both ends whole, to two significant digits
            low, high = (float(found.group(i)) for i in (1, 2))
            assert low == pytest.approx(stats["min"], rel=0.05, abs=1e-3), c
            assert high == pytest.approx(stats["max"], rel=0.05, abs=1e-3), c
    assert any(re.fullmatch(rf"{NUMBER}…{NUMBER}", c["text"]) for c in captions)
    page.screenshot(path="/tmp/shots-a/captions-1280.png", full_page=True)
    assert page.problems == [], page.problems
    page.close()


def test_the_running_sum_has_a_speed_and_an_end(ui_server, ui_browser):
    page = open_watched(ui_browser, ui_server)
    load_sample(page, 0)
    text = select_tile(page, "features.3", 2)  # 150 products
    value = float(re.search(rf"the map holds ({NUMBER})$", text).group(1))
    final = "document.querySelector('#running-sum').textContent.startsWith('all 150 products')"
    page.click("#anim-skip")  # straight to the end
    page.wait_for_function(final, timeout=2000)
    total = page.locator("#running-sum").text_content()
    assert float(total.rsplit("= ", 1)[1]) == pytest.approx(value, abs=2e-3)
    assert page.locator("#kernel td.done").count() == 150
    assert page.locator("#kernel td.current").count() == 0
    assert page.input_value("#anim-speed") == "20"  # 150 products in under 10 s by default
    page.select_option("#anim-speed", "500")
    started = page.evaluate("performance.now()")
    page.click("#anim-play")  # from the start again, at 500 products per second
    page.wait_for_function(
        "document.querySelector('#running-sum').textContent.startsWith('product ')"
    )
    page.wait_for_function(final, timeout=5000)
    assert page.evaluate("performance.now()") - started < 4000
    assert page.locator("#running-sum").text_content() == total
    assert page.problems == [], page.problems
    page.close()


def test_the_report_is_asked_only_of_runs_with_a_history(ui_server, ui_browser):
    page = open_watched(ui_browser, ui_server)
    reports = record(page, "/report")

    def no_history_for_cifar(route):
        response = route.fetch()
        runs = response.json()
        assert {"lenet", "cifar"} <= {run["name"] for run in runs}
        assert all(run["has_history"] is True for run in runs)  # the real flag is there
        for run in runs:
            run["has_history"] = run["name"] != "cifar"  # as the server says of a bare model
        route.fulfill(response=response, body=json.dumps(runs))

    page.route("**/api/runs", no_history_for_cifar)
    page.reload()
    page.wait_for_selector("#report table.confusion")
    assert [u.rsplit("/", 2)[1] for u in reports] == ["lenet"]
    page.select_option("#run", "cifar")
    page.wait_for_selector("#report-note")
    assert "no training history" in page.locator("#report-note").text_content()
    page.wait_for_timeout(500)
    assert [u.rsplit("/", 2)[1] for u in reports] == ["lenet"]  # never asked for cifar
    page.select_option("#run", "lenet")
    page.wait_for_selector("#report table.confusion")
    assert [u.rsplit("/", 2)[1] for u in reports] == ["lenet", "lenet"]
    assert page.problems == [], page.problems
    page.close()


def test_layer_names_with_a_hash_and_new_kinds_are_safe(ui_server, ui_browser):
    """The trace API may name a module called twice ``layer1.0.relu#2`` and add step kinds."""
    page = open_watched(ui_browser, ui_server)
    name = 'features.1#2 "x"'

    def rename(route):
        response = route.fetch()
        answer = response.json()
        layer = next(x for x in answer["layers"] if x["name"] == "features.1")
        layer.update(name=name, kind="add")
        layer.pop("label", None)
        route.fulfill(response=response, json=answer)

    page.route("**/api/runs/lenet/analyze", rename)
    load_sample(page, 0)
    row = page.locator("#overview .layer").filter(has_text="features.1#2")
    row.locator(".tile canvas").first.wait_for()
    assert row.get_attribute("data-layer") == name  # the attribute round-trips
    assert row.get_attribute("data-kind") == "add"
    row.locator(".tile[data-channel='2']").click()
    page.wait_for_selector("#kernel-map .map-title")
    assert page.locator("#kernel-map .map-title").text_content().startswith(name)
    assert row.locator(".tile[data-channel='2']").get_attribute("aria-pressed") == "true"
    page.check("#shared-scale")  # repaints every row, found by its escaped name
    page.click("#back-to-maps")
    assert page.evaluate("document.activeElement.closest('.layer')?.dataset.layer") == name
    assert page.problems == [], page.problems
    page.close()
