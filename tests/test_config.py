"""Config validation: every error names the file, the key path and what is allowed."""

import copy

import pytest
import yaml

from diqa_bench import cli, config
from diqa_bench.errors import ConfigError
from diqa_bench.testing import stub_config


def _write(tmp_path, data, name="bench.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _error(tmp_path, data, registry=None) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        config.parse(path, registry)
    msg = str(info.value)
    assert msg.startswith(str(path) + ":"), msg  # every error names the file
    assert "\n" not in msg  # one line
    return msg


def test_good_config_parses_with_defaults(tmp_path, stub_registry):
    cfg = config.parse(_write(tmp_path, stub_config(seeds=[3, 4])), stub_registry)
    assert cfg.name == "stub"
    assert [m.name for m in cfg.methods] == ["stub-noise", "stub-linear"]
    assert cfg.methods[0].label == "stub-noise"
    assert cfg.train_sets == [["a"], ["b"], ["a", "b"]]
    assert cfg.seeds == [3, 4] and cfg.test_ratio == pytest.approx(0.34)
    assert cfg.bootstrap == 200 and cfg.confidence == 0.95 and cfg.bad_input == "skip"
    assert [d.name for d in cfg.domains["a"]] == ["stub-a"]


def test_unknown_top_level_key_names_key_allowed_and_suggestion(tmp_path):
    data = stub_config()
    data["method"] = [{"name": "stub-noise"}]
    msg = _error(tmp_path, data)
    assert "unknown key 'method'" in msg
    assert "did you mean 'methods'?" in msg
    assert "allowed:" in msg and "test_domains" in msg and "statistics" in msg


def test_unknown_nested_key_names_its_path(tmp_path):
    data = stub_config()
    data["splits"]["seed"] = [0]
    msg = _error(tmp_path, data)
    assert "splits: unknown key 'seed' (did you mean 'seeds'?)" in msg
    assert "allowed: folds, protocol, seeds, test_ratio, use_split_column" in msg


def test_unknown_key_in_a_method_entry(tmp_path):
    data = stub_config()
    data["methods"][1]["option"] = {"slow": True}
    msg = _error(tmp_path, data)
    assert "methods[1]: unknown key 'option' (did you mean 'options'?)" in msg


def test_unknown_method_name_gets_did_you_mean(tmp_path, stub_registry):
    data = stub_config(methods=[{"name": "stub-noise"}, {"name": "stub-nois"}])
    msg = _error(tmp_path, data, stub_registry)
    assert "methods[1].name" in msg
    assert "Did you mean 'stub-noise'" in msg
    assert "stub-linear" in msg  # the known names are listed


def test_unknown_dataset_type_gets_did_you_mean(tmp_path, stub_registry):
    data = stub_config()
    data["domains"]["b"][0]["dataset"] = "stub-datset"
    msg = _error(tmp_path, data, stub_registry)
    assert "domains.b[0].dataset" in msg
    assert "Did you mean 'stub-dataset'?" in msg


def test_unknown_method_option_names_options_path(tmp_path, stub_registry):
    data = stub_config(methods=[{"name": "stub-noise", "options": {"colour": 1}}])
    msg = _error(tmp_path, data, stub_registry)
    assert "methods[0].options" in msg
    assert "'colour'" in msg
    assert "allowed:" in msg and "fail" in msg and "unavailable" in msg


def test_method_option_of_wrong_type(tmp_path, stub_registry):
    data = stub_config(methods=[{"name": "stub-noise", "options": {"fail": "yes"}}])
    msg = _error(tmp_path, data, stub_registry)
    assert "methods[0].options.fail" in msg
    assert "expected boolean" in msg and "'yes'" in msg


def test_dataset_option_out_of_range(tmp_path, stub_registry):
    data = stub_config()
    data["domains"]["a"][0]["options"]["count"] = 1
    msg = _error(tmp_path, data, stub_registry)
    assert "domains.a[0].options.count" in msg
    assert "minimum" in msg or "less than" in msg


@pytest.mark.parametrize(
    "field, value, where, suggestion",
    [
        ("train_sets", [["a"], ["c"]], "train_sets[1][0]", None),
        ("train_sets", [["a", "bb"]], "train_sets[0][1]", "Did you mean 'b'?"),
        ("test_domains", ["a", "aa"], "test_domains[1]", "Did you mean 'a'?"),
    ],
)
def test_unknown_domain(tmp_path, field, value, where, suggestion):
    data = stub_config()
    data[field] = value
    msg = _error(tmp_path, data)
    assert f"{where}: unknown domain" in msg
    assert "Domains declared: a, b" in msg
    if suggestion:
        assert suggestion in msg


def test_invalid_yaml_gives_line_and_column(tmp_path):
    text = "name: stub\nmethods:\n  - {name: stub-noise\ntest_domains: [a]\n"
    msg = _error(tmp_path, text)
    assert "invalid YAML" in msg
    assert "line 4, column 1" in msg


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["splits"].update(seeds="0"), "splits.seeds: expected array, got str '0'"),
        (lambda d: d["statistics"].update(bootstrap=1.5), "statistics.bootstrap: expected integer"),
        (lambda d: d["splits"].update(test_ratio=1.5), "splits.test_ratio"),
        (lambda d: d.update(methods={"name": "stub-noise"}), "methods: expected array"),
        (lambda d: d.update(bad_input="ignore"), "bad_input: 'ignore' is not allowed; use one of 'error', 'skip'"),
        (lambda d: d.update(strata=["skin_tone"]), "strata[0]: 'skin_tone' is neither a built-in column nor a dataset's metadata_columns; known: distortion, level, reference_kind, dataset"),
        (lambda d: d["statistics"].update(adjust="bonferroni"), "statistics.adjust: 'bonferroni' is not allowed; use one of 'holm', 'bh', 'none'"),
        (lambda d: d["domains"].update(c=[]), "domains.c"),
        (lambda d: d.pop("test_domains"), "'test_domains' is a required property"),
    ],
)
def test_wrong_types_and_values(tmp_path, mutate, expected):
    data = copy.deepcopy(stub_config())
    mutate(data)
    assert expected in _error(tmp_path, data)


