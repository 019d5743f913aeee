"""Makes docs/study-rating-page.jpg: the rating page of a study on the bundled skin photos, in
Debian's headless Chromium (selenium + chromium-driver, as tests/test_study_browser.py).

    .venv/bin/python docs/study_screenshot.py
"""

import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_study_browser import answer, declare_setup, ready, wait  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from diqa_bench.study.cli import add_raters  # noqa: E402
from diqa_bench.study.plan import create_study  # noqa: E402
from diqa_bench.study.server import create_app  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp) / "study"
    create_study([str(ROOT / "plugins/diqa_datasets/embedded/skin_photos")], folder, distortions=["defocus_blur", "jpeg"], levels=[2, 4],
                 size=512, log=lambda m: None)
    token = add_raters(folder, ["rater1"])[0][1]
    server = make_server("127.0.0.1", 0, create_app(folder), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1000,720", f"--user-data-dir={tmp}/profile"):
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    try:
        d.get(f"http://127.0.0.1:{server.server_port}/r/{token}")
        declare_setup(d)
        for value in (5, 1, 5, 1, 3, 4):  # through training, into the counted ratings
            answer(d, value, keyboard=True)
        wait(d, ready)
        d.save_screenshot(f"{tmp}/page.png")
    finally:
        d.quit()
        server.shutdown()
    with Image.open(f"{tmp}/page.png") as img:
        img.convert("RGB").save(ROOT / "docs" / "study-rating-page.jpg", quality=90)  # no palette: it would posterise the photo
print("wrote docs/study-rating-page.jpg")
