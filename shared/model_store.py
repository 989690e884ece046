"""Where the model repository lives: a local folder or an object store (``s3://bucket/prefix``;
``gs://`` and ``az://`` too when ``gcsfs`` / ``adlfs`` are installed), through fsspec.

Everything above this module speaks in paths relative to the repository root
(``iris/2/manifest.json``); this module turns them into the backend's own. Writes are whole
objects: an object store PUT is atomic by itself, a local file is written to a temporary name and
renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.errors import ErrorCode, MlqueueError

CHUNK = 1 << 20


class StoreError(MlqueueError):
    """The repository could not be read or written (unreachable, denied, bad URL)."""

    status_code = 503
    code = ErrorCode.MODEL_STORE_UNAVAILABLE


def is_remote(url: str | os.PathLike[str]) -> bool:
    return "://" in str(url) and not str(url).startswith("file://")


class ModelStore:
    """One repository root on one filesystem. ``endpoint_url`` is for S3-compatible servers
    (MinIO, moto, Ceph); credentials come from the standard ``AWS_*`` variables / profiles."""

    def __init__(self, url: str | os.PathLike[str], endpoint_url: str | None = None) -> None:
        import fsspec  # here, not at import: settings and the API's import path stay light

        self.url = str(url)
        if is_remote(self.url):
            protocol, _, rest = self.url.partition("://")
            options: dict[str, Any] = {"skip_instance_cache": True}
            if protocol in ("s3", "s3a"):
                # listings are cached one level up (``ModelRepository``), where ``reload`` can clear them
                options["use_listings_cache"] = False
                # fail in seconds when the store is down (the last listing keeps serving), not after
                # s3fs's and botocore's retries stacked (11 s to a closed port)
                options["config_kwargs"] = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}}
                if endpoint_url:
                    options["client_kwargs"] = {"endpoint_url": endpoint_url}
            try:
                self.fs = fsspec.filesystem(protocol, **options)
            except (ImportError, ValueError) as exc:
                raise StoreError(f"cannot open model repository {self.url}: {exc}") from exc
            if hasattr(self.fs, "retries"):
                self.fs.retries = 2  # s3fs's own retries, on top of botocore's
            self.root = rest.strip("/")
        else:
            self.fs = fsspec.filesystem("file")
            self.root = str(Path(self.url.removeprefix("file://")).resolve())
        self.local = not is_remote(self.url)

    def __repr__(self) -> str:
        return f"ModelStore({self.url!r})"

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def local_path(self, relative: str) -> Path:
        """A folder repository's file, loaded in place (nothing to download)."""
        assert self.local
        return Path(self.root) / relative

    def listing(self) -> dict[str, str]:
        """Every file under the root → a signature that changes when the file does (ETag or mtime)."""
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:  # network, credentials, no such bucket
            raise StoreError(f"cannot list model repository {self.url}: {exc}") from exc
        prefix = self.root.rstrip("/") + "/"
        out = {}
        for path, info in found.items():
            if info.get("type") == "directory" or not path.startswith(prefix):
                continue
            signature = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
            out[path[len(prefix) :]] = f"{signature}:{info.get('size')}"
        return out

    def read(self, relative: str) -> bytes:
        try:
            data: bytes = self.fs.cat_file(self.path(relative))  # fsspec is untyped
            return data
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot read {relative} from {self.url}: {exc}") from exc

    def write(self, relative: str, data: bytes) -> None:
        """One whole object (atomic on an object store; temporary name + rename on a folder)."""
        try:
            if self.local:
                target = self.local_path(relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
                temp.write_bytes(data)
                os.replace(temp, target)
            else:
                self.fs.pipe_file(self.path(relative), data)
        except OSError as exc:
            raise StoreError(f"cannot write {relative} to {self.url}: {exc}") from exc

    def upload(self, local: Path, relative: str) -> None:
        try:
            self.fs.put_file(str(local), self.path(relative))
        except Exception as exc:
            raise StoreError(f"cannot upload {local} to {self.url}/{relative}: {exc}") from exc

    def exists(self, relative: str) -> bool:
        try:
            return bool(self.fs.exists(self.path(relative)))
        except Exception as exc:
            raise StoreError(f"cannot reach {self.url}: {exc}") from exc

    def chunks(self, relative: str) -> Iterator[bytes]:
        """The object's bytes, streamed (a large artifact never sits in memory whole)."""
        try:
            with self.fs.open(self.path(relative), "rb", block_size=CHUNK) as f:
                while block := f.read(CHUNK):
                    yield block
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot download {relative} from {self.url}: {exc}") from exc


def download_verified(store: ModelStore, relative: str, target: Path, sha256: str) -> str:
    """Download to a temporary name next to ``target``, hash while writing, and rename into place
    only when the digest is ``sha256``; returns the digest seen. A mismatch leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    digest = hashlib.sha256()
    try:
        with open(temp, "wb") as out:
            for block in store.chunks(relative):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() == sha256:
            os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return digest.hexdigest()
