"""Provisioned concurrency through boto3: a version (or alias) kept initialised ahead of
traffic, so that its first invocation is warm."""

from __future__ import annotations

import base64
import time

import pytest

ops = pytest.mark.operations


def wait_ready(lambda_client, name: str, qualifier: str, timeout: float = 60.0) -> dict:
    """Polls GetProvisionedConcurrencyConfig until its status is READY (or fails)."""
    deadline = time.monotonic() + timeout
    while True:
        got = lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        if got["Status"] == "READY":
            return got
        assert got["Status"] != "FAILED", got
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


@ops("PutProvisionedConcurrencyConfig", "GetProvisionedConcurrencyConfig",
     "ListProvisionedConcurrencyConfigs", "DeleteProvisionedConcurrencyConfig")
def test_provisioned_versions_start_warm(functions, lambda_client):
    name = functions.create()["FunctionName"]
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    put = lambda_client.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=1
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["RequestedProvisionedConcurrentExecutions"] == 1
    ready = wait_ready(lambda_client, name, version)
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 1

    # The instance was initialised ahead of the call: no Init Duration in its REPORT.
    answer = lambda_client.invoke(FunctionName=name, Qualifier=version, Payload=b"{}", LogType="Tail")
    assert answer["ExecutedVersion"] == version
    log = base64.b64decode(answer["LogResult"]).decode()
    assert "REPORT RequestId" in log and "Init Duration" not in log, log

    listed = lambda_client.list_provisioned_concurrency_configs(FunctionName=name)
    configs = listed["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in configs] == [version]
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    lambda_client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    with pytest.raises(lambda_client.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
