"""The README's digits table is the newest shipped manifest's rendering matrix, rendering by
rendering (a retrained model with a stale table would tell users figures it does not reach)."""

import re

from shared.manifests import ModelRepository
from shared.settings import REPO_ROOT
from training.digits_eval import RENDERINGS

ROW = re.compile(r"^\|( *\d+\.\d / \d+\.\d *\|)+$")


def test_the_readme_digits_table_is_the_newest_manifests_matrix():
    manifest = ModelRepository(REPO_ROOT / "models").get("digits")
    matrix = manifest.metrics["rendering_matrix"]["renderings"]
    assert list(matrix) == list(RENDERINGS)  # the columns' order is the matrix's
    expected = [f"{m['accuracy'] * 100:.1f} / {m['unknown_rate'] * 100:.1f}" for m in matrix.values()]
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"The shipped `digits` v{manifest.version}," in readme
    (row,) = [line for line in readme.splitlines() if ROW.match(line)]
    assert [cell.strip() for cell in row.strip("|").split("|")] == expected
