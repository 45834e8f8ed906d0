"""SigV4 against a Nimbus given keys: boto3 and the aws CLI with the right keys work; a wrong
secret, an unknown key, no signature and a stale one are refused with 403 in Lambda's error
shape; the presigned code download of `GetFunction` works and cannot be tampered with."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

import boto3
from conftest import REGION, Nimbus, unique_name, zip_bytes

ops = pytest.mark.operations
KEY_ID, SECRET = "AKIDNIMBUSCOMPAT", "compat-secret-key"


@pytest.fixture(scope="module")
def keyed():
    platform = Nimbus("--access-key-id", KEY_ID, "--secret-access-key", SECRET)
    yield platform
    platform.stop()


def client(endpoint: str, key_id: str = KEY_ID, secret: str = SECRET, **config):
    return boto3.session.Session().client(
        "lambda", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key_id,
        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}, **config),
    )


def refused(call) -> tuple[int, str]:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]


@ops("CreateFunction", "Invoke", "GetFunction", "ListFunctions")
def test_the_right_keys_work(keyed):
    lam = client(keyed.endpoint)
    code = zip_bytes({"app.py": "def handler(event, context):\n    return event\n"})
    name = unique_name("signed")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/compat", Code={"ZipFile": code})
    answer = lam.invoke(FunctionName=name, Payload=b'{"signed": true}')
    assert answer["Payload"].read() == b'{"signed": true}'
    assert name in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    # The code download is a presigned URL: it works alone, and not once altered.
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    with urllib.request.urlopen(location, timeout=30) as download:
        assert download.read() == code
    tampered = location.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(tampered, timeout=30)
    assert raised.value.code == 403
    lam.delete_function(FunctionName=name)


@ops("ListFunctions")
def test_bad_signatures_are_refused(keyed, monkeypatch):
    list_functions = lambda c: (lambda: c.list_functions())  # noqa: E731
    assert refused(list_functions(client(keyed.endpoint, secret="wrong"))) == (403, "InvalidSignatureException")
    assert refused(list_functions(client(keyed.endpoint, key_id="AKIDUNKNOWN"))) == (403, "UnrecognizedClientException")
    unsigned = client(keyed.endpoint, signature_version=UNSIGNED)
    assert refused(list_functions(unsigned)) == (403, "MissingAuthenticationTokenException")
    # A signature from 20 minutes ago is outside the time window.
    stale = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *args, **kwargs: stale)
    assert refused(list_functions(client(keyed.endpoint)))[0] == 403


@ops("ListFunctions")
def test_the_aws_cli_signs_with_the_keys_it_is_given(keyed):
    aws = Path(sys.executable).parent / "aws"

    def run(secret: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": secret}
        return subprocess.run([str(aws), "--endpoint-url", keyed.endpoint, "lambda", "list-functions"],
                              capture_output=True, text=True, timeout=120, env=env)

    assert run(SECRET).returncode == 0
    wrong = run("wrong")
    assert wrong.returncode != 0
    assert "InvalidSignatureException" in wrong.stderr
