"""The Configuration table in docs/operations.md lists exactly the settings ``shared.settings`` reads,
so a new setting cannot ship undocumented and a removed one cannot linger in the table."""

import re

from shared.settings import REPO_ROOT, Settings

VARIABLE = re.compile(r"`(MLQUEUE_[A-Z0-9_]+)`")


def configuration_table() -> list[str]:
    """The table rows of the ``## Configuration`` section."""
    page = (REPO_ROOT / "docs" / "operations.md").read_text()
    section = page[page.index("\n## Configuration\n") :]
    end = section.find("\n## ", 1)  # the next section, if any
    section = section if end == -1 else section[:end]
    return [line for line in section.splitlines() if line.startswith("| `MLQUEUE_")]


def documented() -> set[str]:
    """The variables each row names in its first cell (``A`` / ``B`` rows name two)."""
    return {name for row in configuration_table() for name in VARIABLE.findall(row.split(" | ")[0])}


def test_every_setting_has_a_row_and_every_row_is_a_setting():
    settings = {f"MLQUEUE_{field.upper()}" for field in Settings.model_fields}
    assert settings - documented() == set(), "settings missing from docs/operations.md#configuration"
    assert documented() - settings == set(), "docs/operations.md#configuration names settings that do not exist"
