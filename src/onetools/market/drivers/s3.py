"""The ``s3`` private market's IMPORT, DELETE and download, done by us on the embedded store.

Reference: onemarketapp.md §7.3.  ``boto3`` is imported lazily.  The market's ACCESS_KEY_ID,
SECRET_ACCESS_KEY, REGION and BUCKET are required; ENDPOINT (any S3-compatible store: Ceph RGW,
MinIO...), SIGNATURE_VERSION, FORCE_PATH_STYLE=YES and APP_PREFIX (default ``marketapp``) are
optional.  What differs from the original, on purpose:

* READ_LENGTH (MB, default 32) is honoured (6.0.0 read ``READx_LENGTH`` and ignored it); a file
  up to one part long is one ``put_object``, a bigger one a multipart upload in READ_LENGTH
  parts (at least 5 MiB, the S3 minimum for all parts but the last), aborted on any error so
  no half object stays;
* a missing bucket is refused with one line instead of being created: a typo in BUCKET would
  otherwise create a stray bucket (the original created it on first use);
* MD5 and SIZE are computed while uploading (a multipart ETag is not an MD5);
* the secret key never appears in a message: errors name the bucket, key and S3 error code.

Download of ``s3://BUCKET/KEY`` uses the market's credentials (boto3 signs with V4 unless
SIGNATURE_VERSION says otherwise; the original's downloader only did V2).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from onetools.errors import OnetoolsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from onetools.market.drivers.http import Imported

MIB = 1024 * 1024
DEFAULT_READ_LENGTH_MB = 32
MIN_PART = 5 * MIB
DEFAULT_PREFIX = "marketapp"
REQUIRED = ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "REGION", "BUCKET")


class S3MarketError(OnetoolsError):
    """An s3 market operation that did not happen (nothing was left behind)."""


def _value(settings: Mapping[str, str], key: str) -> str:
    return (settings.get(key) or "").strip()


def client(settings: Mapping[str, str]) -> Any:
    """A boto3 S3 client configured from the market's attributes."""
    missing = [key for key in REQUIRED if not _value(settings, key)]
    if missing:
        raise S3MarketError(f"The s3 marketplace needs {', '.join(missing)}")
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {"retries": {"max_attempts": 2}, "connect_timeout": 30}
    if _value(settings, "SIGNATURE_VERSION"):
        options["signature_version"] = _value(settings, "SIGNATURE_VERSION")
    if _value(settings, "FORCE_PATH_STYLE").upper() in ("YES", "TRUE", "1"):
        options["s3"] = {"addressing_style": "path"}
    return boto3.session.Session().client(
        "s3",
        aws_access_key_id=_value(settings, "ACCESS_KEY_ID"),
        aws_secret_access_key=_value(settings, "SECRET_ACCESS_KEY"),
        region_name=_value(settings, "REGION"),
        endpoint_url=_value(settings, "ENDPOINT") or None,
        config=Config(**options),
    )


def part_size(settings: Mapping[str, str]) -> int:
    """Bytes per multipart part (READ_LENGTH MB, at least the S3 minimum of 5 MiB)."""
    text = _value(settings, "READ_LENGTH") or str(DEFAULT_READ_LENGTH_MB)
    try:
        megabytes = float(text)
    except ValueError:
        raise S3MarketError(f"READ_LENGTH {text!r} is not a number of MB") from None
    return max(int(megabytes * MIB), MIN_PART)


