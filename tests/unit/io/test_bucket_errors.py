"""Systemic bucket errors name their actual cause; one unreadable object names itself.

S3 answers a HEAD (kurate's first request, "does the input exist?") without an error body, so an
unknown access key, a wrong secret and a bucket the credentials may not see all came back as the
same "access denied (403: Forbidden)". kurate now asks again with a one-byte GET, whose answer
carries the store's error code, and says which it is. moto enforces IAM here (``moto_auth``).
A malformed service-account key file is named as such, not "no Google credentials found".

One object answering 403 stops the run (access denied is systemic: the README says so), with its
URI and the store's words; an S3 object in an archive storage class (GET answers 403
InvalidObjectState) is a per-object matter and is listed as corrupt with that reason.
"""

from __future__ import annotations

import json

import pytest

from kurate.errors import StorageError
from kurate.io import filelist, storage
from kurate.media.quality import check_files
from tests.storage_servers import FaultProxy, reset_clients


@pytest.fixture
def iam(moto_auth, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_auth.endpoint)
    reset_clients()
    yield moto_auth
    reset_clients()


def _keys(monkeypatch, access: str, secret: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)


def _error(op) -> str:
    with pytest.raises(StorageError) as err:
        op()
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_unknown_access_key_is_named(iam, monkeypatch) -> None:
    _keys(monkeypatch, "AKIANOTKNOWNANYWHERE", "secret")
    for op in (
        lambda: storage.exists(f"s3://{iam.allowed}/data"),  # HEAD first: no body
        lambda: storage.read_bytes(f"s3://{iam.allowed}/data/a.png"),
    ):
        msg = _error(op)
        assert "InvalidAccessKeyId" in msg and "access key id" in msg and "AWS_ACCESS_KEY_ID" in msg, msg
        assert "403: Forbidden" not in msg


def test_wrong_secret_is_named(iam, monkeypatch) -> None:
    _keys(monkeypatch, iam.reader_key[0], "not-the-secret")
    msg = _error(lambda: storage.exists(f"s3://{iam.allowed}/data"))
    assert "SignatureDoesNotMatch" in msg and "AWS_SECRET_ACCESS_KEY" in msg, msg
    assert "403: Forbidden" not in msg


def test_a_bucket_the_credentials_may_not_see_says_so(iam, monkeypatch) -> None:
    """With IAM, S3 answers 403 both for a bucket you may not read and for one that does not exist."""
    _keys(monkeypatch, *iam.reader_key)
    for bucket in (iam.denied, "kurate-no-such-bucket-x"):
        msg = _error(lambda b=bucket: storage.exists(f"s3://{b}/data"))
        assert "AccessDenied" in msg and "does not exist" in msg and "403: Forbidden" not in msg, msg


def test_a_missing_bucket_without_iam_is_no_such_bucket(s3) -> None:
    msg = _error(lambda: storage.exists("s3://kurate-no-such-bucket-y/data"))
    assert msg.startswith("s3://kurate-no-such-bucket-y: no such bucket"), msg


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", "not a valid json file"),
        (json.dumps({"type": "service_account", "client_email": "x@y"}), "missing fields"),
    ],
)
def test_a_malformed_service_account_key_is_named(tmp_path, monkeypatch, content, words) -> None:
    key = tmp_path / "key.json"
    key.write_text(content)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)  # real GCS: ADC reads the key file
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    reset_clients()
    msg = _error(lambda: storage.read_bytes("gs://some-bucket/a.png"))
    assert f"GOOGLE_APPLICATION_CREDENTIALS={key}" in msg and "not a usable service-account key" in msg
    assert words in msg.lower() and "no Google credentials found" not in msg, msg


def test_a_missing_service_account_key_file_is_named(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nowhere.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    reset_clients()
    msg = _error(lambda: storage.read_bytes("gs://some-bucket/a.png"))
    assert f"GOOGLE_APPLICATION_CREDENTIALS={tmp_path / 'nowhere.json'}: no such file" in msg, msg


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_one_object_denied_stops_the_check_naming_it(scheme, request, monkeypatch) -> None:
    helper = request.getfixturevalue("s3" if scheme == "s3" else "gcs")
    bucket = helper.bucket()
    names = [f"img{i}.png" for i in range(6)]
    for n in names:
        helper.put(bucket, f"data/{n}", b"not an image, but readable")

    def deny_one(n: int, method: str, path: str) -> str | None:
        return "403" if method == "GET" and "img3.png" in path else None

    with FaultProxy(helper.endpoint, deny_one, "s3" if scheme == "s3" else "gcs") as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL" if scheme == "s3" else "STORAGE_EMULATOR_HOST", proxy.url)
        msg = _error(
            lambda: check_files(
                filelist.FileList(f"{scheme}://{bucket}/data", names), workers=1, progress=False
            )
        )
    assert msg.startswith(f"{scheme}://{bucket}/data/img3.png: access denied"), msg
    assert ("AccessDenied" if scheme == "s3" else "403") in msg
    assert proxy.faults["403"] == 1  # not retried


def test_an_archived_s3_object_is_corrupt_with_its_reason(s3) -> None:
    bucket = s3.bucket()
    s3.put(bucket, "data/a.png", b"hot")
    s3.client.put_object(Bucket=bucket, Key="data/b.png", Body=b"cold", StorageClass="GLACIER")
    res = check_files(filelist.FileList(f"s3://{bucket}/data", ["a.png", "b.png"]), workers=1, progress=False)
    reason = dict(res.corrupt.rows())["b.png"]
    assert "archived" in reason and "InvalidObjectState" in reason, reason
    assert "a.png" in dict(res.corrupt.rows())  # not an image: corrupt for its own reason
