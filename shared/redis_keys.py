"""The prefix every mlqueue Redis key starts with (one place, so no module hard-codes it)."""

PREFIX = "mlqueue"
