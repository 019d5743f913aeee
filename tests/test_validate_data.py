"""``diqa-bench validate`` reads each dataset's metadata the way the run does (no image decoded) and
stops on the errors the run would stop on; pyiqa metrics are usable by their own names."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from diqa_bench import cli
from diqa_bench.config import parse
from diqa_bench.errors import ConfigError
from diqa_bench.plugins import load_plugins

REPO = Path(__file__).resolve().parents[1]
KONIQ_HEADER = "img_name,mos,std,split,c1,c2,c3,c4,c5,c_total"


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


def _koniq(tmp_path, codes):
    base = tmp_path / "koniq10k"
    (base / "512x384").mkdir(parents=True)
    lines = [KONIQ_HEADER]
    for i, code in enumerate(codes):
        (base / "512x384" / f"{i}.jpg").write_bytes(b"\xff\xd8")
        lines.append(f"{i}.jpg,{20 + i % 60}.5,0.55,{code},0.0,0.1,0.5,0.4,0.0,101")
    (base / "meta_info_KonIQ10kDataset.csv").write_text("\n".join(lines) + "\n")
    return base


def _config(tmp_path, datasets, methods=None, **extra):
    cfg = {"name": "v", "domains": {"d": datasets}, "methods": methods or [{"name": "brisque"}], "test_domains": ["d"], **extra}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _validate(path, capsys):
    code = cli.main(["validate", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validate_reports_koniq_official_split_counts(tmp_path, capsys):
    base = _koniq(tmp_path, ["0"] * 70 + ["1"] * 10 + ["2"] * 20)
    code, out, err = _validate(_config(tmp_path, [{"dataset": "koniq10k", "options": {"root": str(base), "official_split": True}}]), capsys)
    assert code == 0, err
    assert "100 rows; train 70, val 10 (not used), test 20 from column 'split'" in out


def test_validate_stops_on_missing_files_under_bad_input_error(tmp_path, capsys):
    base = _koniq(tmp_path, ["0"] * 8 + ["2"] * 4)
    for i in (3, 5):
        (base / "512x384" / f"{i}.jpg").unlink()
    cfg = _config(tmp_path, [{"dataset": "koniq10k", "options": {"root": str(base), "official_split": True}}], bad_input="error")
    code, _, err = _validate(cfg, capsys)
    assert code == 2
    assert "2 image files missing or empty (first: 3.jpg, 5.jpg)" in err
    cfg = _config(tmp_path, [{"dataset": "koniq10k", "options": {"root": str(base), "official_split": True}}], bad_input="skip")
    code, out, _ = _validate(cfg, capsys)
    assert code == 0 and "the run skips them" in out


def test_validate_catches_a_train_set_left_empty_by_the_split(tmp_path, capsys):
    base = _koniq(tmp_path, ["2"] * 6)
    cfg = _config(tmp_path, [{"dataset": "koniq10k", "options": {"root": str(base), "official_split": True}}],
                  methods=[{"name": "brisque-fit"}], train_sets=[["d"]])
    code, _, err = _validate(cfg, capsys)
    assert code == 2 and "train set d has no images" in err


def test_validate_catches_split_and_header_errors(tmp_path, capsys):
    base = _koniq(tmp_path, ["0", "2", "holdout"])
    code, _, err = _validate(_config(tmp_path, [{"dataset": "koniq10k", "options": {"root": str(base), "official_split": True}}]), capsys)
    assert code == 2 and "split value 'holdout' is not train/val/test" in err
    (base / "meta_info_KonIQ10kDataset.csv").write_text("0.jpg,50.5,0.5,0\n")
    code, _, err = _validate(_config(tmp_path, [{"dataset": "koniq10k", "options": {"root": str(base)}}]), capsys)
    assert code == 2 and "is data, not a header" in err


def test_validate_derm_metadata_columns_are_named(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rows = []
    for i in range(12):
        (photos / f"ISIC_{i:07d}.jpg").write_bytes(b"\xff\xd8")
        rows += [(f"ISIC_{i:07d}.jpg", f"r{o}", 1 + (i + o) % 5) for o in range(3)]
    pd.DataFrame(rows, columns=["image", "observer", "rating"]).to_csv(photos / "ratings.csv", index=False)
    # HAM10000's metadata names images without the extension, in a column called image_id
    pd.DataFrame({"lesion_id": [f"HAM_{i // 2}" for i in range(12)], "image_id": [f"ISIC_{i:07d}" for i in range(12)]}).to_csv(photos / "meta.csv", index=False)
    opts = {"root": str(photos), "ratings": "ratings.csv", "metadata": "meta.csv", "patient_column": "lesion_id", "screening": False}
    code, _, err = _validate(_config(tmp_path, [{"dataset": "derm-ratings", "options": opts}]), capsys)
    assert code == 2 and "missing column 'image' (image)" in err
    code, out, err = _validate(_config(tmp_path, [{"dataset": "derm-ratings", "options": {**opts, "image_column": "image_id"}}]), capsys)
    assert code == 0, err
    assert "12 rows; hashed group split, test ratio 0.3, 6 groups" in out


def test_pyiqa_metrics_by_their_own_names(tmp_path, registry):
    cfg = parse(_config(tmp_path, [{"dataset": "koniq10k"}], methods=[{"name": "topiq_nr"}, {"name": "ilniqe", "options": {"precision": "float32"}}]), registry)
    assert [m.name for m in cfg.methods] == ["topiq_nr", "ilniqe"]
    assert registry.method("topiq_nr").lower_better is False and registry.method("ilniqe").lower_better is True
    assert registry.method("clipiqa+_vitl14_512").metric == "clipiqa+_vitL14_512"
    with pytest.raises(ConfigError, match="'lpips' is full-reference"):
        parse(_config(tmp_path, [{"dataset": "koniq10k"}], methods=[{"name": "lpips"}]), registry)
    with pytest.raises(ConfigError, match="'fid' compares two folders"):
        parse(_config(tmp_path, [{"dataset": "koniq10k"}], methods=[{"name": "fid"}]), registry)


def test_protocol_full_has_no_training_side(tmp_path, registry):
    with pytest.raises(ConfigError, match="protocol: 'full' scores every image"):
        parse(_config(tmp_path, [{"dataset": "koniq10k"}], methods=[{"name": "brisque-fit"}], train_sets=[["d"]], splits={"protocol": "full"}), registry)
    assert parse(_config(tmp_path, [{"dataset": "koniq10k"}], splits={"protocol": "full"}), registry).protocol == "full"


def test_list_methods_names_pyiqa_metrics_without_importing_pyiqa(tmp_path):
    code = "import sys, diqa_bench.cli as c; c.main(['list', 'methods']); print('PYIQA' if 'pyiqa' in sys.modules else 'NO-PYIQA')"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'plugins'}", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    lines = proc.stdout.splitlines()
    assert lines[-1] == "NO-PYIQA"
    assert any(line.startswith("topiq_nr ") for line in lines) and any(line.startswith("clipiqa+_vitl14_512 ") for line in lines)
    assert not any(line.startswith("lpips ") for line in lines)  # full-reference: known, not listed as usable
    assert "more names are known but not usable here" in lines[-2]


def test_default_configs_are_parsed_not_executed(tmp_path):
    from diqa_pyiqa.metadata import parse_default_configs

    marker = tmp_path / "ran"
    text = ("from collections import OrderedDict\nimport pathlib\n"
            f"pathlib.Path({str(marker)!r}).touch()\n"
            "DEFAULT_CONFIGS = OrderedDict({'a_nr': {'metric_opts': {'type': 'A'}, 'metric_mode': 'NR', 'lower_better': True},"
            " 'weird': {'metric_opts': {'type': str(1)}, 'metric_mode': 'NR'}})\n")
    configs = parse_default_configs(text)
    assert list(configs) == ["a_nr"] and configs["a_nr"]["lower_better"] is True
    assert not marker.exists()
    assert json.dumps(configs)
