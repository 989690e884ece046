import json
import math
from pathlib import Path

import pytest

from shared.errors import InvalidInput, NotFound
from shared.manifests import ModelManifest, ModelRepository, validate_features
from shared.settings import REPO_ROOT

IRIS = ModelManifest.model_validate(json.loads((REPO_ROOT / "models/iris/1/manifest.json").read_text()))
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def test_named_input_is_ordered_by_the_manifest():
    shuffled = dict(reversed(list(SETOSA.items())))
    assert validate_features(IRIS, shuffled) == ([5.1, 3.5, 1.4, 0.2], {})


def test_positional_input_accepts_integers():
    assert validate_features(IRIS, [5, 3, 1, 0])[0] == [5.0, 3.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([5.1, 3.5, 1.4], "must have 4 values"),
        ([5.1, 3.5, 1.4, 0.2, 9.9], "must have 4 values"),
        ({"sepal_length": 5.1}, "missing sepal_width, petal_length, petal_width"),
        ({**SETOSA, "colour": 1}, "unknown colour"),
        ([5.1, "3.5", 1.4, 0.2], "sepal_width must be a number, got str"),
        ([5.1, True, 1.4, 0.2], "must be a number, got bool"),
        ([5.1, None, 1.4, 0.2], "must be a number, got NoneType"),
        ([5.1, [1], 1.4, 0.2], "must be a number, got list"),
        ([math.nan, 3.5, 1.4, 0.2], "sepal_length must be a finite number"),
        ([math.inf, 3.5, 1.4, 0.2], "finite"),
        ("5.1,3.5,1.4,0.2", "must be an object"),
        (None, "must be an object"),
    ],
)
def test_bad_inputs_say_what_is_wrong(value, message):
    with pytest.raises(InvalidInput, match=message):
        validate_features(IRIS, value)


def test_json_schema_describes_both_forms():
    schema = IRIS.input_json_schema()
    named, positional = schema["oneOf"]
    assert named["required"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert positional["minItems"] == positional["maxItems"] == 4


def test_repository_serves_the_newest_version_unless_pinned(tmp_path: Path):
    for version in (1, 2, 10):
        d = tmp_path / "iris" / str(version)
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(IRIS.model_copy(update={"version": version}).model_dump_json())
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "manifest.json").write_text("{not json")
    repo = ModelRepository(tmp_path)
    assert repo.get("iris").version == 10  # numeric, not lexical
    assert repo.get("iris", 2).version == 2
    with pytest.raises(NotFound, match="has no version 3"):
        repo.get("iris", 3)
    with pytest.raises(NotFound, match="no model named 'broken'"):
        repo.get("broken")
    assert any("broken" in path for path in repo.errors)