def _describe(exc: BaseException) -> str:
    # ClientError carries the S3 code and message, never the credentials.
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = error.get("Code", "")
        message = error.get("Message", "")
        return f"{code} {message}".strip() or type(exc).__name__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def _check_bucket(s3: Any, bucket: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _status(exc) == 404:
            raise S3MarketError(f"Bucket {bucket} does not exist: create it first") from None
        if _status(exc) in (401, 403):
            raise S3MarketError(
                f"Access to bucket {bucket} denied: check ACCESS_KEY_ID and SECRET_ACCESS_KEY"
            ) from None
        raise S3MarketError(f"Bucket {bucket}: {_describe(exc)}") from None
    except BotoCoreError as exc:
        raise S3MarketError(f"Cannot reach the S3 endpoint: {_describe(exc)}") from None


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _status(exc) == 404:
            return False
        raise S3MarketError(f"Object {key} in {bucket}: {_describe(exc)}") from None
    return True


def import_image(
    settings: Mapping[str, str], app_id: int, image_file: Path, image_format: str
) -> Imported:
    """Upload ``image_file`` as ``<APP_PREFIX>-<app id>``; what the app records."""
    from botocore.exceptions import BotoCoreError, ClientError

    from onetools.market.drivers.http import Imported

    s3 = client(settings)
    bucket = _value(settings, "BUCKET")
    key = f"{_value(settings, 'APP_PREFIX') or DEFAULT_PREFIX}-{app_id}"
    _check_bucket(s3, bucket)
    if _exists(s3, bucket, key):
        raise S3MarketError(f"Object '{key}' already exists in bucket {bucket}")
    chunk_size = part_size(settings)
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with open(image_file, "rb") as source:
            first = source.read(chunk_size)
            digest.update(first)
            size += len(first)
            second = source.read(chunk_size)
            if not second:
                s3.put_object(Bucket=bucket, Key=key, Body=first)
            else:
                size += _multipart(s3, bucket, key, source, [first, second], digest, chunk_size)
    except OSError as exc:
        raise S3MarketError(f"Cannot read {image_file}: {exc.strerror or exc}") from None
    except (ClientError, BotoCoreError) as exc:
        problem = _describe(exc)
        raise S3MarketError(f"Upload of {key} to bucket {bucket} failed: {problem}") from None
    return Imported(f"s3://{bucket}/{key}", digest.hexdigest(), size, image_format or "raw")


def _multipart(
    s3: Any,
    bucket: str,
    key: str,
    source: Any,
    pending: list[bytes],
    digest: Any,
    chunk_size: int,
) -> int:
    """Upload ``pending`` (first chunk already hashed) and the rest of ``source`` in parts;
    the bytes added after the first chunk.  Any failure aborts the upload."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts: list[dict[str, Any]] = []
    added = 0
    try:
        number = 0
        chunk: bytes | None = pending[0]
        queued = pending[1:]
        while chunk:
            number += 1
            answer = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            chunk = queued.pop(0) if queued else source.read(chunk_size)
            if chunk:
                digest.update(chunk)
                added += len(chunk)
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        # The first error is the one to report; a failed abort adds nothing.
        with contextlib.suppress(Exception):
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    return added


def split_source(source: str) -> tuple[str, str]:
    """``s3://BUCKET/KEY`` → (bucket, key); anything else refused."""
    if not source.startswith("s3://"):
        raise S3MarketError(f"Bad formed app source {source!r} (not s3://BUCKET/KEY)")
    bucket, _, key = source[len("s3://") :].partition("/")
    if not bucket or not key:
        raise S3MarketError(f"Bad formed app source {source!r} (not s3://BUCKET/KEY)")
    return bucket, key


def delete_object(settings: Mapping[str, str], source: str) -> None:
    """Remove the app's object (it must exist, as in the original)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not source.strip():
        raise S3MarketError("Empty SOURCE.")
    bucket, key = split_source(source)
    s3 = client(settings)
    try:
        if not _exists(s3, bucket, key):
            raise S3MarketError(f"Object {key} does not exist in bucket {bucket}")
        s3.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        problem = _describe(exc)
        raise S3MarketError(f"Delete of {key} in bucket {bucket} failed: {problem}") from None


def fetch(
    settings: Mapping[str, str],
    source: str,
    part: Path,
    update: Callable[[bytes], None],
    progress: Callable[[int, int | None], None] | None = None,
    chunk_size: int = MIB,
) -> None:
    """Stream object ``source`` into ``part`` (created anew), passing every chunk to
    ``update`` (the caller's checksums); fsync'ed at the end."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_source(source)
    s3 = client(settings)
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
        total = int(answer.get("ContentLength") or 0) or None
        body = answer["Body"]
        done = 0
        with open(part, "wb") as output:
            while chunk := body.read(chunk_size):
                update(chunk)
                output.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            output.flush()
            os.fsync(output.fileno())
    except (ClientError, BotoCoreError) as exc:
        raise S3MarketError(f"Download of {source} failed: {_describe(exc)}") from None


def market_of_app(one: Any, app: Any) -> dict[str, str] | None:
    """The settings of the s3 market ``app`` (a MARKETPLACEAPP) belongs to, None when its
    market is not an s3 one: what a download of its ``s3://`` SOURCE needs."""
    from onetools.market.drivers.private import market_settings
    from onetools.one.api import MARKET
    from onetools.one.errors import NotFoundError

    market_id = app.text("MARKETPLACE_ID")
    if not market_id.lstrip("-").isdigit():
        return None
    try:
        market = one.info(MARKET, int(market_id))
    except NotFoundError:
        return None
    return market_settings(market) if market.text("MARKET_MAD") == "s3" else None


def market_for(source: str, one: Any = None) -> dict[str, str]:
    """The settings of the s3 market holding ``source``, looked up by bucket on ``one``, by
    default the connection the environment selects (ONETOOLS_HOME / ONE_XMLRPC)."""
    from onetools.market.drivers.private import market_settings
    from onetools.one.api import MARKET
    from onetools.one.connect import connect

    bucket, _key = split_source(source)
    one = one if one is not None else connect()
    for market in one.pool(MARKET):
        if market.text("MARKET_MAD") == "s3":
            settings = market_settings(market)
            if _value(settings, "BUCKET") == bucket:
                return settings
    raise S3MarketError(f"No s3 marketplace with bucket {bucket} to download {source} from")
