from pathlib import Path

import requests

from tests.servers import S3Server


def test_seaweedfs_enforces_signatures(s3_server: S3Server, tmp_path: Path) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="x/y", Body=b"hello")
    url = client.generate_presigned_url("get_object", Params={"Bucket": s3_server.bucket, "Key": "x/y"}, ExpiresIn=60)
    assert requests.get(url, timeout=5).content == b"hello"
    assert requests.get(url.replace("Signature=", "Signature=0"), timeout=5).status_code == 403


def test_nats_server_starts(nats_url: str) -> None:
    assert nats_url.startswith("nats://127.0.0.1:")
