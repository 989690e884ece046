"""The worker presence record: what a heartbeat writes is what the API reads, and a record from
another release (fields missing, fields added) still parses."""

import json

from shared.presence import LOADING, ModelState, WorkerPresence, parse_all, parse_models


def test_a_written_presence_reads_back_the_same():
    presence = WorkerPresence(
        hostname="celery@a",
        host="a",
        address="10.0.0.1",
        pid=12,
        incarnation="x1",
        queues=("cpu", "webhooks"),
        models=parse_models(
            {"iris": {"1": {"status": "loaded", "load_ms": 3.5}, "2": {"status": "failed", "error": "e"}}}
        ),
        started_at=1.0,
        heartbeat_at=2.0,
    )
    wire = json.dumps(presence.to_json())
    assert WorkerPresence.parse(wire) == presence
    assert json.loads(wire)["models"] == {
        "iris": {"1": {"status": "loaded", "load_ms": 3.5}, "2": {"status": "failed", "error": "e"}}
    }


def test_missing_fields_read_as_absent_and_unknown_fields_are_ignored():
    presence = WorkerPresence.parse(json.dumps({"hostname": "celery@old", "future_field": [1]}))
    assert presence is not None
    assert presence.queues == () and presence.incarnation is None and presence.host is None
    assert presence.versions("iris") == {} and presence.model_state("iris", 1) is None


def test_model_state_by_name_and_version():
    presence = WorkerPresence.parse(
        {"hostname": "h", "models": {"iris": {"1": {"status": "loaded"}, "2": {"status": "loading"}}}}
    )
    assert presence is not None
    assert presence.model_state("iris", 1) == ModelState("loaded") and presence.model_state("iris", "1").loaded
    assert presence.model_state("iris", 2) == ModelState(LOADING)
    assert presence.model_state("iris", 3) is None and presence.model_state("wine", 1) is None


def test_what_is_not_a_presence_is_left_out():
    values = [None, b"not json", json.dumps([1]), json.dumps({"queues": ["cpu"]}), json.dumps({"hostname": "h"})]
    assert [p.hostname for p in parse_all(values)] == ["h"]


def test_an_unreadable_model_entry_reads_as_failed_not_as_loaded():
    presence = WorkerPresence.parse({"hostname": "h", "models": {"iris": {"1": "loaded"}, "wine": 3}})
    assert presence is not None
    state = presence.model_state("iris", 1)
    assert state is not None and not state.loaded and state.error
    assert presence.versions("wine") == {}
