"""Documentation that cannot drift: the README's option tables are rendered from the code."""

from pathlib import Path

from diqa_bench.methods import options_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_cross_domain_options_table_is_the_schema_and_its_defaults():
    from diqa_cross_domain.method import DEFAULTS, CrossDomain

    assert set(CrossDomain.options_schema) == set(DEFAULTS), "every option has a schema entry and a default"
    assert all(spec.get("description") for spec in CrossDomain.options_schema.values()), "every option says what it does"
    expected = options_table(CrossDomain.options_schema, DEFAULTS)
    assert expected in README.read_text(), "README's cross-domain options table is stale; paste this:\n" + expected


def test_options_table_shows_each_default_as_written():
    schema = {"a": {"description": "x"}, "b": {"description": "y"}, "c": {}, "d": {"description": "z"}}
    table = options_table(schema, {"a": "native", "b": None, "c": 3, "d": True})
    assert table.splitlines()[2:] == ["| `a` | `native` | x |", "| `b` | none | y |", "| `c` | 3 |  |", "| `d` | true | z |"]
