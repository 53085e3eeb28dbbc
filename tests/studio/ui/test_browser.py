"""The user's path in a real browser (Debian's chromium driven by Playwright, headless) on the built-in model:
the built-in examples in Compare, a quick teacher run whose progress moves while the page is open, stop, export
and download. A screenshot of every tab goes to ``test-artifacts/screenshots/`` (``$FLOWOPD_ARTIFACTS``); the
committed ones are under ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("FLOWOPD_ARTIFACTS", Path(__file__).resolve().parents[3] / "test-artifacts"))
OPENED: dict[str, str] = {}  # the teacher run's id, for the ?run= test
TABS = ["Models & teachers", "Distill", "Runs", "Compare", "Export", "Results", "Generate"]
# Small enough to train in seconds on the built-in model, large enough to log a few steps.
QUICK = {"epochs": 4, "batch_size": 8, "group_size": 4, "train_batch_size": 4, "num_steps": 4,
         "optimizer_steps_per_epoch": 1, "checkpoint_every": 1, "eval_every": 100, "sample_every": 1}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from flowopd.models import load_model
    from flowopd_studio.ui import build_app
    from flowopd_studio.ui.launch import LaunchOptions, launch
    from flowopd_studio.ui.state import AppState

    home = tmp_path_factory.mktemp("browser-home")
    app = build_app(AppState(load_model(None), "built-in tiny-base", home=home))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(app, LaunchOptions("127.0.0.1", port, str(home), None, False, [], False), block=False, quiet=True)
    yield app.local_url
    app.close()
    from flowopd_studio.storage.store import Store

    with Store(home) as store:  # leave no worker behind
        for run in store.list_runs("running"):
            store.send_command(run.id, "stop")


@pytest.fixture(scope="module")
def page(app_url):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does), never `playwright install`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.goto(app_url)
        page.get_by_role("tab", name="Compare").wait_for(timeout=60_000)
        yield page
        browser.close()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(500)


def _shot(page, name: str) -> None:
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _field(page, label: str):
    return page.locator(f"label:has-text('{label}')").first.locator("xpath=..").locator("input, textarea").first


def test_compare_shows_the_built_in_examples_at_once(page) -> None:
    from flowopd_studio.services.examples import load_examples

    _tab(page, "Compare")
    grid = page.locator("#compare-grid img")
    grid.wait_for(timeout=120_000)  # the page-load grid: base and every example on one prompt per task
    names = [e.name for e in load_examples()]
    assert len(names) >= 6, "the built-in examples (four teachers, the merge, the student) are not installed"
    models = page.locator("#compare-models").inner_text()
    for name in names:
        assert name in models
    page.locator("#compare-tradeoff").scroll_into_view_if_needed()  # the image loads lazily, below the tables
    page.locator("#compare-tradeoff img").wait_for(timeout=60_000)  # the trade-off chart of the same columns
    page.locator("#compare-retention").get_by_text("keeps").first.wait_for(timeout=60_000)
    _shot(page, "compare")


def test_a_quick_teacher_run_moves_while_the_page_is_open_then_stops(page) -> None:
    _tab(page, "Models & teachers")
    page.locator("#teacher-name input, #teacher-name textarea").first.fill("prefer-browser")
    for accordion in ("batches", "bookkeeping"):  # rollouts is open already
        page.get_by_text(f"grpo settings: {accordion}").click()
    for name, value in QUICK.items():
        box = page.get_by_label(name, exact=True)
        box.fill(str(value))
        box.press("Tab")
    page.locator("#start-teacher").click()
    _tab(page, "Runs")
    row = page.locator("#runs-table [data-testid^=cell-]").filter(has_text="prefer-browser").first
    row.wait_for(timeout=60_000)
    row.click()
    header = page.locator("#runs-header")
    seen = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the page polls the store: its step moves while the worker trains
        match = re.search(r"(\d+)\s*/\s*4\b", header.inner_text())
        if match:
            seen.add(int(match.group(1)))
        if len(seen - {0}) >= 2:
            break
        page.wait_for_timeout(1000)
    assert len(seen - {0}) >= 2, f"the run's step did not move on the page (saw {sorted(seen)})"
    OPENED["run"] = re.search(r"r[0-9a-f]{10}", header.inner_text()).group(0)
    page.get_by_text(re.compile(r"sampled steps")).first.wait_for(timeout=60_000)  # samples came in live
    _shot(page, "runs")
    page.get_by_role("button", name="Stop").click()
    page.locator("#runs-header").get_by_text(re.compile("stopped|finished")).first.wait_for(timeout=120_000)


def test_upload_a_lora_and_an_image_set(page, tmp_path) -> None:
    """A LoRA uploaded as a ComfyUI-style file (a built-in teacher's weights with .alpha keys) is imported; an
    image-set zip is unpacked, checked, and becomes the sft settings' data; a prompt-set zip is unpacked and read."""
    import io
    import zipfile

    import torch
    from safetensors.torch import load_file, save_file

    from flowopd_studio.services.examples import EXAMPLES_DIR

    tensors = load_file(str(EXAMPLES_DIR / "teacher-prefer" / "pytorch_lora_weights.safetensors"))
    comfy = {f"transformer.{k}": v for k, v in tensors.items()}
    comfy.update({f"transformer.{k.rsplit('.lora_A', 1)[0]}.alpha": torch.tensor(8.0)
                  for k in tensors if ".lora_A" in k})
    save_file(comfy, str(tmp_path / "prefer-comfy.safetensors"))
    _tab(page, "Models & teachers")
    page.get_by_label("Teacher name (import)").fill("uploaded-prefer")
    page.locator("#lora-upload input[type=file]").set_input_files(str(tmp_path / "prefer-comfy.safetensors"))
    # the file's row (its name is split into stem and extension spans, which may wrap apart)
    page.locator('#lora-upload [aria-label="prefer-comfy.safetensors"]').first.wait_for(timeout=60_000)
    page.locator("#import-upload").click()
    page.locator("#import-info").get_by_text("Imported").first.wait_for(timeout=60_000)

    from PIL import Image

    archive = tmp_path / "my-set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, caption in enumerate(["a red circle", "a blue square"]):
            png = io.BytesIO()
            Image.new("RGB", (32, 32), (200, 40 * i, 40)).save(png, "PNG")
            zf.writestr(f"my-set/{i}.png", png.getvalue())
            zf.writestr(f"my-set/{i}.txt", caption)
    page.get_by_text("An SFT teacher from your own images").click()
    page.locator("#set-upload input[type=file]").set_input_files(str(archive))
    page.locator('#set-upload [aria-label="my-set.zip"]').first.wait_for(timeout=60_000)
    page.locator("#set-unpack").click()
    page.locator("#set-info").get_by_text("Unpacked").first.wait_for(timeout=60_000)
    page.get_by_label("Algorithm").click()  # the sft settings (hidden under another algorithm) show the folder
    page.get_by_role("option", name="sft", exact=True).click()
    box = page.locator("#sft-data textarea, #sft-data input").first
    box.wait_for(timeout=30_000)
    data = box.input_value()
    assert data.endswith("my-set") and "uploads" in data

    prompts = tmp_path / "ocr.zip"  # a prompt set in Flow-GRPO's layout for the text task
    with zipfile.ZipFile(prompts, "w") as zf:
        zf.writestr("train.txt", 'a sign that says "hello"\n')
        zf.writestr("test.txt", 'a mug printed with "tea"\n')
    page.get_by_text("Your own prompts for a task").filter(visible=True).first.click()
    page.locator("#teacher-prompts-upload input[type=file]").set_input_files(str(prompts))
    page.locator('#teacher-prompts-upload [aria-label="ocr.zip"]').first.wait_for(timeout=60_000)
    page.locator("#teacher-prompts-unpack").click()
    page.locator("#teacher-prompts-info").get_by_text("1 train and 1 test prompts").first.wait_for(timeout=60_000)


def test_a_run_link_opens_the_runs_tab_on_that_run(page, app_url) -> None:
    run_id = OPENED.get("run")
    assert run_id, "the teacher-run test did not run first"
    page.goto(f"{app_url}?run={run_id}")
    page.get_by_role("tab", name="Runs", selected=True).wait_for(timeout=60_000)
    page.locator("#runs-header").get_by_text(run_id).first.wait_for(timeout=60_000)
    page.goto(f"{app_url}?run=../../etc")
    page.get_by_text("refused").first.wait_for(timeout=60_000)


def test_export_and_download_a_built_in_example(page, tmp_path) -> None:
    _tab(page, "Export")
    page.locator("#export-button").click()
    page.locator("#export-status").get_by_text(re.compile("ready|verified", re.I)).wait_for(timeout=120_000)
    with page.expect_download(timeout=60_000) as download:
        page.locator("#export-download").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        assert any(n.endswith("README.md") for n in archive.namelist())
    _shot(page, "export")


def test_screenshot_of_every_tab(page) -> None:
    assert "Runs" not in page.locator("footer").inner_text()  # Gradio's own request history is off
    for name in TABS:
        _tab(page, name)
        page.wait_for_timeout(1500)
        _shot(page, name.split()[0].lower())
    assert len(list((ARTIFACTS / "screenshots").glob("*.png"))) >= len(TABS)
