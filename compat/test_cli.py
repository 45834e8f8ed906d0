"""The aws CLI against Nimbus: v1 from PyPI (in this virtualenv) and v2 (Debian's package;
PyPI has no v2), with dummy credentials and the region from the environment."""

from __future__ import annotations

import base64
import json

import pytest

from conftest import ECHO_HANDLER, unique_name, zip_bytes

ops = pytest.mark.operations
ROLE = "arn:aws:iam::000000000000:role/compat"


@pytest.fixture
def cli_function(lambda_client, tmp_path):
    """A name, a zip on disk to deploy under it, and the function deleted afterwards."""
    name = unique_name("cli")
    code = tmp_path / "code.zip"
    code.write_bytes(zip_bytes({"app.py": ECHO_HANDLER}))
    yield name, code
    try:
        lambda_client.delete_function(FunctionName=name)
    except lambda_client.exceptions.ResourceNotFoundException:
        pass


def create_args(name, code):
    return ("create-function", "--function-name", name, "--runtime", "python3.12",
            "--handler", "app.handler", "--role", ROLE, "--zip-file", f"fileb://{code}")


@ops("CreateFunction", "GetFunction", "GetFunctionConfiguration", "ListFunctions",
     "UpdateFunctionConfiguration", "UpdateFunctionCode", "DeleteFunction")
def test_v1_control_commands(aws_v1, cli_function, functions):
    name, code = cli_function
    functions.create()  # so that there are at least two to page through
    created = aws_v1.json(*create_args(name, code))
    assert created["FunctionName"] == name and created["State"] == "Active"
    aws_v1("wait", "function-active", "--function-name", name)
    assert aws_v1.json("get-function", "--function-name", name)["Configuration"]["FunctionName"] == name
    updated = aws_v1.json("update-function-configuration", "--function-name", name,
                          "--environment", "Variables={GREETING=cli}", "--timeout", "9")
    assert updated["Environment"]["Variables"] == {"GREETING": "cli"} and updated["Timeout"] == 9
    aws_v1("wait", "function-updated", "--function-name", name)
    assert aws_v1.json("get-function-configuration", "--function-name", name)["Timeout"] == 9
    recoded = aws_v1.json("update-function-code", "--function-name", name, "--zip-file", f"fileb://{code}")
    assert recoded["CodeSha256"] == created["CodeSha256"]
    # --max-items pages on the client side and prints the token to resume from.
    page = aws_v1.json("list-functions", "--max-items", "1")
    assert len(page["Functions"]) == 1 and page["NextToken"]
    everything = aws_v1.json("list-functions")
    assert name in [f["FunctionName"] for f in everything["Functions"]]
    aws_v1("delete-function", "--function-name", name)
    missing = aws_v1("get-function", "--function-name", name, check=False)
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr


@ops("Invoke")
def test_v1_invoke(aws_v1, cli_function, nimbus):
    name, code = cli_function
    aws_v1(*create_args(name, code))
    # v1 sends --payload as it is (v2 needs --cli-binary-format raw-in-base64-out for that).
    answer = aws_v1.json("invoke", "--function-name", name, "--payload", '{"name": "v1"}',
                         "--log-type", "Tail", "out.json")
    assert answer["StatusCode"] == 200 and answer["ExecutedVersion"] == "$LATEST"
    assert "START RequestId" in base64.b64decode(answer["LogResult"]).decode()
    assert json.loads((aws_v1.cwd / "out.json").read_text())["event"] == {"name": "v1"}
    event = aws_v1.json("invoke", "--function-name", name, "--invocation-type", "Event",
                        "--payload", '{"name": "later"}', "event.json")
    assert event == {"StatusCode": 202}
    assert (aws_v1.cwd / "event.json").read_bytes() == b""


@ops("PutFunctionEventInvokeConfig", "GetFunctionEventInvokeConfig",
     "UpdateFunctionEventInvokeConfig", "ListFunctionEventInvokeConfigs",
     "DeleteFunctionEventInvokeConfig")
def test_v1_event_invoke_config_commands(aws_v1, cli_function):
    name, code = cli_function
    aws_v1(*create_args(name, code))
    put = aws_v1.json("put-function-event-invoke-config", "--function-name", name,
                      "--maximum-retry-attempts", "1", "--maximum-event-age-in-seconds", "3600")
    assert (put["MaximumRetryAttempts"], put["MaximumEventAgeInSeconds"]) == (1, 3600)
    updated = aws_v1.json("update-function-event-invoke-config", "--function-name", name,
                          "--maximum-retry-attempts", "0")
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (0, 3600)
    got = aws_v1.json("get-function-event-invoke-config", "--function-name", name)
    assert got["MaximumRetryAttempts"] == 0
    listed = aws_v1.json("list-function-event-invoke-configs", "--function-name", name)
    assert len(listed["FunctionEventInvokeConfigs"]) == 1
    aws_v1("delete-function-event-invoke-config", "--function-name", name)
    gone = aws_v1("get-function-event-invoke-config", "--function-name", name, check=False)
    assert gone.returncode != 0 and "ResourceNotFoundException" in gone.stderr


@ops("Invoke")
def test_v2_event_invoke_prints_status_202(aws_v2, cli_function, nimbus):
    name, code = cli_function
    aws_v2(*create_args(name, code))
    aws_v2("wait", "function-active-v2", "--function-name", name)
    done = aws_v2("invoke", "--function-name", name, "--invocation-type", "Event",
                  "--cli-binary-format", "raw-in-base64-out", "--payload", '{"name": "later"}',
                  "out.json")
    assert json.loads(done.stdout) == {"StatusCode": 202}
    assert (aws_v2.cwd / "out.json").read_bytes() == b""


@ops("Invoke")
def test_v2_request_response_invoke(aws_v2, cli_function):
    name, code = cli_function
    aws_v2(*create_args(name, code))
    answer = aws_v2.json("invoke", "--function-name", name, "--cli-binary-format",
                         "raw-in-base64-out", "--payload", '{"name": "v2"}', "--log-type", "Tail",
                         "--client-context", base64.b64encode(b'{"custom": {"via": "v2"}}').decode(),
                         "sync.json")
    assert answer["StatusCode"] == 200
    assert "END RequestId" in base64.b64decode(answer["LogResult"]).decode()
    result = json.loads((aws_v2.cwd / "sync.json").read_text())
    assert result["event"] == {"name": "v2"}
    assert result["clientContext"]["custom"] == {"via": "v2"}
    failed = aws_v2.json("invoke", "--function-name", name, "--cli-binary-format",
                         "raw-in-base64-out", "--payload", '{"fail": "cli"}', "failed.json")
    assert failed["FunctionError"] == "Unhandled"
    dry = aws_v2.json("invoke", "--function-name", name, "--invocation-type", "DryRun", "dry.json")
    assert dry["StatusCode"] == 204
