import pytest

pytestmark = pytest.mark.integration


def test_models_list_manifests_schemas_and_where_they_are_loaded(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    iris = models["iris"]
    assert iris["latest_version"] == 1
    v1 = iris["versions"][0]
    assert v1["labels"] == ["setosa", "versicolor", "virginica"]
    assert v1["metrics"]["accuracy"] >= 0.9 and v1["training_command"].startswith("python -m training.iris")
    assert v1["input_schema"]["oneOf"][0]["required"][0] == "sepal_length"
    assert v1["loaded_on"] and v1["loaded_on"][0].startswith("worker@")


def test_one_model_and_an_unknown_one(client):
    assert client.get("/v1/models/iris").json()["name"] == "iris"
    response = client.get("/v1/models/nope")
    assert response.status_code == 404 and response.json()["code"] == "model_not_found"
