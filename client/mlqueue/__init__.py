"""mlqueue's Python client: ``Client`` / ``AsyncClient`` over HTTP, typed errors, webhook checks.

from mlqueue import Client
with Client("http://localhost:8000", api_key="mlq_...") as mlq:
    print(mlq.predict("iris", [5.1, 3.5, 1.4, 0.2])["label"])
"""

from mlqueue._version import __version__
from mlqueue.client import AsyncClient, Client
from mlqueue.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Expired,
    Forbidden,
    InvalidInput,
    JobFailed,
    MlqueueError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StreamTimeout,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    WaitTimeout,
)
from mlqueue.jobs import AsyncJob, Event, Job, Progress, QueuePlace
from mlqueue.keys import create_key
from mlqueue.webhooks import InvalidSignature, verify_webhook

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncJob",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "Expired",
    "Forbidden",
    "InvalidInput",
    "InvalidSignature",
    "Job",
    "JobFailed",
    "MlqueueError",
    "NotFound",
    "PayloadTooLarge",
    "Progress",
    "QueuePlace",
    "RateLimited",
    "StreamTimeout",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "WaitTimeout",
    "__version__",
    "create_key",
    "verify_webhook",
]
