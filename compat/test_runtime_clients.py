"""Real runtime interface clients as `provided.al2023` functions, invoked through boto3:
AWS' Python client `awslambdaric`, vendored into the zip from this virtualenv, AWS' Node.js
client `aws-lambda-ric` (built by scripts/compat), and the Rust example built with the
`lambda_runtime` crate."""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
from pathlib import Path

import pytest

from conftest import NIMBUS_BIN, Functions, zip_bytes

ops = pytest.mark.operations

BOOTSTRAP = """#!/bin/sh
# This function is its own runtime interface client: awslambdaric, vendored into the zip.
export PYTHONPATH="$LAMBDA_TASK_ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m awslambdaric handler.fn
"""

HANDLER = """
import os

import awslambdaric


def fn(event, context):
    if event.get("fail"):
        raise KeyError("asked to fail")
    print("awslambdaric handler for", context.aws_request_id)
    return {
        "event": event,
        "requestId": context.aws_request_id,
        "functionArn": context.invoked_function_arn,
        "remainingMs": context.get_remaining_time_in_millis(),
        "ric": os.path.dirname(awslambdaric.__file__),
        "taskRoot": os.environ["LAMBDA_TASK_ROOT"],
    }
"""

# awslambdaric and what it imports at run time (its native module is built for this
# interpreter, which is the `python3` the bootstrap finds on PATH).
VENDORED = ("awslambdaric", "simplejson", "snapshot-restore-py")


def vendored_files() -> dict[str, bytes]:
    files = {}
    for distribution in VENDORED:
        try:
            dist = importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{distribution} is not installed: pip install -r compat/requirements.txt")
        for path in dist.files or ():
            parts = Path(path).parts
            if parts[0] == ".." or parts[0].endswith(".dist-info") or "__pycache__" in parts:
                continue
            files[Path(path).as_posix()] = Path(dist.locate_file(path)).read_bytes()
    return files


@pytest.fixture(scope="module")
def ric_function(lambda_client):
    made = Functions(lambda_client)
    code = zip_bytes({**vendored_files(), "handler.py": HANDLER, "bootstrap": BOOTSTRAP},
                     executable=("bootstrap",))
    name = made.create(zip_file=code, runtime="provided.al2023", handler="handler.fn")["FunctionName"]
    yield name
    made.cleanup()


@ops("Invoke", "CreateFunction")
def test_awslambdaric_answers_an_invoke(ric_function, lambda_client):
    answer = lambda_client.invoke(
        FunctionName=ric_function, LogType="Tail", Payload=json.dumps({"name": "ric"}).encode()
    )
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    result = json.loads(answer["Payload"].read())
    assert result["event"] == {"name": "ric"}
    assert result["requestId"] == answer["ResponseMetadata"]["RequestId"]
    assert result["functionArn"].endswith(f":function:{ric_function}")
    assert result["remainingMs"] > 0
    # The vendored copy ran, not this virtualenv's.
    assert Path(result["ric"]).parent == Path(result["taskRoot"])
    log = base64.b64decode(answer["LogResult"]).decode()
    assert "awslambdaric handler for " + result["requestId"] in log


@ops("Invoke")
def test_awslambdaric_reports_a_function_error(ric_function, lambda_client):
    answer = lambda_client.invoke(FunctionName=ric_function, Payload=b'{"fail": true}')
    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "KeyError"
    assert error["errorMessage"] == "'asked to fail'"
    assert isinstance(error["stackTrace"], list)
    # The instance serves again after the error.
    again = lambda_client.invoke(FunctionName=ric_function, Payload=b"{}")
    assert "FunctionError" not in again


@ops("Invoke")
def test_awslambdaric_runs_events(ric_function, lambda_client, nimbus):
    answer = lambda_client.invoke(FunctionName=ric_function, InvocationType="Event", Payload=b'{"n": 1}')
    assert answer["StatusCode"] == 202
    nimbus.wait_for_invocation(answer["ResponseMetadata"]["RequestId"], lambda r: r["status"] == "succeeded")


def rust_example() -> Path:
    """The example's `bootstrap`, built next to the `nimbus` under test
    (`cargo build -p nimbus-example-rust-hello`), or `$NIMBUS_RUST_EXAMPLE`."""
    return Path(os.environ.get("NIMBUS_RUST_EXAMPLE", NIMBUS_BIN.parent / "bootstrap"))


@ops("Invoke", "CreateFunction")
def test_the_rust_lambda_runtime_example(functions, lambda_client):
    binary = rust_example()
    if not binary.exists():
        pytest.skip(f"{binary} is not built: cargo build -p nimbus-example-rust-hello")
    code = zip_bytes({"bootstrap": binary.read_bytes()}, executable=("bootstrap",))
    name = functions.create(zip_file=code, runtime="provided.al2023", handler=None)["FunctionName"]
    answer = lambda_client.invoke(FunctionName=name, Payload=b'{"name": "boto3"}')
    assert answer["StatusCode"] == 200
    result = json.loads(answer["Payload"].read())
    assert result["greeting"] == "Hello, boto3!"
    assert result["requestId"] == answer["ResponseMetadata"]["RequestId"]
    failed = lambda_client.invoke(FunctionName=name, Payload=b'{"fail": true}')
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorMessage"] == "asked to fail"
    assert error["errorType"]


NODE_HANDLER = """
export const handler = async (event, context) => {
  if (event.fail) throw new TypeError("asked to fail");
  console.log("aws-lambda-ric handler for", context.awsRequestId);
  return { event, requestId: context.awsRequestId, functionName: context.functionName };
};
"""

NODE_BOOTSTRAP = """#!/bin/sh
# This function is its own runtime interface client: aws-lambda-ric, vendored into the zip.
exec node node_modules/aws-lambda-ric/bin/index.mjs index.handler
"""


@ops("Invoke", "CreateFunction")
def test_node_aws_lambda_ric(functions, lambda_client):
    ric = Path(os.environ.get("NIMBUS_NODE_RIC", "/nonexistent"))
    if not (ric / "dist" / "rapid-client.node").exists():
        pytest.skip(
            "aws-lambda-ric is not built: scripts/compat builds it with npm (it compiles native "
            "code and needs cmake and a C++ toolchain) and sets NIMBUS_NODE_RIC"
        )
    # What the client needs at run time: its package, its build and its launcher.
    shipped = [ric / "package.json", ric / "bin" / "index.mjs", *sorted((ric / "dist").iterdir())]
    files = {f"node_modules/aws-lambda-ric/{p.relative_to(ric).as_posix()}": p.read_bytes() for p in shipped}
    files.update({"index.mjs": NODE_HANDLER, "bootstrap": NODE_BOOTSTRAP})
    code = zip_bytes(files, executable=("bootstrap",))
    name = functions.create(zip_file=code, runtime="provided.al2023", handler="index.handler")["FunctionName"]
    answer = lambda_client.invoke(FunctionName=name, LogType="Tail", Payload=b'{"name": "node"}')
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    result = json.loads(answer["Payload"].read())
    assert result == {"event": {"name": "node"}, "requestId": answer["ResponseMetadata"]["RequestId"],
                      "functionName": name}
    assert "aws-lambda-ric handler for " + result["requestId"] in base64.b64decode(answer["LogResult"]).decode()
    failed = lambda_client.invoke(FunctionName=name, Payload=b'{"fail": true}')
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("TypeError", "asked to fail")