def test_config_must_be_a_mapping_and_exist(tmp_path):
    assert "must be a mapping" in _error(tmp_path, "- just\n- a list\n")
    with pytest.raises(ConfigError, match="config file not found"):
        config.parse(tmp_path / "missing.yaml")


def test_trainable_method_needs_train_sets(tmp_path, stub_registry):
    data = stub_config()
    del data["train_sets"]
    msg = _error(tmp_path, data, stub_registry)
    assert "methods[1]" in msg and "trainable" in msg and "train_sets" in msg


def test_duplicate_labels_and_instances_are_errors(tmp_path):
    data = stub_config(methods=[{"name": "stub-noise"}, {"name": "stub-noise"}])
    assert "methods[1]: 'stub-noise' is listed twice" in _error(tmp_path, data)
    data = stub_config()
    data["domains"]["b"][0]["name"] = "stub-a"
    assert "domains.b[0]: dataset instance 'stub-a' also appears in domain 'a'" in _error(tmp_path, data)
    data = stub_config(train_sets=[["a", "b"], ["b", "a"]])
    assert "train_sets: the same train set is listed twice" in _error(tmp_path, data)


# -- `diqa-bench validate` ------------------------------------------------------------------


@pytest.fixture
def stub_cli(monkeypatch, stub_registry):
    monkeypatch.setattr(cli, "REGISTRY", stub_registry)


def test_validate_command_accepts_a_good_config(tmp_path, stub_cli, capsys):
    path = _write(tmp_path, stub_config(seeds=[0, 1]))
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    # 1 zero-shot + 1 trainable x 3 train sets, x 2 test domains x 2 seeds
    assert "OK (2 methods, 2 domains, 3 train sets, 2 seeds: 16 cells)" in out


@pytest.mark.parametrize(
    "data, expected",
    [
        ({**stub_config(), "seeds": [0]}, "unknown key 'seeds'"),
        (stub_config(methods=[{"name": "stub-lineer"}]), "Did you mean 'stub-linear'"),
        ("domains: [\n", "invalid YAML"),
    ],
)
def test_validate_command_rejects_a_bad_config_with_exit_2(tmp_path, stub_cli, capsys, data, expected):
    path = _write(tmp_path, data)
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"diqa-bench: error: {path}")
    assert expected in err
    assert len(err.strip().splitlines()) == 1


def test_validate_command_missing_file_exit_2(tmp_path, stub_cli, capsys):
    assert cli.main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_validate_schema_prints_the_schema(capsys):
    import json

    assert cli.main(["validate", "--schema", "ignored.yaml"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == config.SCHEMA


def test_validate_command_reports_unavailable_data_with_exit_2(tmp_path, monkeypatch, capsys, no_entry_point_plugins):
    import types

    import diqa_bench.testing as stubs
    from diqa_bench import hookimpl
    from diqa_bench.datasets import Dataset
    from diqa_bench.plugins import load_plugins

    class Missing(Dataset):
        name = "missing-data"

        def check(self):
            return ["folder /data/missing not found: download it from https://example.org first"]

    @hookimpl
    def register_datasets(register):
        register(Missing)

    registry = load_plugins(extra=[("stub", stubs), ("missing", types.SimpleNamespace(register_datasets=register_datasets))])
    monkeypatch.setattr(cli, "REGISTRY", registry)
    data = stub_config()
    data["domains"]["b"] = [{"dataset": "missing-data"}]
    path = _write(tmp_path, data)
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "domains.b: dataset missing-data: folder /data/missing not found" in err
    assert "config is valid, but 1 dataset(s) are not available" in err


def test_multiplicity_adjustment_defaults_to_holm(tmp_path, stub_registry):
    assert config.parse(_write(tmp_path, stub_config()), stub_registry).adjust == "holm"
    data = stub_config()
    data["statistics"]["adjust"] = "bh"
    assert config.parse(_write(tmp_path, data), stub_registry).adjust == "bh"
