"""The scoring session (diqa_bench/session.py): one cache token and one cache path for ``score``,
``run``, the process pool and Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diqa_bench.session import ScoringSession


def _photos(folder: Path, n: int = 4) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


# Tokens of the built-in methods as commit 27d68cd (before the session) computed them: `run`'s
# Scorer.zero_shot_token and `score`'s scoring.score_token. Their caches must stay hits.
PINNED = {
    ("brisque", ()): "41f7a38535712459",
    ("cross-domain", ()): "a2c1f6c743a05fe4",
    ("cross-domain", (("epochs", 3), ("mode", "head"))): "d47fa709a70ea7a7",
}


@pytest.fixture(scope="module")
def builtin_registry():
    pytest.importorskip("pyiqa")
    from diqa_bench.plugins import load_plugins

    return load_plugins()


@pytest.mark.parametrize("name, options", sorted(PINNED), ids=lambda v: str(v))
def test_method_cache_tokens_of_the_builtin_methods_are_unchanged(builtin_registry, name, options):
    assert builtin_registry.method(name)(**dict(options)).cache_token() == PINNED[(name, options)]


def test_cross_domain_token_resolves_its_options_against_the_defaults(builtin_registry):
    from diqa_cross_domain.method import DEFAULTS

    cls = builtin_registry.method("cross-domain")
    # naming a default's value is the same configuration: the same key, the same fits and scores
    assert cls(epochs=DEFAULTS["epochs"]).cache_token() == cls().cache_token() == PINNED[("cross-domain", ())]


def test_session_tokens_with_weight_files_a_fit_and_the_decoder_are_unchanged(builtin_registry, tmp_path):
    (tmp_path / "brisque_svm_weights.pth").write_bytes(b"not really an SVM")
    fit = tmp_path / "fit"
    fit.mkdir()
    (fit / "model.npz").write_bytes(b"fitted")
    (fit / "DONE").write_text("done\n")
    pil = ScoringSession(builtin_registry, weights_dir=tmp_path)
    nvjpeg = ScoringSession(builtin_registry, decoder="nvjpeg", weights_dir=tmp_path)
    brisque = builtin_registry.method("brisque")()
    fitted = builtin_registry.method("brisque-fit")()
    # the values 27d68cd's score_token and zero_shot_token gave for these files
    assert pil.token(brisque) == "w:9863dee6ea60fa28"
    assert nvjpeg.token(brisque) == "w:9863dee6ea60fa28|nvjpeg"
    assert pil.token(fitted, fit) == "fit-file:a754ad870f0f1da8"
    assert nvjpeg.token(fitted, str(fit)) == "fit-file:a754ad870f0f1da8|nvjpeg"


def test_score_and_run_compute_the_same_token(stub_registry, tmp_path):
    from diqa_bench import config as cfgmod
    from diqa_bench.plan import Plan
    from diqa_bench.scorer import RunOptions, Scorer
    from diqa_bench.scoring import prepare
    from diqa_bench.testing import stub_config

    import yaml

    (tmp_path / "stub.pth").write_bytes(b"stub weights")
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(stub_config()))
    cfg = cfgmod.parse(path, stub_registry)
    opts = RunOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache", device="cpu", weights_dir=str(tmp_path))
    scorer = Scorer(Plan.build(cfg, stub_registry, tmp_path / "cache", log=lambda msg: None), stub_registry, opts)
    weights = str(tmp_path / "stub.pth")
    p = prepare(stub_registry, "stub-noise", {}, weights, device="cpu", cache_dir=tmp_path / "cache", weights_dir=str(tmp_path))
    assert scorer.zero_shot_token(scorer.session.method("stub-noise", {"weights": weights})) == p.token
    assert scorer.method_context(0).weights_dir == p.ctx.weights_dir == tmp_path


def test_what_score_cached_is_a_hit_for_the_session_without_setting_the_method_up(stub_registry, stub_counters, tmp_path):
    from diqa_bench.cache import ScoreCache, file_hash
    from diqa_bench.scoring import prepare, score_files

    paths = _photos(tmp_path / "img")
    p = prepare(stub_registry, "stub-noise", device="cpu", cache_dir=tmp_path / "cache")
    first = score_files(p, stub_registry, paths, cache=ScoreCache(tmp_path / "cache"))
    assert stub_counters[0].calls == len(paths)

    session = ScoringSession.open(stub_registry, device="cpu", cache_dir=tmp_path / "cache")
    method = session.method("stub-noise")

    def never() -> None:
        raise AssertionError("a fully cached list set the method up")

    seen: list[dict] = []
    keys = [file_hash(x) for x in paths]
    have = session.score(method, session.token(method), keys, paths, ensure_setup=never, on_error=lambda k, m: None, on_scores=seen.append)
    assert [have[k] for k in keys] == [s for s, _ in first]
    assert seen == [have] and stub_counters[0].calls == len(paths)


def test_a_cached_nan_is_scored_again_and_saved_as_it_comes(stub_registry, stub_counters, tmp_path):
    from diqa_bench.cache import file_hash

    paths = _photos(tmp_path / "img", 3)
    keys = [file_hash(x) for x in paths]
    session = ScoringSession.open(stub_registry, device="cpu", cache_dir=tmp_path / "cache")
    method = session.method("stub-noise")
    token = session.token(method)
    session.scores.put_many(token, {keys[0]: 1.5, keys[1]: float("nan")})
    setups: list[int] = []
    have = session.score(method, token, keys, paths, ensure_setup=lambda: setups.append(1), on_error=lambda k, m: None)
    assert have[keys[0]] == 1.5 and np.isfinite(have[keys[1]]) and np.isfinite(have[keys[2]])
    assert stub_counters[0].calls == 2 and setups  # only the NaN and the missing image were computed
    assert session.scores.get_many(token, keys) == have


def test_an_undecodable_image_goes_to_on_error_by_key(stub_registry, tmp_path):
    paths = _photos(tmp_path / "img", 2)
    bad = tmp_path / "img" / "broken.png"
    bad.write_bytes(b"not a png")
    session = ScoringSession.open(stub_registry, device="cpu", cache_dir=None)
    method = session.method("stub-noise")
    errors: dict[str, str] = {}
    have = session.score(method, session.token(method), ["a", "b", "bad"], [*paths, str(bad)], ensure_setup=lambda: None,
                         on_error=errors.__setitem__)
    assert set(have) == {"a", "b"} and list(errors) == ["bad"]


def test_the_weights_folder_is_resolved_in_one_place(monkeypatch, tmp_path):
    from diqa_bench.session import resolve_weights_dir

    monkeypatch.setenv("DIQA_BENCH_WEIGHTS", str(tmp_path / "env"))
    assert resolve_weights_dir(None, None) == tmp_path / "env"
    assert resolve_weights_dir(None, str(tmp_path / "config")) == tmp_path / "config"
    assert resolve_weights_dir(str(tmp_path / "cli"), str(tmp_path / "config")) == tmp_path / "cli"
    monkeypatch.delenv("DIQA_BENCH_WEIGHTS")
    assert resolve_weights_dir(None, "") is None


@pytest.mark.usefixtures("no_entry_point_plugins", "no_report_figures")
def test_a_run_interrupted_while_its_datasets_load_still_writes_its_empty_results(tmp_path, monkeypatch):
    import json

    from diqa_bench import runner
    from diqa_bench.testing import InterruptOnCall, run_tiny_benchmark

    # the plan is built before the scorer now: an interruption before it exists must still write run.json
    monkeypatch.setattr(runner.Plan, "build", InterruptOnCall(runner.Plan.build, 1))
    with pytest.raises(KeyboardInterrupt):
        run_tiny_benchmark(tmp_path)
    written = [p for p in tmp_path.iterdir() if p.name.startswith("results")]
    assert len(written) == 1
    info = json.loads((written[0] / "run.json").read_text())
    assert info["interrupted"] is True and info["cells"] == []
