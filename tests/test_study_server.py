"""`study serve` at the HTTP level (Flask's test client, and a real threaded server for several
raters at once): each rating stored the moment it is given, one rater sealed off from another,
bad input answered with a reason and never a lost rating."""

import json
import sqlite3
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("flask", reason="the study server needs flask (pip install -e '.[test]')")

from diqa_bench.study.cli import add_raters  # noqa: E402
from diqa_bench.study.plan import create_study  # noqa: E402
from diqa_bench.study.server import create_app  # noqa: E402
from diqa_bench.study.store import Store  # noqa: E402

SETUP = {"device": "laptop", "lighting": "dim room", "distance_cm": 55, "corrected_vision": True}
SCREEN = {"w": 1920, "h": 1080, "vw": 1200, "vh": 800, "dpr": 2}


def make_study(root, method="acr", **options):
    photos = root / "photos"
    photos.mkdir(parents=True)
    for i in range(3):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (72, 90, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    opts = {"distortions": ["jpeg"], "levels": [2, 5], "size": 64, "repeats": 2, "training": 3} | options
    folder = root / "study"
    create_study([str(photos)], folder, method=method, log=lambda m: None, **opts)
    return folder


@pytest.fixture
def study(tmp_path):
    folder = make_study(tmp_path)
    tokens = dict(add_raters(folder, ["ann", "ben"]))
    return folder, tokens


def start(client, token):
    r = client.post(f"/api/{token}/setup", json=SETUP)
    assert r.status_code == 200, r.json
    r = client.post(f"/api/{token}/session", json={})
    assert r.status_code == 200
    return r.json


def rate(client, token, item, answer=3, **extra):
    body = {"position": item["position"], "stimulus": item["stimulus"], "answer": answer, "ms": 900, "screen": SCREEN} | extra
    if "stimulus_b" in item:
        body.setdefault("stimulus_b", item["stimulus_b"])
    return client.post(f"/api/{token}/rate", json=body)


def stored(folder):
    db = sqlite3.connect(folder / "study.sqlite")
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT ratings.*, raters.name FROM ratings JOIN raters ON raters.id = rater_id ORDER BY ratings.id").fetchall()
    db.close()
    return rows


def test_a_rater_goes_through_instructions_training_and_every_rating(study):
    folder, tokens = study
    client = create_app(folder).test_client()
    st = client.get(f"/api/{tokens['ann']}/state").json
    assert st["setup"] is None and "item" not in st  # instructions and the set-up come first
    first = json.loads((folder / "study.json").read_text())["stimuli"][0]["id"]
    r = client.post(f"/api/{tokens['ann']}/rate", json={"position": 0, "stimulus": first, "answer": 3})
    assert r.status_code == 409 and "set-up first" in r.json["error"]
    assert client.post(f"/api/{tokens['ann']}/setup", json=SETUP | {"distance_cm": 3}).status_code == 400
    assert client.post(f"/api/{tokens['ann']}/setup", json=SETUP | {"device": "cinema"}).status_code == 400
    st = start(client, tokens["ann"])
    protocol = json.loads((folder / "study.json").read_text())
    total = 3 + len(protocol["stimuli"]) + 2
    assert st["total"] == total and st["training_total"] == 3 and st["item"]["phase"] == "training"
    answers = []
    while not st["done"]:
        answer = 1 + st["position"] % 5
        r = rate(client, tokens["ann"], st["item"], answer)
        assert r.status_code == 200 and r.json["stored"] is True
        if st["item"]["phase"] == "training":
            assert r.json["feedback"].startswith("Training:")
        answers.append((st["item"]["stimulus"], answer))
        # stored the moment it is given, before the next item is asked for
        row = stored(folder)[-1]
        assert (row["stimulus"], row["answer"], row["position"]) == (st["item"]["stimulus"], answer, st["position"])
        st = r.json
    rows = stored(folder)
    assert [(r["stimulus"], r["answer"]) for r in rows] == answers and len(rows) == total
    assert sum(r["repeat"] for r in rows) == 2 and {r["phase"] for r in rows[:3]} == {"training"}
    row = rows[-1]
    assert (row["ms"], row["screen_w"], row["screen_h"], row["viewport_w"], row["dpr"]) == (900, 1920, 1080, 1200, 2)
    assert json.loads(row["setup"]) == SETUP and row["name"] == "ann" and row["session_id"] is not None
    assert "item" not in st and rate(client, tokens["ann"], {"position": total, "stimulus": "s0001"}).status_code == 400


def test_tokens_seal_raters_off_from_each_other(study):
    folder, tokens = study
    client = create_app(folder).test_client()
    ann = start(client, tokens["ann"])
    ben = start(client, tokens["ben"])
    assert ann["rater"] == "ann" and ben["rater"] == "ben"
    assert rate(client, tokens["ann"], ann["item"]).status_code == 200
    # ben's state knows nothing of ann's rating: his position is still 0
    assert client.get(f"/api/{tokens['ben']}/state").json["position"] == 0
    tampered = tokens["ann"][:-1] + ("A" if tokens["ann"][-1] != "A" else "B")
    for bad in (tampered, "not-a-token-at-all", "x" * 300):
        for r in (client.get(f"/api/{bad}/state"), client.get(f"/r/{bad}"), client.get(f"/img/{bad}/s0001"),
                  client.post(f"/api/{bad}/rate", json={"position": 1, "stimulus": "s0001", "answer": 3})):
            assert r.status_code in (403, 404), r.status_code
            if r.status_code == 403:
                assert "unknown rater token" in r.json["error"]
    assert len(stored(folder)) == 1
    db = sqlite3.connect(folder / "study.sqlite")
    hashes = [h for (h,) in db.execute("SELECT token_hash FROM raters")]
    assert tokens["ann"] not in hashes and len(hashes[0]) == 64  # the file holds hashes, not the links


@pytest.mark.parametrize("answer", [0, 6, 2.5, "3", True, None, float("nan")])
def test_an_answer_outside_the_scale_is_refused_with_a_reason(study, answer):
    folder, tokens = study
    client = create_app(folder).test_client()
    st = start(client, tokens["ann"])
    body = {"position": 0, "stimulus": st["item"]["stimulus"], "answer": answer}
    r = client.post(f"/api/{tokens['ann']}/rate", data=json.dumps(body, allow_nan=True), content_type="application/json")
    assert r.status_code == 400 and "answer" in r.json["error"]
    assert stored(folder) == []


def test_bad_requests_get_a_reason_and_lose_nothing(study):
    folder, tokens = study
    client = create_app(folder).test_client()
    tok = tokens["ann"]
    st = start(client, tok)
    item = st["item"]
    assert rate(client, tok, item, 4).status_code == 200
    nxt = client.get(f"/api/{tok}/state").json["item"]
    cases = [
        (rate(client, tok, nxt | {"stimulus": "s9999"}), 404, "not in this study"),
        (rate(client, tok, nxt | {"stimulus": "../study.json"}), 404, "not in this study"),
        (rate(client, tok, nxt | {"position": 5}), 409, "ahead of your next position"),
        (rate(client, tok, nxt | {"stimulus": item["stimulus"] if item["stimulus"] != nxt["stimulus"] else "s0002"}), 409, "not the one at position"),
        (rate(client, tok, item, 2), 409, "already holds a different answer"),
        (rate(client, tok, nxt | {"position": -1}), 400, "out of range"),
        (client.post(f"/api/{tok}/rate", data="answer=3"), 400, "JSON object"),
        (client.post(f"/api/{tok}/rate", json=[1, 2]), 400, "JSON object"),
        (client.post(f"/api/{tok}/rate", data="x" * 20000, content_type="application/json"), 413, ""),
    ]
    for r, status, reason in cases:
        assert r.status_code == status, (r.status_code, r.json)
        assert reason in r.json["error"]
    # the same rating sent twice (a reply lost on the way) is stored once
    r = rate(client, tok, item, 4)
    assert r.status_code == 200 and r.json["duplicate"] is True
    assert [(x["position"], x["answer"]) for x in stored(folder)] == [(0, 4.0)]


def test_images_come_only_from_the_study_folder(study):
    folder, tokens = study
    client = create_app(folder).test_client()
    protocol = json.loads((folder / "study.json").read_text())
    s = protocol["stimuli"][0]
    r = client.get(f"/img/{tokens['ann']}/{s['id']}")
    assert r.status_code == 200 and r.data == (folder / s["path"]).read_bytes()
    for sid in ("s9999", "..%2Fstudy.json", "study.sqlite"):
        assert client.get(f"/img/{tokens['ann']}/{sid}").status_code == 404
    (folder / s["path"]).unlink()
    r = client.get(f"/img/{tokens['ann']}/{s['id']}")
    assert r.status_code == 404 and "missing" in r.json["error"]


def test_a_restarted_server_resumes_where_the_rater_stopped(study):
    folder, tokens = study
    client = create_app(folder).test_client()
    st = start(client, tokens["ann"])
    for _ in range(4):
        st = rate(client, tokens["ann"], st["item"]).json
    # a new app on the same folder: what a killed and restarted `study serve` sees
    client2 = create_app(folder).test_client()
    again = client2.get(f"/api/{tokens['ann']}/state").json
    assert again["position"] == 4 and again["item"] == st["item"]
    assert len(stored(folder)) == 4


def test_pause_and_resume(study):
    folder, tokens = study
    client = create_app(folder).test_client()
    st = start(client, tokens["ann"])
    st = rate(client, tokens["ann"], st["item"]).json
    paused = client.post(f"/api/{tokens['ann']}/pause", json={}).json
    assert "item" not in paused and paused["session"]["status"] == "paused"
    resumed = client.post(f"/api/{tokens['ann']}/session", json={}).json
    assert resumed["item"] == st["item"] and resumed["session"]["status"] == "running"


def test_the_session_limit_stops_the_rater_but_keeps_the_answer_given(tmp_path):
    folder = make_study(tmp_path, session_minutes=1.5 / 60, break_minutes=10)
    tok = dict(add_raters(folder, ["ann"]))["ann"]
    client = create_app(folder).test_client()
    st = start(client, tok)
    assert st["session"]["status"] == "running" and st["session"]["limit_s"] == pytest.approx(1.5)
    time.sleep(1.6)
    r = rate(client, tok, st["item"], 5)  # answered just after the limit: stored all the same
    assert r.status_code == 200 and r.json["stored"] is True and "item" not in r.json
    assert r.json["session"]["status"] == "limit" and r.json["session"]["break_left_s"] > 500
    r = client.post(f"/api/{tok}/session", json={})
    assert r.status_code == 409 and "take a break" in r.json["error"]
    assert len(stored(folder)) == 1


def test_a_full_disk_is_an_error_with_a_reason_and_the_resend_is_stored(study, monkeypatch):
    folder, tokens = study
    client = create_app(folder).test_client()
    st = start(client, tokens["ann"])
    real = Store.add_rating

    def full(self, **row):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "add_rating", full)
    r = rate(client, tokens["ann"], st["item"], 2)
    assert r.status_code == 507 and "disk is full" in r.json["error"] and "sent again" in r.json["error"]
    monkeypatch.setattr(Store, "add_rating", real)
    assert rate(client, tokens["ann"], st["item"], 2).status_code == 200  # what the page does next
    assert [x["answer"] for x in stored(folder)] == [2.0]


