"""The rating page in a real browser: Debian's headless Chromium driven by selenium through Debian's
chromium-driver (nothing downloads a browser). Two raters in two browsers at once, instructions and
set-up, training with mouse clicks, ratings with the keyboard, a reload in the middle, a pause, a server killed mid-answer,
then `study export`. Skips where chromium or chromium-driver is not installed (.ci/run installs both)."""

import json
import os
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("flask", reason="the study server needs flask (pip install -e '.[test]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (pip install -e '.[test]')")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from test_study_server import make_study  # noqa: E402

from diqa_bench.cli import main  # noqa: E402
from diqa_bench.study.cli import add_raters  # noqa: E402
from diqa_bench.study.server import create_app  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = Path("/usr/bin/chromedriver")


def browser(tmp_path: Path, name: str):
    if not CHROMIUM.exists() or not DRIVER.exists():
        pytest.skip(f"{CHROMIUM} or {DRIVER} is absent: apt-get install -y chromium chromium-driver to run the browser test")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1100,900",
                 f"--user-data-dir={tmp_path / ('profile-' + name)}"):
        opts.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must never fetch a driver or a browser
    return webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=opts)


@pytest.fixture
def served(tmp_path):
    folder = make_study(tmp_path, levels=[1, 3, 5], training=3, repeats=2)
    tokens = dict(add_raters(folder, ["ann", "ben"]))
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(folder), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    drivers = []
    try:
        yield folder, tokens, f"http://127.0.0.1:{server.server_port}", drivers
    finally:
        for d in drivers:
            d.quit()
        server.shutdown()


def wait(driver, condition, timeout=60):
    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def counter(driver) -> int:
    return int(driver.find_element(By.ID, "count").text.split("/")[0])


def ready(driver) -> bool:
    """An item is shown and its answer buttons are live (enabled once the image has loaded)."""
    return driver.execute_script(
        "const b = [...document.querySelectorAll('#answers button')];"
        "return !document.getElementById('stage').hidden && b.length > 0 && b.every((x) => !x.disabled);")


def answer(driver, value: int, keyboard: bool) -> None:
    wait(driver, ready)
    before = counter(driver)
    if keyboard:
        driver.find_element(By.TAG_NAME, "body").send_keys(str(value))
    else:
        driver.find_element(By.CSS_SELECTOR, f"#answers button[data-answer='{value}']").click()
    wait(driver, lambda d: counter(d) == before + 1)


def declare_setup(driver) -> None:
    wait(driver, lambda d: d.find_element(By.ID, "setup").is_displayed())
    assert "quality" in driver.find_element(By.ID, "instructions").text
    Select(driver.find_element(By.ID, "device")).select_by_visible_text("desktop monitor")
    Select(driver.find_element(By.ID, "lighting")).select_by_visible_text("office lighting")
    dist = driver.find_element(By.ID, "distance")
    dist.clear()
    dist.send_keys("70")
    driver.find_element(By.ID, "save-setup").click()


def test_two_raters_rate_in_real_browsers_and_the_export_has_their_answers(served, tmp_path):
    folder, tokens, base, drivers = served
    ann, ben = browser(tmp_path, "ann"), browser(tmp_path, "ben")
    drivers += [ann, ben]
    ann.get(f"{base}/r/{tokens['ann']}")
    ben.get(f"{base}/r/{tokens['ben']}")
    declare_setup(ann)
    declare_setup(ben)
    # training: three items by mouse, each followed by a note about the anchor just seen
    for _ in range(3):
        answer(ann, 5, keyboard=False)
        wait(ann, lambda d: d.find_element(By.ID, "msg").text.startswith("Training:"))
    answer(ben, 4, keyboard=False)
    # ratings by keyboard, the two raters interleaved
    given = {"ann": [], "ben": [4]}
    for k in range(4):
        answer(ann, 1 + k % 5, keyboard=True)
        given["ann"].append(1 + k % 5)
        answer(ben, 2, keyboard=True)
        given["ben"].append(2)
    # a reload in the middle: the page comes back at the same place
    position = counter(ann)
    ann.refresh()
    wait(ann, ready)
    assert counter(ann) == position == 7
    answer(ann, 3, keyboard=True)
    given["ann"].append(3)
    # pause, then resume later
    ann.find_element(By.ID, "pause").click()
    wait(ann, lambda d: d.find_element(By.ID, "start").is_displayed())
    assert ann.find_element(By.ID, "start-button").text == "Resume"
    ann.find_element(By.ID, "start-button").click()
    answer(ann, 4, keyboard=False)
    given["ann"].append(4)
    # what the database holds is exactly what was clicked and typed, with the browser's screen size
    import sqlite3

    db = sqlite3.connect(folder / "study.sqlite")
    rows = db.execute("SELECT raters.name, answer, phase, repeat, screen_w, viewport_w, ratings.setup, ms FROM ratings "
                      "JOIN raters ON raters.id = rater_id ORDER BY ratings.id").fetchall()
    db.close()
    expected = {"ann": [5, 5, 5] + given["ann"], "ben": given["ben"]}
    for name in ("ann", "ben"):
        mine = [r for r in rows if r[0] == name]
        assert [r[1] for r in mine] == expected[name]
        assert [r[2] for r in mine[:3]] == ["training"] * 3
        assert all(r[4] > 0 and r[5] > 0 and r[7] >= 0 for r in mine)
        setup = json.loads(mine[0][6])
        assert setup["device"] == "desktop monitor" and setup["distance_cm"] == 70 and setup["lighting"] == "office lighting"
    # export: the counted first showings of both raters (no training answers, no repeats)
    assert main(["study", "export", str(folder)]) == 0
    ratings = pd.read_csv(folder / "export" / "ratings.csv")
    for name in ("ann", "ben"):
        counted = sorted(r[1] for r in rows if r[0] == name and r[2] == "rating" and not r[3])
        assert sorted(ratings.loc[ratings["observer"] == name, "rating"]) == counted and counted


