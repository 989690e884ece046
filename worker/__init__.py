"""The worker: Celery app and tasks, model runtime, micro-batching. No HTTP routes here.

Importing this package must not import TensorFlow: models load after the pool is set up.
"""
