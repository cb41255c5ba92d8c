"""Does an S3 store verify ``x-amz-checksum-sha1`` itself? Found out once, before serving.

Store-verified uploads (see :mod:`.s3`) hand clients URLs straight to content keys, so the
store alone keeps "nothing is readable under a sha1 key unless its bytes hash to it". The
probe asks the store, through presigned URLs exactly like the clients' and PUTs like
theirs, to show that it

1. gets URLs that bind both the checksum and the size (the SDK signs both headers);
2. takes the right bytes (200), and HEAD reports their checksum;
3. refuses other bytes of the same length onto that object with a digest error (400
   ``BadDigest`` or the like, not any 4xx), and the object is left as it was;
4. refuses the right bytes through a URL signed for another size, storing nothing;
5. does not let a PUT turned into a copy (an added ``x-amz-copy-source``) bring an
   object with other bytes under the URL's key.

Any other outcome means the store is not trusted to do it: uploads to it are staged and
read back. The probe writes only two scratch objects, deleted at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

CHECKSUM_HEADER = "x-amz-checksum-sha1"
DIGEST_ERRORS = frozenset({"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest",
                           "InvalidChecksum"})
TIMEOUT_SEC = 30.0
BODY = b"kachery-resource checksum probe\n"
OTHER = b"kachery-resource checksum PROBE\n"  # same length, other sha1

Presign = Callable[[str, str, int], tuple[str, dict[str, str]]]
"""(key, sha1, size) → a presigned PUT URL and the headers to send with it."""


def put_like_a_client(url: str, headers: dict[str, str], body: bytes) -> str:
    """PUT ``body`` to a presigned URL as a client does; the status, and the S3 error code
    if any (``"200"``, ``"400 BadDigest"``)."""
    context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
    request = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SEC, context=context) as response:
            return str(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read(8192).decode("utf-8", "replace")
        code = re.search(r"<Code>([^<]{1,100})</Code>", text)
        return f"{exc.code} {code.group(1)}" if code else str(exc.code)


@dataclass
class ChecksumProbe:
    """One probe of ``bucket`` under ``scratch``: :meth:`run` in a worker thread."""

    bucket: str
    presign: Presign  # the storage's own, so the probe's URLs are the clients' URLs
    client: Any  # boto3 S3 client for HEAD and DELETE
    scratch: str

    def run(self) -> str | None:
        """None if the store did all the module docstring lists, else what it did instead."""
        name = f"{self.scratch.rstrip('/')}/checksum-probe-{secrets.token_hex(8)}"
        target, other = name + "-a", name + "-b"
        try:
            return self._steps(target, other)
        finally:
            for key in (target, other):
                with contextlib.suppress(Exception):
                    self.client.delete_object(Bucket=self.bucket, Key=key)

    def _steps(self, target: str, other: str) -> str | None:
        right, wrong = hashlib.sha1(BODY).hexdigest(), hashlib.sha1(OTHER).hexdigest()
        url, headers = self.presign(target, right, len(BODY))
        signed = re.search(r"X-Amz-SignedHeaders=([^&]*)", url)
        signed_headers = urllib.parse.unquote(signed.group(1)).split(";") if signed else []
        if not {"content-length", CHECKSUM_HEADER} <= set(signed_headers):
            return f"presigned URLs sign {signed_headers or 'no headers'}, not the size and checksum"
        answer = put_like_a_client(url, headers, BODY)
        if answer != "200":
            return f"a PUT with the right checksum was answered {answer}"
        before = self._head(target)
        if before is None or before.get("ChecksumSHA1") != headers[CHECKSUM_HEADER]:
            return "HEAD does not report the checksum of an object PUT with one"
        answer = put_like_a_client(url, headers, OTHER)
        if answer.split()[-1] not in DIGEST_ERRORS:
            return f"a PUT of other bytes was answered {answer}, not a digest error"
        after = self._head(target)
        if after is None or after.get("ETag") != before.get("ETag"):
            return "a PUT refused for its bytes changed the object"
        answer = put_like_a_client(*self.presign(other, right, len(BODY) - 1), BODY)
        if int(answer.split()[0]) < 400 or self._head(other) is not None:
            return f"a PUT of more bytes than signed was answered {answer}"
        url, headers = self.presign(other, wrong, len(OTHER))
        copy = {**headers, "x-amz-copy-source": f"/{self.bucket}/{target}"}
        answer = put_like_a_client(url, copy, OTHER)
        stored = self._head(other)  # refused, or the body stored as a PUT: both are fine
        if stored is not None and stored.get("ChecksumSHA1") != headers[CHECKSUM_HEADER]:
            return f"a PUT turned into a copy was answered {answer} and copied other bytes"
        return None

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key,
                                                ChecksumMode="ENABLED"))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