def test_screenshot_is_not_blank(served, tmp_path):
    _, tokens, base, drivers = served
    d = browser(tmp_path, "shot")
    drivers.append(d)
    d.get(f"{base}/r/{tokens['ann']}")
    declare_setup(d)
    wait(d, ready)
    png = tmp_path / "page.png"
    d.save_screenshot(str(png))
    from PIL import Image

    with Image.open(png) as img:
        assert img.convert("L").getextrema()[1] - img.convert("L").getextrema()[0] > 50
    if os.environ.get("DIQA_STUDY_SCREENSHOT"):  # how docs/study-rating-page.png is made
        shutil.copy(png, os.environ["DIQA_STUDY_SCREENSHOT"])


def test_an_answer_given_while_the_server_is_down_is_kept_and_stored_after_the_restart(tmp_path):
    from werkzeug.serving import make_server

    folder = make_study(tmp_path, training=2, repeats=0)
    token = dict(add_raters(folder, ["ann"]))["ann"]
    server = make_server("127.0.0.1", 0, create_app(folder), threaded=True)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    d = browser(tmp_path, "ann")
    try:
        d.get(f"http://127.0.0.1:{port}/r/{token}")
        declare_setup(d)
        answer(d, 5, keyboard=False)
        wait(d, ready)
        server.shutdown()  # the server is killed mid-session
        server.server_close()
        d.find_element(By.TAG_NAME, "body").send_keys("1")
        wait(d, lambda d: "retrying" in d.find_element(By.ID, "msg").text)
        # a restarted server on the same folder: the page's kept answer arrives, nothing is lost
        server = make_server("127.0.0.1", port, create_app(folder), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        wait(d, lambda d: counter(d) == 2)
        d.refresh()
        wait(d, ready)
        assert counter(d) == 2
    finally:
        d.quit()
        server.shutdown()
    import sqlite3

    db = sqlite3.connect(folder / "study.sqlite")
    assert db.execute("SELECT position, answer FROM ratings ORDER BY position").fetchall() == [(0, 5.0), (1, 1.0)]
    db.close()


def test_paired_comparison_in_a_real_browser(tmp_path):
    from werkzeug.serving import make_server

    folder = make_study(tmp_path, method="pc", training=2, pairs_per_rater=4)
    token = dict(add_raters(folder, ["ann"]))["ann"]
    server = make_server("127.0.0.1", 0, create_app(folder), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    d = browser(tmp_path, "pc")
    try:
        d.get(f"http://127.0.0.1:{server.server_port}/r/{token}")
        wait(d, lambda d: d.find_element(By.ID, "setup").is_displayed())
        assert "side by side" in d.find_element(By.ID, "instructions").text
        declare_setup(d)
        wait(d, ready)
        assert d.find_element(By.ID, "img-b").is_displayed()  # two images side by side
        answer(d, 0, keyboard=False)  # "left is better" by mouse
        for k in range(5):  # the arrow keys for the rest
            wait(d, ready)
            before = counter(d)
            d.find_element(By.TAG_NAME, "body").send_keys("\ue012" if k % 2 == 0 else "\ue014")  # Keys.LEFT / Keys.RIGHT
            wait(d, lambda d, before=before: counter(d) == before + 1)
        wait(d, lambda d: d.find_element(By.ID, "done").is_displayed())
    finally:
        d.quit()
        server.shutdown()
    assert main(["study", "export", str(folder)]) == 0
    pairs = pd.read_csv(folder / "export" / "pairs.csv")
    assert len(pairs) == 4  # the two training pairs are not exported


def test_the_page_stops_at_the_session_limit_and_resumes_after_the_break(tmp_path):
    from werkzeug.serving import make_server

    folder = make_study(tmp_path, training=2, session_minutes=10 / 60, break_minutes=3 / 60)
    token = dict(add_raters(folder, ["ann"]))["ann"]
    server = make_server("127.0.0.1", 0, create_app(folder), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    d = browser(tmp_path, "limit")
    try:
        d.get(f"http://127.0.0.1:{server.server_port}/r/{token}")
        import time

        declare_setup(d)  # starts the session
        started = time.time()
        answer(d, 5, keyboard=True)
        wait(d, ready)
        time.sleep(max(0.0, started + 10.3 - time.time()))  # past the 10 s session: the next answer is stored, then the page stops
        d.find_element(By.TAG_NAME, "body").send_keys("1")
        wait(d, lambda d: d.find_element(By.ID, "start").is_displayed())
        assert "time limit" in d.find_element(By.ID, "start-text").text
        assert not d.find_element(By.ID, "start-button").is_enabled()  # a break first
        wait(d, lambda d: d.find_element(By.ID, "start-button").is_enabled())
        d.find_element(By.ID, "start-button").click()
        answer(d, 3, keyboard=True)
    finally:
        d.quit()
        server.shutdown()
    import sqlite3

    db = sqlite3.connect(folder / "study.sqlite")
    assert [a for (a,) in db.execute("SELECT answer FROM ratings ORDER BY position")] == [5.0, 1.0, 3.0]
    assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 2
    db.close()