def test_several_raters_at_once_on_a_real_server(tmp_path):
    from werkzeug.serving import make_server

    folder = make_study(tmp_path)
    tokens = dict(add_raters(folder, [f"r{i}" for i in range(4)]))
    server = make_server("127.0.0.1", 0, create_app(folder), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"

    def post(path, body):
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    errors = []

    def rater(tok):
        try:
            post(f"/api/{tok}/setup", SETUP)
            st = post(f"/api/{tok}/session", {})
            while not st["done"]:
                it = st["item"]
                st = post(f"/api/{tok}/rate", {"position": it["position"], "stimulus": it["stimulus"], "answer": 3})
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))

    try:
        threads = [threading.Thread(target=rater, args=(t,)) for t in tokens.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        server.shutdown()
    assert errors == []
    rows = stored(folder)
    per = {name: sum(1 for r in rows if r["name"] == name) for name in tokens}
    protocol = json.loads((folder / "study.json").read_text())
    assert set(per.values()) == {3 + len(protocol["stimuli"]) + 2}


def test_paired_comparison_pairs_are_stable_and_checked(tmp_path):
    folder = make_study(tmp_path, method="pc", pairs_per_rater=6, training=2)
    tok = dict(add_raters(folder, ["ann"]))["ann"]
    client = create_app(folder).test_client()
    st = start(client, tok)
    assert st["total"] == 2 + 6 and st["item"]["phase"] == "training"
    seen = []
    while not st["done"]:
        it = st["item"]
        assert it["stimulus"] != it["stimulus_b"]
        assert client.get(f"/api/{tok}/state").json["item"] == it  # a reload shows the same pair
        assert rate(client, tok, it, 2).status_code == 400
        other = "s0001" if it["stimulus_b"] != "s0001" else "s0002"
        assert rate(client, tok, it | {"stimulus_b": other}, 0).status_code == 409
        r = rate(client, tok, it, it["position"] % 2)
        assert r.status_code == 200
        seen.append((it["stimulus"], it["stimulus_b"]))
        st = r.json
    rows = stored(folder)
    assert [(x["stimulus"], x["stimulus_b"]) for x in rows] == seen and [x["phase"] for x in rows[:2]] == ["training"] * 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(folder, port):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "diqa_bench.cli", "study", "serve", str(folder), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read()) from None
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("study serve did not start")


