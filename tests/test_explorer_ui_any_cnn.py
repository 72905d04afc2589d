"""The explorer page on any CNN (issue 23's defects 3, 6, 7, 8 and 13), in Chromium: a
residual network's adds and the steps after them are traced; the 8x8 digits' receptive field
goes through LeNet's bilinear fit; flatten, linear and softmax rows show values (softmax by
probability); a padded max pool's border cells are named padding; a one-logit binary head has a
gradient view for both classes."""
# ruff: noqa: F811  (the fixtures imported from test_explorer_ui are the tests' parameters)

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_explorer_ui import load_sample, open_page, select_tile, serving, ui_browser  # noqa: F401

from cnnlab.explorer import create_app


@pytest.fixture(scope="module")
def any_runs(runs_root, data_dir, tmp_path_factory):
    """The residual CIFAR run, LeNet-5 on the 8x8 digits and a binary (one-logit) LeNet-5."""
    from cnnlab.runs.start import train_run
    from cnnlab.train import TrainConfig

    root = tmp_path_factory.mktemp("any")
    common = dict(data_dir=str(data_dir), progress=False, epochs=1, test_subset=100)
    train_run(TrainConfig(model="lenet5", dataset="digits", **common), root, "digits")
    binary = TrainConfig(
        model="lenet5",
        model_options={"binary": True},
        dataset="mnist",
        classes=["0", "1"],
        train_subset=400,
        **common,
    )
    train_run(binary, root, "binary")
    return [runs_root / "cifar", root / "digits", root / "binary"]


@pytest.fixture(scope="module")
def any_server(any_runs, data_dir):
    app = create_app([*any_runs, "resnet18"], str(data_dir))
    with serving(app) as url:
        yield url, TestClient(app)


def page_on(browser, server, run, width=1280, height=800):
    page = open_page(browser, server[0], width, height, run="cifar")
    if run != "cifar":
        page.select_option("#run", run)
        page.wait_for_function(f"document.querySelector('#run').value === '{run}'")
        page.wait_for_selector("#summary tr:nth-child(3)")
    return page


def explanation(page) -> str:
    return page.locator("#kernel").inner_text()


def test_defect_3_a_residual_networks_adds_and_what_follows_are_traced(ui_browser, any_server):
    page = page_on(ui_browser, any_server, "cifar")
    load_sample(page, 0)
    select_tile(page, "features.2.add", 3)
    text = explanation(page)
    assert "the residual add sums" in text and "features.1.1" in text
    assert "+" in page.locator("#kernel-sum").text_content()
    select_tile(page, "features.3", 0)  # the pool after the add reads the sum
    assert "window on features.2.add" in page.locator("#trace-views").inner_text()
    assert not page.problems, page.problems


def test_defect_6_the_digits_receptive_field_follows_the_bilinear_fit(ui_browser, any_server):
    page = page_on(ui_browser, any_server, "digits")
    load_sample(page, 0)
    select_tile(page, "features.0", 0)
    caption = page.locator("#trace-views").inner_text()
    assert "the whole input image" not in caption
    assert "receptive field on the input: rows" in caption
    size = caption.split("pixels)")[0].rsplit("(", 1)[1]
    rows, cols = (int(v) for v in size.split("×"))
    assert rows <= 3 and cols <= 3  # a 5x5 window on the 4x enlarged digit: about 2x2 pixels
    select_tile(page, "fit", 0)
    assert "resized bilinearly" in explanation(page)
    assert not page.problems, page.problems


def test_defect_7_vectors_show_their_values_and_softmax_its_prediction_first(
    ui_browser, any_server
):
    page = page_on(ui_browser, any_server, "cifar")
    load_sample(page, 1)
    row = "#overview .layer[data-layer='softmax'] .tile"
    page.wait_for_selector(row)
    first = page.locator(row).first
    predicted = page.locator("#prediction").get_attribute("data-predicted")  # the class name
    assert first.locator(".value-label").inner_text().split()[1] == predicted
    labels = page.locator(f"{row} .value-label").all_text_contents()
    shares = [float(label.split()[-1].rstrip("%")) for label in labels]
    assert shares == sorted(shares, reverse=True) and "%" in labels[0]
    linear = page.locator("#overview .layer[data-kind='linear'] .tile .value-label")
    assert linear.count() >= 10 and all(" = " in t for t in linear.all_text_contents())
    assert page.locator("#overview .layer[data-kind='linear'] .tile .swatch").count() >= 10
    assert not page.problems, page.problems


def test_defect_8_a_padded_max_pool_names_its_border_cells(ui_browser, any_server, data_dir):
    page = page_on(ui_browser, any_server, "resnet18")
    page.set_input_files("#upload", str(data_dir / "photos" / "chelsea.png"))
    page.wait_for_selector("#overview .layer[data-layer='maxpool'] .tile canvas", timeout=60_000)
    select_tile(page, "maxpool", 0)
    page.locator("#kernel-map .mapbox img").click(position={"x": 1, "y": 1})  # the corner
    page.wait_for_function(  # the panel is empty while the new pixel's answer loads
        "(() => { const s = document.querySelector('#kernel-sum');"
        " return s && s.textContent.includes('(row 0, column 0)'); })()"
    )
    text = explanation(page)
    assert "padding, -inf, which never wins" in text and "null" not in text
    assert page.locator("#kernel td.padded").count() == 5  # a corner: 5 of 9 cells padding
    assert not page.problems, page.problems


def test_defect_13_a_binary_head_has_a_gradient_for_each_class(ui_browser, any_server):
    page = page_on(ui_browser, any_server, "binary")
    load_sample(page, 0)
    for target in ("0", "1"):
        page.select_option("#cam-class", target)
        select_tile(page, "features.0", 1)
        page.get_by_role("button", name="gradient: from the loss back to this kernel").click()
        page.wait_for_function(
            "(() => { const g = document.querySelector('#gradient');"
            " return g && g.textContent.startsWith('loss'); })()"
        )
        text = page.locator("#gradient").inner_text()
        loss = float(text.split("loss ")[1].split()[0])
        assert loss > 0 and "dL/dW" in text, text
    assert not page.problems, page.problems


def test_a_photo_keeps_its_shape_unless_squashed_and_alpha_lands_on_white(
    ui_browser, any_server, data_dir, tmp_path
):
    from PIL import Image

    page = page_on(ui_browser, any_server, "cifar")
    photo = str(data_dir / "photos" / "chelsea.png")  # 451x300
    page.set_input_files("#upload", photo)
    page.wait_for_function("document.querySelector('#input-note').textContent.includes('centre')")
    page.check("#squash")
    page.set_input_files("#upload", photo)
    page.wait_for_function("document.querySelector('#input-note').textContent.includes('squash')")
    page.uncheck("#squash")
    clear = tmp_path / "red-on-clear.png"
    square = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    square.paste((255, 0, 0, 255), (8, 8, 24, 24))
    square.save(clear)
    page.set_input_files("#upload", str(clear))
    page.wait_for_function("document.querySelector('#input-note').textContent.includes('white')")
    client = any_server[1]  # the same upload through the API: the corner is white, not red
    with open(clear, "rb") as f:
        answer = client.post("/api/runs/cifar/upload", files={"file": ("c.png", f, "image/png")})
    corner = [channel[0][0] for channel in answer.json()["pixels"]]
    assert corner == [255, 255, 255]
    assert not page.problems, page.problems
