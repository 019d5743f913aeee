"""``study serve``: the rating page and its JSON API (Flask).

Routes (``TOKEN`` is the rater's personal token; every route checks it, and a rater reaches only
their own plan and ratings: no route lists another rater's data):

- ``GET /r/TOKEN``: the page (instructions, viewing set-up, training, rating, progress, pause);
- ``GET /api/TOKEN/state``: where the rater stands and what to show next;
- ``POST /api/TOKEN/setup``: the declared viewing set-up;
- ``POST /api/TOKEN/session`` and ``/pause``: start or resume a session, pause it;
- ``POST /api/TOKEN/rate``: one answer, stored before the reply;
- ``GET /img/TOKEN/ID``: a stimulus image, looked up by id in ``study.json`` (never a path from the
  request), served from the study folder only.

Errors are JSON ``{"error": reason}`` with a 4xx/5xx status; a rating that could not be stored
(a full disk) is a 507 and the page keeps it and sends it again.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, abort, g, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from diqa_bench.errors import UserError

from .plan import load_protocol
from .store import Store
from .scaling import choose_pair

SETUP_FIELDS = {
    "device": ("laptop", "desktop monitor", "tablet", "phone", "other"),
    "lighting": ("dark room", "dim room", "office lighting", "daylight"),
}
MAX_BODY = 16 * 1024


def create_app(folder: Path) -> Flask:
    folder = Path(folder).resolve()
    protocol = load_protocol(folder)
    Store(folder).close()  # the tables exist before the first request
    stimuli = {s["id"]: s for s in protocol["stimuli"]}
    index = {sid: k for k, sid in enumerate(stimuli)}
    method = protocol["method"]
    limit_s = float(protocol.get("session_minutes") or 0) * 60.0
    break_s = float(protocol.get("break_minutes") or 0) * 60.0

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["STUDY_FOLDER"] = folder

    def store() -> Store:
        if "store" not in g:
            g.store = Store(folder, create=False)
        return g.store

    @app.teardown_appcontext
    def _close(_exc):
        s = g.pop("store", None)
        if s is not None:
            s.close()

    def fail(status: int, reason: str):
        abort(Response(json.dumps({"error": reason}), status=status, mimetype="application/json"))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.response is not None:
            return exc.response
        return jsonify(error=f"{exc.name}: {exc.description}"), exc.code

    @app.errorhandler(sqlite3.OperationalError)
    def _db_error(exc):  # a full disk or a locked file: nothing was stored, and the page will resend
        return jsonify(error=f"not stored ({exc}); your answer is kept in this page and sent again"), 507

    @app.after_request
    def _headers(resp):
        resp.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
        resp.headers["X-Content-Type-Options"] = "nosniff"
        if request.path.startswith("/api/") or request.path.startswith("/r/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    def rater(token: str) -> sqlite3.Row:
        row = store().rater_by_token(token) if 8 <= len(token) <= 128 else None
        if row is None:
            fail(403, "unknown rater token: the link is altered or not from this study; ask the study organiser for your link")
        return row

    # -- plan ------------------------------------------------------------------------------------
    def plan_of(r: sqlite3.Row) -> list[dict[str, Any]]:
        return json.loads(r["plan"])

    def total_of(r: sqlite3.Row) -> int:
        if method == "acr":
            return len(plan_of(r))
        return len(plan_of(r)) + int(protocol["pairs_per_rater"])

    def pc_item(r: sqlite3.Row, position: int) -> sqlite3.Row:
        st = store()
        got = st.assignment(r["id"], position)
        if got is not None:
            return got
        training = plan_of(r)
        if position < len(training):
            left, right = training[position]["pair"]
            return st.assign(r["id"], position, "training", left, right)
        ids = list(stimuli)
        wins = np.zeros((len(ids), len(ids)))
        for row in st.db.execute("SELECT stimulus, stimulus_b, answer FROM ratings WHERE phase = 'rating' AND stimulus_b IS NOT NULL"):
            a, b = index.get(row["stimulus"]), index.get(row["stimulus_b"])
            if a is not None and b is not None:
                wins[(b, a) if row["answer"] >= 0.5 else (a, b)] += 1

        rng = np.random.default_rng([int(protocol["seed"]), 3, int(r["id"]), position])
        i, j = choose_pair(wins, rng)
        return st.assign(r["id"], position, "rating", ids[i], ids[j])

    def item(r: sqlite3.Row, position: int) -> dict[str, Any] | None:
        if position >= total_of(r):
            return None
        token = request.view_args["token"]
        if method == "acr":
            e = plan_of(r)[position]
            return {"position": position, "phase": e["phase"], "stimulus": e["stimulus"],
                    "url": f"/img/{token}/{e['stimulus']}"}
        a = pc_item(r, position)
        return {"position": position, "phase": a["phase"], "stimulus": a["stimulus"], "stimulus_b": a["stimulus_b"],
                "url": f"/img/{token}/{a['stimulus']}", "url_b": f"/img/{token}/{a['stimulus_b']}"}

    def session_state(r: sqlite3.Row) -> dict[str, Any]:
        st = store()
        now = time.time()
        sess = st.open_session(r["id"])
        if sess is not None and limit_s and now - sess["started"] >= limit_s:
            st.end_session(sess["id"], "limit", sess["started"] + limit_s)
            sess = None
        if sess is not None:
            return {"status": "running", "elapsed_s": now - sess["started"], "limit_s": limit_s or None}
        last = st.last_session(r["id"])
        wait = 0.0
        if last is not None and last["reason"] == "limit":
            wait = max(0.0, last["ended"] + break_s - now)
        return {"status": "limit" if last is not None and last["reason"] == "limit" else ("paused" if last is not None else "new"),
                "break_left_s": wait, "limit_s": limit_s or None}

    def state(r: sqlite3.Row, **extra: Any) -> dict[str, Any]:
        st = store()
        position = st.next_position(r["id"])
        plan_total = total_of(r)
        n_training = len(plan_of(r)) if method == "pc" else sum(1 for e in plan_of(r) if e["phase"] == "training")
        out = {
            "rater": r["name"],
            "method": method,
            "scale": protocol.get("scale"),
            "labels": protocol.get("labels"),
            "setup": json.loads(r["setup"]) if r["setup"] else None,
            "setup_choices": SETUP_FIELDS,
            "position": position,
            "total": plan_total,
            "training_total": n_training,
            "done": position >= plan_total,
            "session": session_state(r),
            **extra,
        }
        if out["setup"] is not None and not out["done"] and out["session"]["status"] == "running":
            out["item"] = item(r, position)
        return out

    # -- routes ----------------------------------------------------------------------------------
    @app.get("/")
    def home():
        return Response("diqa-bench study: open the personal link you were given (/r/...)\n", mimetype="text/plain")

    @app.get("/r/<token>")
    def page(token: str):
        rater(token)
        return Response(PAGE.replace("__METHOD__", method), mimetype="text/html")

    @app.get("/api/<token>/state")
    def get_state(token: str):
        return jsonify(state(rater(token)))

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            fail(400, "the request body must be a JSON object")
        return data

    @app.post("/api/<token>/setup")
    def post_setup(token: str):
        r = rater(token)
        data = body()
        setup: dict[str, Any] = {}
        for key, allowed in SETUP_FIELDS.items():
            if data.get(key) not in allowed:
                fail(400, f"setup {key!r} must be one of: {', '.join(allowed)}")
            setup[key] = data[key]
        try:
            distance = float(data.get("distance_cm"))
        except (TypeError, ValueError):
            fail(400, "setup 'distance_cm' must be a number of centimetres")
        if not 10 <= distance <= 500:
            fail(400, f"setup 'distance_cm' {distance:g} is not a plausible viewing distance (10-500 cm)")
        setup["distance_cm"] = distance
        setup["corrected_vision"] = bool(data.get("corrected_vision", False))
        store().set_setup(r["id"], setup)
        return jsonify(state(store().rater_by_token(token)))

    @app.post("/api/<token>/session")
    def post_session(token: str):
        r = rater(token)
        s = session_state(r)
        if s["status"] == "limit" and s["break_left_s"] > 0:
            fail(409, f"session limit reached: take a break of {s['break_left_s'] / 60:.0f} more minute(s) before the next session")
        if s["status"] != "running":
            store().start_session(r["id"])
        return jsonify(state(r))

    @app.post("/api/<token>/pause")
    def post_pause(token: str):
        r = rater(token)
        sess = store().open_session(r["id"])
        if sess is not None:
            store().end_session(sess["id"], "pause")
        return jsonify(state(r))

    def _int(value: Any, what: str, low: int = 0, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            fail(400, f"{what} must be an integer, got {value!r}")
        value = int(value)
        if value < low or (high is not None and value > high):
            fail(400, f"{what} {value} is out of range")
        return value

    @app.post("/api/<token>/rate")
    def post_rate(token: str):
        r = rater(token)
        st = store()
        data = body()
        if not r["setup"]:  # every rating carries the set-up it was given under
            fail(409, "declare your viewing set-up first (the instructions page)")
        position = _int(data.get("position"), "position")
        sid = data.get("stimulus")
        if not isinstance(sid, str) or sid not in stimuli:
            fail(404, f"stimulus {sid!r} is not in this study")
        sid_b = data.get("stimulus_b")
        if method == "pc" and (not isinstance(sid_b, str) or sid_b not in stimuli):
            fail(404, f"stimulus_b {sid_b!r} is not in this study")
        answer = data.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, (int, float)) or not math.isfinite(answer):
            fail(400, f"answer must be a number, got {answer!r}")
        if method == "acr":
            low, high = protocol["scale"]
            if answer != int(answer) or not low <= answer <= high:
                fail(400, f"answer {answer!r} is outside the scale {low}-{high} (whole numbers)")
        elif answer not in (0, 1):
            fail(400, f"answer {answer!r} must be 0 (left is better) or 1 (right is better)")
        total = total_of(r)
        if position >= total:
            fail(400, f"position {position} is past the end of your plan ({total} items)")
        expected = st.next_position(r["id"])
        if position < expected:  # a resend after a lost reply: stored once
            prev = st.rating_at(r["id"], position)
            if prev is not None and prev["stimulus"] == sid and prev["answer"] == answer:
                return jsonify(state(r, stored=False, duplicate=True))
            fail(409, f"position {position} already holds a different answer; your next position is {expected}")
        if position > expected:
            fail(409, f"position {position} is ahead of your next position {expected}")
        if method == "acr":
            entry = plan_of(r)[position]
            if entry["stimulus"] != sid:
                fail(409, f"stimulus {sid} is not the one at position {position} of your plan")
            phase, repeat = entry["phase"], bool(entry.get("repeat"))
        else:
            a = pc_item(r, position)
            if (a["stimulus"], a["stimulus_b"]) != (sid, sid_b):
                fail(409, f"pair {sid}/{sid_b} is not the one at position {position} of your plan")
            phase, repeat = a["phase"], False
        screen = data.get("screen") if isinstance(data.get("screen"), dict) else {}

        def num(key: str):
            v = screen.get(key)
            return v if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e6 else None

        ms = data.get("ms")
        ms = int(ms) if isinstance(ms, (int, float)) and not isinstance(ms, bool) and 0 <= ms < 1e9 else None
        sess = st.open_session(r["id"]) or st.last_session(r["id"])
        stored = st.add_rating(
            rater_id=r["id"], position=position, phase=phase, stimulus=sid, stimulus_b=sid_b if method == "pc" else None,
            answer=float(answer), repeat=int(repeat), ms=ms, screen_w=num("w"), screen_h=num("h"), viewport_w=num("vw"),
            viewport_h=num("vh"), dpr=num("dpr"), setup=r["setup"], session_id=sess["id"] if sess is not None else None,
        )
        extra: dict[str, Any] = {"stored": stored}
        if phase == "training" and method == "acr":
            extra["feedback"] = TRAINING_NOTE.get(plan_of(r)[position].get("anchor"), "")
        return jsonify(state(r, **extra))

    @app.get("/img/<token>/<sid>")
    def image(token: str, sid: str):
        rater(token)
        s = stimuli.get(sid)
        if s is None:
            fail(404, f"stimulus {sid!r} is not in this study")
        path = (folder / s["path"]).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            fail(404, f"stimulus {sid!r}: its file is missing from the study folder")
        return send_file(path, mimetype="image/png", max_age=3600)

    return app


TRAINING_NOTE = {
    "top": "Training: that was an undistorted photo, an example near the top of the scale (Excellent).",
    "bottom": "Training: that was a severely distorted photo, an example near the bottom of the scale (Bad).",
    "mid": "Training: that was a moderately distorted photo; use the whole scale.",
}


def serve(folder: Path, host: str = "127.0.0.1", port: int = 8765, log=print) -> None:
    from werkzeug.serving import make_server

    import socket

    app = create_app(folder)
    try:  # Werkzeug would print its own advice and exit 1 on a port in use: one line of ours instead
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port} ({exc.strerror or exc}): another program holds it; choose another --port") from None
    server = make_server(host, port, app, threaded=True)  # one thread per request: several raters at once
    log(f"study {folder}: serving on http://{host}:{server.server_port}/ (each rater opens /r/TOKEN: links.txt lists the links); Ctrl+C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("stopped: every answer given so far is stored")
    finally:
        server.server_close()


PAGE = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")
