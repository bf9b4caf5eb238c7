"""The drawing page in a real browser: Debian's headless Chromium, driven by Playwright, against `digitrec serve`.

Skips only when /usr/bin/chromium is missing (`make dev` installs it when run as root with apt-get).
"""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (`make dev` installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(served_model, tmp_path_factory, browser):
    """A real `digitrec serve` subprocess on a free localhost port, with the CLI's default backend."""
    from digitrec.serve.process import running_server

    log = tmp_path_factory.mktemp("server") / "serve.log"
    # A first ONNX use exports and checks the model once (then cached): allow for it.
    with running_server(["--model", served_model], timeout=300, log=log) as srv:
        yield srv.url


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    external: list[str] = []
    pg.on("request", lambda r: None if r.url.startswith((server, "data:", "blob:")) else external.append(r.url))
    pg.goto(server + "/")
    yield pg
    context.close()
    assert not errors, errors
    assert not external, f"the page fetched outside assets: {external}"


def stroke(page, points: list[tuple[float, float]], steps: int = 12) -> None:
    """Drag the mouse through `points`, given as fractions of the drawing canvas."""
    box = page.locator("#pad").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=steps)
    page.mouse.up()


def answer(page) -> str:
    # Selectors, not wait_for_function: the page's CSP (script-src 'self') forbids the eval that one needs.
    page.wait_for_selector('#digits:not([data-state="empty"])', timeout=15_000)
    page.wait_for_selector("body:not(.busy)", state="attached", timeout=15_000)
    return page.locator("#digits").inner_text().strip()


def box_pixels(page, canvas: str) -> int:
    """How many pixels of a canvas are painted (boxes drawn over the input)."""
    return page.evaluate(f"""() => {{
        const c = document.querySelector('{canvas}');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }}""")


def test_drawing_a_one_and_a_seven_reads_them(page, tmp_path):
    page.fill("#pen", "22")
    stroke(page, [(0.5, 0.15), (0.5, 0.85)])  # a "1": one vertical stroke
    assert answer(page) == "1"
    assert page.locator(".chart").count() == 1 and page.locator(".chart .col").count() == 10
    assert page.locator(".chart .col.top span").inner_text() == "1"
    assert box_pixels(page, "#pad-boxes") > 0
    page.screenshot(path=str(tmp_path / "draw-1.png"), full_page=True)

    page.click("#clear")
    assert page.locator("#digits").get_attribute("data-state") == "empty"
    page.uncheck("#auto")  # draw both strokes of the 7, then press Read
    stroke(page, [(0.40, 0.18), (0.60, 0.18)])
    stroke(page, [(0.60, 0.18), (0.47, 0.85)])
    page.click("#read")
    assert answer(page) == "7"
    page.screenshot(path=str(tmp_path / "draw-7.png"), full_page=True)
    print(f"screenshots in {tmp_path}")


def test_undo_removes_the_last_stroke(page):
    page.fill("#pen", "22")
    stroke(page, [(0.5, 0.15), (0.5, 0.85)])
    assert answer(page) == "1"
    page.evaluate("document.querySelector('#digits').dataset.state = 'empty'")
    stroke(page, [(0.75, 0.15), (0.75, 0.85)])
    assert answer(page) == "11"
    page.evaluate("document.querySelector('#digits').dataset.state = 'empty'")
    page.click("#undo")
    assert answer(page) == "1"


def photo_of_a_number(mnist_dir: Path, n: int = 5) -> tuple[bytes, str]:
    """A JPEG that looks photographed: MNIST digits as pencil on uneven, noisy paper, blurred, EXIF-rotated."""
    from digitrec.data.mnist import load_mnist

    test = load_mnist(mnist_dir, fetch=False, log=lambda _m: None)["test"]
    ink = np.concatenate([np.asarray(Image.fromarray(d).resize((112, 112), Image.BILINEAR), np.float32) / 255
                          for d in test.images[:n].numpy()], axis=1)
    ink = np.pad(ink, ((60, 60), (70, 70)))
    h, w = ink.shape
    rng = np.random.default_rng(0)
    light = 0.78 + 0.17 * np.linspace(0, 1, w)[None, :] * np.linspace(1, 0.8, h)[:, None]  # uneven lighting
    paper = np.stack([light * 235, light * 228, light * 212], axis=-1) + rng.normal(0, 5, (h, w, 3))
    pencil = np.array([52, 56, 78], np.float32)
    rgb = paper * (1 - 0.85 * ink[..., None]) + pencil * 0.85 * ink[..., None]
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, as a phone does; upright once the EXIF rotation is applied
    buf = io.BytesIO()
    img.rotate(90, expand=True).save(buf, "JPEG", quality=85, exif=exif)
    return buf.getvalue(), "".join(str(v) for v in test.labels[:n].tolist())


def test_uploading_and_dropping_a_photo_of_a_number(page, mnist_dir, tmp_path):
    data, expected = photo_of_a_number(mnist_dir)
    (tmp_path / "photo.jpg").write_bytes(data)
    page.set_input_files("#file", str(tmp_path / "photo.jpg"))
    assert answer(page) == expected
    assert page.locator(".chart").count() == len(expected)
    page.wait_for_selector("#photo-stage:not([hidden])")
    size = page.evaluate("[document.querySelector('#photo').width, document.querySelector('#photo').height]")
    assert size[0] > size[1]  # shown upright: the EXIF rotation was applied in the browser too
    page.screenshot(path=str(tmp_path / "photo.png"), full_page=True)

    page.click("#clear")
    page.evaluate("""async (b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'dropped.jpg', {type: 'image/jpeg'}));
        document.querySelector('#drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""", base64.b64encode(data).decode())
    assert answer(page) == expected
