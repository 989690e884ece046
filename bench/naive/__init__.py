"""(c) The naive baseline: the FastAPI + Celery pattern of the common tutorials, written as they write it.

``app.py`` answers ``POST /predict/...`` with ``task.delay(...)``'s id and ``GET /result/{id}`` with
``AsyncResult(id)``; ``tasks.py`` is a prefork Celery worker with a Redis result backend that calls
``model.predict`` once per task. Nothing here is mlqueue code: only the model artifacts are shared.
"""
