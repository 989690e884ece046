"""One reproducible training script per model family, each writing a versioned model into ``models/``.

``python -m training`` trains every family whose shipped artifact is missing; ``--force`` retrains.
"""