def test_killing_study_serve_loses_no_rating_and_the_rater_resumes(tmp_path):
    import signal

    folder = make_study(tmp_path)
    tok = dict(add_raters(folder, ["ann"]))["ann"]
    port = _free_port()
    base = f"http://127.0.0.1:{port}/api/{tok}"

    def post(path, body):
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    proc = _serve(folder, port)
    try:
        post("/setup", SETUP)
        st = post("/session", {})
        for _ in range(5):
            it = st["item"]
            st = post("/rate", {"position": it["position"], "stimulus": it["stimulus"], "answer": 4})
        # a second server on the same port is one line and exit 2, not a traceback
        import subprocess
        import sys

        clash = subprocess.run([sys.executable, "-m", "diqa_bench.cli", "study", "serve", str(folder), "--port", str(port)],
                               capture_output=True, text=True, timeout=60)
        assert clash.returncode == 2 and "cannot serve on 127.0.0.1" in clash.stderr and "Traceback" not in clash.stderr
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: no chance to clean up
        proc.wait(30)
    proc = _serve(folder, port)
    try:
        with urllib.request.urlopen(base + "/state", timeout=30) as resp:
            again = json.loads(resp.read())
        assert again["position"] == 5 and again["item"] == st["item"]
    finally:
        proc.terminate()
        proc.wait(30)
    assert [r["answer"] for r in stored(folder)] == [4.0] * 5
