"""The control API through boto3: create, read, list (the paginator), update, delete, the
waiters, and the modelled exceptions boto3 raises for Nimbus' errors."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request

import pytest
from botocore.exceptions import ClientError, WaiterError

from conftest import ECHO_HANDLER, Functions, client_for, unique_name, zip_bytes

ops = pytest.mark.operations
ROLE = "arn:aws:iam::000000000000:role/compat"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@ops("CreateFunction")
def test_create_function_answers_a_function_configuration(functions):
    code = zip_bytes({"app.py": ECHO_HANDLER})
    name = unique_name()
    created = functions.create(
        name=name,
        zip_file=code,
        Description="made by boto3",
        Timeout=7,
        MemorySize=256,
        Environment={"Variables": {"GREETING": "hi"}},
        Architectures=["x86_64"],
        PackageType="Zip",
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert created["FunctionName"] == name
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert created["Runtime"] == "python3.12"
    assert created["Handler"] == "app.handler"
    assert created["Role"] == ROLE
    assert created["Description"] == "made by boto3"
    assert (created["Timeout"], created["MemorySize"]) == (7, 256)
    assert created["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert created["CodeSha256"] == sha256_b64(code)
    assert created["CodeSize"] == len(code)
    assert created["Version"] == "$LATEST"
    assert created["State"] == "Active"
    assert created["LastUpdateStatus"] == "Successful"
    assert created["PackageType"] == "Zip"
    assert created["Architectures"] == ["x86_64"]
    assert created["RevisionId"]
    # A Lambda timestamp (botocore leaves the model's string as it came).
    assert created["LastModified"].endswith("+0000")


@ops("CreateFunction")
def test_a_second_create_is_a_conflict(functions, lambda_client):
    name = functions.create()["FunctionName"]
    with pytest.raises(lambda_client.exceptions.ResourceConflictException) as raised:
        functions.create(name=name)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


@ops("CreateFunction")
@pytest.mark.parametrize(
    "members, why",
    [
        ({"Runtime": "cobol85"}, "unknown runtime"),
        ({"Timeout": 901}, "timeout over 900 s"),
        ({"MemorySize": 64}, "memory under 128 MB"),
        ({"Role": "not-a-role"}, "role that is no IAM role ARN"),
        ({"Architectures": ["arm64"]}, "Nimbus runs x86_64 only"),
        ({"Environment": {"Variables": {"AWS_REGION": "x"}}}, "reserved variable"),
    ],
)
def test_invalid_parameters_are_refused(unchecked_client, members, why):
    made = Functions(unchecked_client)
    with pytest.raises(unchecked_client.exceptions.InvalidParameterValueException) as raised:
        made.create(**members)
    made.cleanup()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, why


@ops("CreateFunction")
def test_code_from_s3_is_refused(functions, lambda_client):
    """A departure: Nimbus stores code itself and takes it only as ZipFile."""
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as raised:
        lambda_client.create_function(
            FunctionName=unique_name(),
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"S3Bucket": "bucket", "S3Key": "code.zip"},
        )
    assert "ZipFile" in raised.value.response["Error"]["Message"]


@ops("CreateFunction", "UpdateFunctionCode")
@pytest.mark.parametrize(
    "code",
    [b"this is not a zip", zip_bytes({"app.py": "x = 1", "../escape.py": "x = 1"})],
    ids=["garbage", "escaping-entry"],
)
def test_invalid_zips_are_invalid_parameters(functions, lambda_client, code):
    """The model lists no InvalidZipFileException for CreateFunction or UpdateFunctionCode
    (it is an Invoke error); Lambda answers a zip it cannot unpack with
    InvalidParameterValueException."""
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as raised:
        functions.create(zip_file=code)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    name = functions.create()["FunctionName"]
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.update_function_code(FunctionName=name, ZipFile=code)


@ops("GetFunction")
def test_get_function_points_at_the_code(functions, lambda_client):
    code = zip_bytes({"app.py": ECHO_HANDLER})
    created = functions.create(zip_file=code)
    name = created["FunctionName"]
    got = lambda_client.get_function(FunctionName=name)
    configuration = got["Configuration"]
    for member in ("FunctionName", "FunctionArn", "CodeSha256", "RevisionId", "Runtime"):
        assert configuration[member] == created[member], member
    assert got["Code"]["RepositoryType"] == "S3"
    with urllib.request.urlopen(got["Code"]["Location"], timeout=30) as download:
        assert download.read() == code
    # The same function by full ARN, partial ARN and with the one qualifier that exists.
    arn = created["FunctionArn"]
    for reference in (arn, f"000000000000:function:{name}", f"{name}:$LATEST"):
        assert lambda_client.get_function(FunctionName=reference)["Configuration"]["FunctionName"] == name
    assert lambda_client.get_function(FunctionName=name, Qualifier="$LATEST")["Configuration"]["Version"] == "$LATEST"


@ops("GetFunction", "GetFunctionConfiguration", "DeleteFunction", "UpdateFunctionCode",
     "UpdateFunctionConfiguration")
def test_a_missing_function_is_resource_not_found(lambda_client):
    missing = unique_name("missing")
    calls = [
        lambda: lambda_client.get_function(FunctionName=missing),
        lambda: lambda_client.get_function_configuration(FunctionName=missing),
        lambda: lambda_client.delete_function(FunctionName=missing),
        lambda: lambda_client.update_function_code(FunctionName=missing, ZipFile=zip_bytes({"a.py": ""})),
        lambda: lambda_client.update_function_configuration(FunctionName=missing, Timeout=5),
    ]
    for call in calls:
        with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as raised:
            call()
        error = raised.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert missing in error["Error"]["Message"]


@ops("GetFunction")
def test_an_unpublished_qualifier_is_not_found(functions, lambda_client):
    name = functions.create()["FunctionName"]
    for call in (
        lambda: lambda_client.get_function(FunctionName=name, Qualifier="1"),
        lambda: lambda_client.get_function(FunctionName=f"{name}:prod"),
    ):
        with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
            call()


@ops("GetFunctionConfiguration")
def test_get_function_configuration(functions, lambda_client):
    created = functions.create(Environment={"Variables": {"GREETING": "hello"}})
    got = lambda_client.get_function_configuration(FunctionName=created["FunctionName"])
    for member in ("FunctionName", "FunctionArn", "CodeSha256", "CodeSize", "RevisionId",
                   "Environment", "Handler", "Runtime", "Timeout", "MemorySize", "State",
                   "LastUpdateStatus", "PackageType"):
        assert got[member] == created[member], member


@ops("ListFunctions")
def test_list_functions_pages_through_the_paginator(functions, lambda_client):
    prefix = unique_name("page")
    names = sorted(functions.create(name=f"{prefix}-{i}")["FunctionName"] for i in range(5))
    paginator = lambda_client.get_paginator("list_functions")

    # PageSize: several pages, each within it, every function exactly once.
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) >= 3
    assert all(len(page["Functions"]) <= 2 for page in pages)
    assert all("NextMarker" in page for page in pages[:-1])
    seen = [f["FunctionName"] for page in pages for f in page["Functions"]]
    assert len(seen) == len(set(seen))
    assert [n for n in seen if n.startswith(prefix)] == names

    # MaxItems: boto3 stops after that many and hands back a token to resume from.
    first = paginator.paginate(PaginationConfig={"MaxItems": 3, "PageSize": 2}).build_full_result()
    assert len(first["Functions"]) == 3
    assert first["NextToken"]
    rest = paginator.paginate(
        PaginationConfig={"PageSize": 2, "StartingToken": first["NextToken"]}
    ).build_full_result()
    together = [f["FunctionName"] for f in first["Functions"] + rest["Functions"]]
    assert together == seen

    # The plain call with MaxItems, the marker by hand.
    plain = lambda_client.list_functions(MaxItems=1)
    assert len(plain["Functions"]) == 1 and plain["NextMarker"]
    after = lambda_client.list_functions(Marker=plain["NextMarker"], MaxItems=1)
    assert after["Functions"][0]["FunctionName"] == seen[1]


@ops("ListFunctions")
def test_list_functions_refuses_a_bad_max_items(unchecked_client):
    with pytest.raises(unchecked_client.exceptions.InvalidParameterValueException):
        unchecked_client.list_functions(MaxItems=0)


@ops("UpdateFunctionCode")
def test_update_function_code(functions, lambda_client):
    created = functions.create()
    name = created["FunctionName"]
    new_code = zip_bytes({"app.py": "def handler(event, context):\n    return 'v2'\n"})
    updated = lambda_client.update_function_code(FunctionName=name, ZipFile=new_code)
    assert updated["CodeSha256"] == sha256_b64(new_code)
    assert updated["CodeSize"] == len(new_code)
    assert updated["RevisionId"] != created["RevisionId"]
    lambda_client.get_waiter("function_updated").wait(FunctionName=name)
    answer = lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert answer["Payload"].read() == b'"v2"'

    # DryRun: what the update would give, nothing changes.
    other = zip_bytes({"app.py": "def handler(event, context):\n    return 'v3'\n"})
    preview = lambda_client.update_function_code(FunctionName=name, ZipFile=other, DryRun=True)
    assert preview["CodeSha256"] == sha256_b64(other)
    current = lambda_client.get_function_configuration(FunctionName=name)
    assert current["CodeSha256"] == sha256_b64(new_code)

    # A stale RevisionId is PreconditionFailedException, and nothing is written.
    with pytest.raises(lambda_client.exceptions.PreconditionFailedException) as raised:
        lambda_client.update_function_code(
            FunctionName=name, ZipFile=other, RevisionId=created["RevisionId"]
        )
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert lambda_client.get_function_configuration(FunctionName=name)["CodeSha256"] == sha256_b64(new_code)


@ops("UpdateFunctionConfiguration")
def test_update_function_configuration(functions, lambda_client):
    created = functions.create()
    name = created["FunctionName"]
    updated = lambda_client.update_function_configuration(
        FunctionName=name,
        Description="changed",
        Timeout=11,
        MemorySize=512,
        Environment={"Variables": {"GREETING": "updated"}},
        RevisionId=created["RevisionId"],
    )
    assert (updated["Description"], updated["Timeout"], updated["MemorySize"]) == ("changed", 11, 512)
    assert updated["Environment"] == {"Variables": {"GREETING": "updated"}}
    assert updated["Handler"] == created["Handler"]
    assert updated["RevisionId"] != created["RevisionId"]
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    answer = lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(answer["Payload"].read())["greeting"] == "updated"

    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.update_function_configuration(FunctionName=name, Timeout=901)
    with pytest.raises(lambda_client.exceptions.PreconditionFailedException):
        lambda_client.update_function_configuration(
            FunctionName=name, Timeout=5, RevisionId=created["RevisionId"]
        )


@ops("DeleteFunction")
def test_delete_function(functions, lambda_client):
    name = functions.create()["FunctionName"]
    answer = lambda_client.delete_function(FunctionName=name)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.delete_function(FunctionName=name)


@ops("GetFunction", "GetFunctionConfiguration", "CreateFunction", "UpdateFunctionConfiguration")
def test_waiters(functions, lambda_client, nimbus):
    name = unique_name("waiter")
    # FunctionExists gives up on a function that never comes.
    impatient = lambda_client.get_waiter("function_exists")
    with pytest.raises(WaiterError):
        impatient.wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 2})
    functions.create(name=name)
    lambda_client.get_waiter("function_exists").wait(FunctionName=name)
    lambda_client.get_waiter("function_active").wait(FunctionName=name)
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)
    lambda_client.update_function_configuration(FunctionName=name, Description="waited")
    lambda_client.get_waiter("function_updated").wait(FunctionName=name)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)


@ops("ListFunctions")
def test_unsigned_requests_are_accepted(nimbus):
    """A Nimbus given no keys checks no signatures (and says so when it starts): an unsigned
    client works. test_auth.py covers a Nimbus given keys."""
    from botocore import UNSIGNED

    client = client_for(nimbus.endpoint, signature_version=UNSIGNED)
    assert "Functions" in client.list_functions(MaxItems=1)


def test_unknown_operations_are_lambda_shaped_errors(lambda_client):
    """An operation Nimbus does not serve is a 404 in Lambda's error shape, which boto3 turns
    into a ClientError with the error code, not a parse failure."""
    with pytest.raises(ClientError) as raised:
        lambda_client.list_layers()
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error["Error"]["Code"] == "UnknownOperationException"
