"""The README's manifest reference is checked against the models: every field of every
spec is documented, and nothing documented is missing from the models; its architecture
list names every module of the package, and only those."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.models import ConsumerSpec, KeyValueSpec, ObjectStoreSpec, StreamSpec

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _table_fields(heading: str) -> set[str]:
    section = README.split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))


@pytest.mark.parametrize(
    ("heading", "model"),
    [
        ("### Stream `spec` fields", StreamSpec),
        ("### Consumer `spec` fields", ConsumerSpec),
        ("### KeyValue `spec` fields", KeyValueSpec),
        ("### ObjectStore `spec` fields", ObjectStoreSpec),
    ],
)
def test_reference_table_matches_model(heading: str, model: type) -> None:
    assert _table_fields(heading) == set(model.model_fields)


def test_readme_shows_the_two_setup_commands() -> None:
    assert "make demo" in README and "make test" in README


def test_readme_project_file_example_is_valid(tmp_path: Path) -> None:
    from reconciler.environments import load_project

    section = README.split("## The project file `jsops.yaml`", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "jsops.yaml").write_text(example)
    project = load_project(tmp_path / "jsops.yaml")
    assert project.name == "payments"
    assert project.config.environments["prod"].allow_delete is False


def test_architecture_names_every_module() -> None:
    block = README.split("## Architecture", 1)[1].split("```\n", 2)[1]
    named = set(re.findall(r"^  ([a-z_]+(?:\.py|/))", block, re.MULTILINE))
    package = Path(__file__).resolve().parent.parent / "reconciler"
    present = {
        p.name + "/" if p.is_dir() else p.name
        for p in package.iterdir()
        if (p.suffix == ".py" and not p.name.startswith("__")) or (p / "__init__.py").exists()
    }
    assert named == present
