"""The app: its answers (top-k, GradCAM, refusals, mistakes) and the page itself in a real browser (Debian's
Chromium, headless, driven by Selenium through the system chromedriver)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_bad_image
from test_explain import half_trained, save_test_images  # noqa: F401 (a fixture)

from cifarkit.cli.main import main
from cifarkit.data.dataset import CLASSES
from cifarkit.evaluate import inference

pytest.importorskip("captum")
pytest.importorskip("gradio")

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def clf(half_trained):
    from cifarkit.app.local import example_images
    from cifarkit.app.page import Classifier
    from cifarkit.evaluate.explain import load_test_set

    root, _ = half_trained
    model, ckpt = inference.load_model(root / "run", torch.device("cpu"))
    images, labels = load_test_set(ckpt, root / "data")
    return Classifier(
        model,
        ckpt["classes"],
        ckpt["mean"],
        ckpt["std"],
        examples=example_images(images, labels),
        candidates=lambda: (images, labels),
    )


def test_answers_agree_with_predict_and_show_the_gradcam(clf, half_trained, tmp_path):
    root, _ = half_trained
    paths = save_test_images(root / "data", tmp_path, 4)
    expected = inference.predict_files(root / "run", paths, top_k=4)
    before = {k: v.clone() for k, v in clf.model.state_dict().items()}
    for path, want in zip(paths, expected):
        image, message, scores, picture = clf.answer_file(path, 4, None, 0.5)
        assert message == "" and image.shape == (3, 32, 32)
        assert list(scores) == [t["class"] for t in want["top"]]  # top-k, in order
        assert np.allclose(list(scores.values()), [t["probability"] for t in want["top"]], atol=1e-5)
        assert picture.shape == (256, 256, 3) and picture.dtype == np.uint8
        _, _, scores2, picture2 = clf.answer(image, 2, "layer1", 0.0)
        assert len(scores2) == 2 and np.array_equal(picture2, clf.picture(torch.from_numpy(image), None, 0))
    assert all(torch.equal(before[k], v) for k, v in clf.model.state_dict().items())


def test_a_coarse_layer_gets_a_note_and_an_unknown_one_the_default(clf):
    image = clf.examples[0][0].numpy()
    assert "4x4" in clf.answer(image, 3, "layer3", 0.5)[1]
    _, message, scores, picture = clf.answer(image, 3, "nope", 0.5)
    assert "no layer 'nope'" in message and picture is not None and len(scores) == 3


@pytest.mark.parametrize(
    "content, message",
    [
        (b"just text", "not an image Pillow can read"),
        ("truncated", "corrupt or truncated"),
        ("huge", "too large an image"),
    ],
)
def test_bad_uploads_are_refused_with_a_message(clf, tmp_path, monkeypatch, content, message):

    path = tmp_path / "upload" / "bad.png"
    path.parent.mkdir()
    write_bad_image(path, content, monkeypatch)
    state, text, scores, picture = clf.answer_file(str(path), 3, None, 0.5)
    assert state is None and scores is None and picture is None
    assert text.startswith("**Refused:** bad.png: ") and message in text and str(tmp_path) not in text


def test_the_mistakes_gallery(clf):
    shown = clf.mistakes(7, None, 0.5)
    assert len(shown) == 7 and all(p.shape == (256, 256, 3) for p, _ in shown)
    true, predicted = shown[0][1].split(" → ")
    assert true != predicted.rsplit(" ", 1)[0]
    confidences = [float(caption.rsplit(" ", 1)[1].rstrip("%")) for _, caption in shown]
    assert confidences == sorted(confidences, reverse=True)  # most confident first


# ------------------------------------------------------------------------------------------- in a browser


def need_browser() -> None:
    """Skip on a machine without Chromium (a user's laptop), with the reason; in CI, fail."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401 (only whether it imports)
    except ImportError:
        missing.append("selenium (pip install 'cifarkit[test]')")
    if missing:
        reason = (
            f"no browser to test the app in: {', '.join(missing)} absent (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the app in a browser: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_page(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app exited ({process.returncode}): {process.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.fixture
def app_url(half_trained, tmp_path):
    """`cifarkit app` on the half-trained run, on a free port of 127.0.0.1; (url, seconds from start to page)."""
    root, _ = half_trained
    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cifarkit",
            "app",
            str(root / "run"),
            "--port",
            str(port),
            "--data-dir",
            str(root / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_page(url, process)
        yield url, time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chromium(profile: Path, logging: bool = True):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1800",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if logging:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


# Where a gallery's parts are drawn: its box, its label, each thumbnail with its caption (text, widths, box)
GALLERY_LAYOUT = """
const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right,
                                                                 bottom: r.bottom}; };
const gallery = document.getElementById(arguments[0]);
const wrap = gallery.querySelector('.grid-wrap');
return {box: box(gallery), label: box(gallery.querySelector('[data-testid=block-label]')),
        sideways: wrap.scrollWidth - wrap.clientWidth,
        thumbnails: [...gallery.querySelectorAll('.thumbnail-item')].map(t => {
            const c = t.querySelector('.caption-label');
            return {box: box(t), caption: c && {text: c.textContent, box: box(c), scrollWidth: c.scrollWidth,
                                               clientWidth: c.clientWidth}}; })};
"""


def overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


def check_gallery_layout(driver, elem_id: str, count: int, snug: bool) -> list[str]:
    """The label above the `count` thumbnails, the columns within the box's width, each caption whole (not cut,
    inside its thumbnail), and where `snug`, a box no taller than its thumbnails need; returns the captions."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script(  # drawn: every thumbnail's image loaded
            "const imgs = document.querySelectorAll(`#${arguments[0]} .thumbnail-item img`);"
            "return imgs.length == arguments[1] && [...imgs].every(i => i.complete && i.naturalWidth)",
            elem_id,
            count,
        )
    )
    layout = driver.execute_script(GALLERY_LAYOUT, elem_id)
    thumbnails = layout["thumbnails"]
    assert not any(overlap(layout["label"], t["box"]) for t in thumbnails), (layout["label"], thumbnails[0])
    assert layout["sideways"] <= 0  # the columns fit the box: no sideways scrolling
    for t in thumbnails:
        caption = t["caption"]
        assert caption["scrollWidth"] <= caption["clientWidth"], caption  # no ellipsis
        assert t["box"]["left"] <= caption["box"]["left"] and caption["box"]["right"] <= t["box"]["right"] + 0.5
        assert t["box"]["top"] <= caption["box"]["top"] and caption["box"]["bottom"] <= t["box"]["bottom"] + 0.5
    if snug:
        empty = layout["box"]["bottom"] - max(t["box"]["bottom"] for t in thumbnails)
        assert empty < 30, f"{empty:.0f} empty pixels under the last row of #{elem_id}"
    return [t["caption"]["text"] for t in thumbnails]


def test_the_app_in_a_browser(app_url, half_trained, tmp_path, monkeypatch, capsys):
    need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager downloads nothing
    root, _ = half_trained
    url, start_to_answer = app_url
    image = save_test_images(root / "data", tmp_path / "images", 1, sizes=(96,))[0]
    expected = inference.predict_files(root / "run", [image], top_k=3)[0]["top"][0]["class"]
    driver = chromium(tmp_path / "profile")
    try:
        wait = WebDriverWait(driver, 60)
        started = time.perf_counter()
        driver.get(url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))
        page_seconds = time.perf_counter() - started
        assert check_gallery_layout(driver, "examples", 10, snug=True) == list(CLASSES)
        accuracy = json.loads((root / "run" / "results.json").read_text())["test_accuracy"]
        assert f"from run\nrun\n; test accuracy {accuracy:.2%}." in driver.find_element(By.TAG_NAME, "body").text

        started = time.perf_counter()
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(image)
        cam = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gradcam img"))[0]
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", cam))
        upload_seconds = time.perf_counter() - started
        assert driver.execute_script("return arguments[0].naturalWidth", cam) == 256  # the GradCAM picture
        lines = driver.find_element(By.ID, "prediction").text.splitlines()
        assert lines[0] == "Top classes" and lines[1] == expected  # the heading: the top class, as predict says

        latencies = []  # predict + GradCAM per request: pick test images one after another
        thumbnails = driver.find_elements(By.CSS_SELECTOR, "#examples .thumbnail-item")
        assert len(thumbnails) == 10
        for thumbnail in thumbnails[:5]:
            before = cam.get_attribute("src")
            started = time.perf_counter()
            thumbnail.click()
            wait.until(
                lambda d, before=before: d.find_element(By.CSS_SELECTOR, "#gradcam img").get_attribute("src") != before
            )
            latencies.append(time.perf_counter() - started)
            cam = driver.find_element(By.CSS_SELECTOR, "#gradcam img")

        for button in driver.find_elements(By.CSS_SELECTOR, "#upload button[aria-label='Clear']"):
            button.click()
        bad = tmp_path / "bad.png"
        bad.write_text("not an image")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))[0].send_keys(str(bad))
        wait.until(lambda d: "Refused" in d.find_element(By.ID, "message").text)
        assert "bad.png: not an image Pillow can read" in driver.find_element(By.ID, "message").text

        driver.find_element(By.CSS_SELECTOR, "#mistakes-panel button").click()
        wait.until(lambda d: d.find_element(By.ID, "show-mistakes").is_displayed())
        driver.find_element(By.ID, "show-mistakes").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#mistakes img")) == 10)
        captions = check_gallery_layout(driver, "mistakes", 10, snug=False)  # up to 50 of them: that one scrolls
        for caption in captions:  # "true → predicted 87%"
            true, predicted = caption.rsplit(" ", 1)[0].split(" → ")
            assert true in CLASSES and predicted in CLASSES and true != predicted, caption
        driver.save_screenshot(str(tmp_path / "app.png"))

        hosts = set()
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                request_url = message["params"]["request"]["url"]
                if request_url.startswith(("http:", "https:", "ws:", "wss:")):
                    hosts.add(request_url.split("/")[2])
        assert hosts == {url.split("/")[2]}, hosts  # nothing fetched from the internet
    finally:
        driver.quit()
    assert (tmp_path / "app.png").read_bytes()[:4] == b"\x89PNG"
    with capsys.disabled():
        print(
            f"\n[app timing] cifarkit app start to page answering {start_to_answer:.1f}s; page load in Chromium "
            f"{page_seconds:.1f}s; upload to GradCAM shown {upload_seconds:.2f}s; predict+GradCAM per request "
            f"(browser round trip) median {sorted(latencies)[2]:.2f}s, max {max(latencies):.2f}s"
        )


def test_the_app_says_where_its_page_is_and_nothing_of_share(half_trained, capsys):
    import gradio

    from cifarkit.app.local import serve

    root, _ = half_trained
    port = free_port()
    try:
        serve(root / "run", "127.0.0.1", port, str(root / "data"), block=False)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.status == 200
    finally:
        gradio.close_all()
    out = capsys.readouterr().out
    assert f"The page is at http://127.0.0.1:{port}/ (Ctrl-C stops it)" in out
    assert "share" not in out  # Gradio's advice to set share=True in launch(): nothing a command-line user can do


def test_app_refuses_a_missing_checkpoint(tmp_path, capsys):
    assert main(["app", str(tmp_path / "nope")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_app_on_a_busy_port_says_so_by_flag(half_trained, capsys):
    root, _ = half_trained
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", str(root / "run"), "--port", str(port), "--data-dir", str(root / "data")]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}: cannot serve on 127.0.0.1:{port}" in err and "choose another --port" in err
    assert "Traceback" not in err and "server_port" not in err


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_app_refuses_a_port_out_of_range(port, capsys):
    assert main(["app", "no-such-run", "--port", port]) == 2  # before the checkpoint is even looked for
    assert f"--port {port}: a TCP port is a whole number in 1..65535" in capsys.readouterr().err
