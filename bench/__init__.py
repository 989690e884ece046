"""``make bench``: mlqueue against the raw model, a tutorial FastAPI + Celery service and BentoML."""
