"""The explorer's "compare with" (issue 13): two runs with the same input format side by side on
the same pixels, in a real headless Chromium over a real server. A second, tiny LeNet on MNIST
(another seed, a few seconds on a small real subset) is the run compared with; the CIFAR run is
listed but disabled. Fixtures and helpers come from test_explorer_ui.py."""
# ruff: noqa: F811  (the fixtures imported from test_explorer_ui are the tests' parameters)

from __future__ import annotations

import pytest
from test_explorer_ui import load_sample, open_page, ui_browser, ui_server  # noqa: F401  (fixtures are used by name)

from cnnlab.explorer import create_app


@pytest.fixture(scope="module")
def second_lenet(runs_root, data_dir):
    """A second MNIST-format run: LeNet-5 trained briefly with another seed."""
    from cnnlab.runs.start import train_run
    from cnnlab.train import TrainConfig

    config = TrainConfig(
        model="lenet5",
        model_options={"modern": True},
        dataset="mnist",
        train_subset=1000,
        test_subset=200,
        data_dir=str(data_dir),
        progress=False,
        epochs=1,
        batch_size=128,
        lr=3e-3,
        seed=7,
    )
    root = runs_root.parent / "compare-runs"
    root.mkdir(exist_ok=True)
    train_run(config, root, "lenet_b", overwrite=True)
    return root / "lenet_b"


@pytest.fixture(scope="module")
def ui_app(runs_root, data_dir, second_lenet):
    """Overrides test_explorer_ui's app: the two MNIST runs and the CIFAR one."""
    return create_app([runs_root / "lenet", second_lenet, runs_root / "cifar"], str(data_dir))


def test_compare_with_a_second_run_on_the_same_pixels(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server)
    options = page.locator("#compare-run option")
    assert page.locator("label[for='compare-run']").text_content() == "compare with"
    # the CIFAR run (3x32x32) is listed but disabled for an MNIST run, with a reason
    cifar = page.locator("#compare-run option[value='cifar']")
    assert cifar.is_disabled()
    assert "3x32x32" in cifar.get_attribute("title")
    assert not page.locator("#compare-run option[value='lenet_b']").is_disabled()
    assert options.count() == 3  # none, lenet_b, cifar

    load_sample(page, 3)
    assert page.locator("#compare").is_hidden()  # nothing chosen yet
    page.select_option("#compare-run", "lenet_b")
    page.wait_for_selector("#compare[data-ready] .compare-run[data-run='lenet_b'] canvas.map")

    # the second column's top class and probability are what the API says for these pixels
    pixels = page.evaluate("fetch('/api/runs/lenet/sample/3').then(r => r.json())")["pixels"]
    answer = page.evaluate(
        "(p) => fetch('/api/runs/lenet_b/analyze', {method: 'POST',"
        " headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({pixels: p})}).then(r => r.json())",
        pixels,
    )
    best = max(answer["probabilities"], key=lambda p: p["p"])
    top = page.locator("#compare .compare-run[data-run='lenet_b'] li").first
    assert top.get_attribute("data-class") == best["class"]
    assert float(top.get_attribute("data-p")) == pytest.approx(best["p"], abs=1e-6)
    assert top.text_content() == f"{best['class']} {100 * best['p']:.1f}%"
    # both runs' top 3, and each run's first conv maps
    assert page.locator("#compare .compare-run").count() == 2
    assert page.locator("#compare .compare-run[data-run='lenet'] li").count() == 3
    main_top = page.locator("#compare .compare-run[data-run='lenet'] li").first
    assert main_top.get_attribute("data-class") == page.locator("#prediction").get_attribute(
        "data-predicted"
    )
    page.wait_for_selector("#compare .compare-run[data-run='lenet'] canvas.map")

    page.screenshot(path="/tmp/compare.png", full_page=False)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    # a new input is compared again; clearing the input clears the comparison
    load_sample(page, 5)
    page.wait_for_selector("#compare[data-ready] .compare-run[data-run='lenet_b'] li")
    page.click("#clear")
    assert page.locator("#compare").is_hidden()
    assert page.locator("#compare .compare-run").count() == 0

    # switching the main run clears the choice too
    page.select_option("#run", "lenet_b")
    page.wait_for_function("document.querySelector('#run').value === 'lenet_b'")
    assert page.locator("#compare-run").input_value() == ""
    assert page.locator("#compare-run option[value='lenet']").is_enabled()
    assert page.problems == []
    page.close()


def test_compare_fits_a_phone(ui_server, ui_browser):
    page = open_page(ui_browser, ui_server, width=390, height=800)
    load_sample(page, 0)
    page.locator("#compare-run").focus()  # keyboard: a labelled select
    page.select_option("#compare-run", "lenet_b")
    page.wait_for_selector("#compare[data-ready] .compare-run[data-run='lenet_b'] canvas.map")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.problems == []
    page.close()
