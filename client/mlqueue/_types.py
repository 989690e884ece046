"""Types the client's modules share."""

from typing import Any

# A JSON value as the API takes or returns it: a job's input, its output, a batch row. Typed Any
# because its shape is the model's (the server validates it against the model's input schema).
JsonValue = Any
