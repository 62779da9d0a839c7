"""Where uploaded files live: a folder under instance/ (the embedded default) or any
S3-compatible store through boto3.

`STORAGE_URL` picks one:

- unset, or `file:///absolute/folder`: the local filesystem (default `instance/files`).
- `s3://BUCKET?endpoint_url=URL&region=REGION&addressing_style=path|virtual`: an S3 bucket;
  every query parameter is optional (AWS itself needs none). Credentials come from boto3's
  usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role),
  never from the URL, so the URL can be logged.

Objects are never public. A download is a short-lived signed URL minted after the caller
was checked (a buyer link, a rep's session): an S3 presigned GET, or for the local store
our own `/files/<signed token>` (webapp/blueprints/content.py), both valid `URL_TTL` seconds.
Keys start with `<tenant>/<plan>/`, so deleting a plan's files is deleting a prefix.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, quote, urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer

from .config import ROOT

URL_TTL = 60  # seconds a download URL stays valid: long enough to follow a redirect
CHUNK = 1024 * 1024


def _disposition(filename: str, inline: bool) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "'")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


class LocalStorage:
    """Files under one folder; downloads through signed, expiring URLs served by us."""

    def __init__(self, root: Path, secret: str):
        self.root = root
        self.signer = URLSafeTimedSerializer(secret, salt="mutualplan-file-url")

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("storage key escapes the storage folder")
        return path

    def put(self, key: str, stream: BinaryIO, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        with tmp.open("wb") as out:
            shutil.copyfileobj(stream, out, CHUNK)
        tmp.replace(path)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def read(self, key: str, limit: int) -> bytes:
        """A small object's bytes (a deck's thumbnail), at most `limit`; FileNotFoundError."""
        with self._path(key).open("rb") as f:
            return f.read(limit)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix.rstrip("/")), ignore_errors=True)

    def keys(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root.resolve())) for p in base.rglob("*") if p.is_file())

    def url(self, key: str, *, filename: str, content_type: str, inline: bool) -> str:
        token = self.signer.dumps({"k": key, "n": filename, "t": content_type, "i": inline})
        return f"/files/{token}"

    def resolve(self, token: str) -> dict | None:
        """The file a signed local URL names, or None when forged or expired."""
        try:
            data = self.signer.loads(token, max_age=URL_TTL)
        except BadSignature:
            return None
        path = self._path(data["k"])
        if not path.is_file():
            return None
        return {"path": path, "filename": data["n"], "content_type": data["t"],
                "disposition": _disposition(data["n"], data["i"])}


class S3Storage:
    """Objects in one bucket of any S3-compatible store; uploads stream as multipart."""

    def __init__(self, bucket: str, *, endpoint_url: str | None, region: str | None,
                 addressing_style: str | None):
        import boto3
        from botocore.config import Config as BotoConfig

        self.bucket = bucket
        config = BotoConfig(s3={"addressing_style": addressing_style or "auto"},
                            signature_version="s3v4", retries={"mode": "standard"})
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                                   config=config)

    def put(self, key: str, stream: BinaryIO, content_type: str) -> None:
        from boto3.s3.transfer import TransferConfig

        # Multipart in 5 MiB parts (S3's smallest), one at a time: memory stays flat whatever
        # the file's size (bench/content.py prints the web process's peak).
        self.client.upload_fileobj(stream, self.bucket, key,
                                   ExtraArgs={"ContentType": content_type},
                                   Config=TransferConfig(multipart_threshold=8 * 1024 * 1024,
                                                         multipart_chunksize=5 * 1024 * 1024,
                                                         max_concurrency=1, use_threads=False))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def read(self, key: str, limit: int) -> bytes:
        """A small object's bytes (a deck's thumbnail), at most `limit`; FileNotFoundError."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        try:
            return body.read(limit)
        finally:
            body.close()

    def keys(self, prefix: str) -> list[str]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def delete_prefix(self, prefix: str) -> None:
        keys = self.keys(prefix)
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})

    def url(self, key: str, *, filename: str, content_type: str, inline: bool) -> str:
        return self.client.generate_presigned_url("get_object", ExpiresIn=URL_TTL, Params={
            "Bucket": self.bucket, "Key": key, "ResponseContentType": content_type,
            "ResponseContentDisposition": _disposition(filename, inline)})


def from_url(url: str | None, secret: str) -> LocalStorage | S3Storage:
    """The storage `STORAGE_URL` names (see the module docstring)."""
    if not url:
        return LocalStorage(ROOT / "instance" / "files", secret)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(Path(parts.path), secret)
    if parts.scheme == "s3" and parts.hostname:
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"endpoint_url", "region", "addressing_style"}
        if unknown:
            raise ValueError(f"STORAGE_URL: unknown parameter(s) {sorted(unknown)}")
        return S3Storage(parts.netloc, endpoint_url=query.get("endpoint_url"),
                         region=query.get("region"),
                         addressing_style=query.get("addressing_style"))
    raise ValueError("STORAGE_URL must be file:///folder or s3://bucket?endpoint_url=…&region=…")
