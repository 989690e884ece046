"""Our hand-built Celery messages must be what kombu itself pushes, and a real worker must run them."""

import base64
import json

import redis

from shared.celery_app import make_celery
from shared.celery_messages import task_message

DYNAMIC = {"delivery_tag"}


def test_the_message_matches_what_kombu_publishes(redis_settings):
    app = make_celery(redis_settings, publisher=True)
    r = redis.Redis.from_url(redis_settings.redis_url, decode_responses=True)
    app.send_task("mlqueue.predict", args=["JOB1"], queue="cpu", task_id="JOB1", headers={"request_id": "r1"})
    theirs = json.loads(r.rpop("cpu"))
    ours = json.loads(task_message(app, "mlqueue.predict", ["JOB1"], "JOB1", "cpu", {"request_id": "r1"}))
    assert set(ours) == set(theirs)
    assert {k: v for k, v in ours["properties"].items() if k not in DYNAMIC} == {
        k: v for k, v in theirs["properties"].items() if k not in DYNAMIC
    }
    assert json.loads(base64.b64decode(ours["body"])) == json.loads(base64.b64decode(theirs["body"]))
    volatile = {"origin"}  # the sending host/pid
    assert {k: v for k, v in ours["headers"].items() if k not in volatile} == {
        k: v for k, v in theirs["headers"].items() if k not in volatile
    }
    app.close()
