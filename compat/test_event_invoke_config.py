"""The event invoke configuration operations through boto3: Put, Get, Update, List, Delete,
their validation and their not-found errors."""

from __future__ import annotations

import datetime

import pytest

ops = pytest.mark.operations
ARN = "arn:aws:lambda:us-east-1:000000000000:function:{}"


@ops("PutFunctionEventInvokeConfig", "GetFunctionEventInvokeConfig")
def test_put_then_get(functions, lambda_client):
    name = functions.create()["FunctionName"]
    sink = functions.create()["FunctionName"]
    put = lambda_client.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnFailure": {"Destination": ARN.format(sink)}},
    )
    assert put["FunctionArn"] == ARN.format(name) + ":$LATEST"
    assert (put["MaximumRetryAttempts"], put["MaximumEventAgeInSeconds"]) == (1, 3600)
    assert put["DestinationConfig"]["OnFailure"] == {"Destination": ARN.format(sink)}
    assert put["DestinationConfig"]["OnSuccess"] == {}
    # botocore parsed the epoch-seconds timestamp into a datetime.
    assert isinstance(put["LastModified"], datetime.datetime)
    got = lambda_client.get_function_event_invoke_config(FunctionName=name)
    for member in ("FunctionArn", "MaximumRetryAttempts", "MaximumEventAgeInSeconds",
                   "DestinationConfig", "LastModified"):
        assert got[member] == put[member], member


@ops("PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig")
def test_update_changes_only_what_it_names(functions, lambda_client):
    name = functions.create()["FunctionName"]
    sink = functions.create()["FunctionName"]
    # Update creates a configuration when there is none.
    created = lambda_client.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert created["MaximumRetryAttempts"] == 0
    assert "MaximumEventAgeInSeconds" not in created
    updated = lambda_client.update_function_event_invoke_config(
        FunctionName=name,
        MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnSuccess": {"Destination": ARN.format(sink)}},
    )
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (0, 120)
    assert updated["DestinationConfig"]["OnSuccess"] == {"Destination": ARN.format(sink)}
    # Put replaces the whole configuration.
    replaced = lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=2)
    assert replaced["MaximumRetryAttempts"] == 2
    assert "MaximumEventAgeInSeconds" not in replaced
    assert replaced["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}


@ops("ListFunctionEventInvokeConfigs")
def test_list(functions, lambda_client):
    name = functions.create()["FunctionName"]
    assert lambda_client.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"] == []
    lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    listed = lambda_client.list_function_event_invoke_configs(FunctionName=name, MaxItems=1)
    [config] = listed["FunctionEventInvokeConfigs"]
    assert config["FunctionArn"] == ARN.format(name) + ":$LATEST"
    assert config["MaximumRetryAttempts"] == 1
    assert "NextMarker" not in listed
    paginator = lambda_client.get_paginator("list_function_event_invoke_configs")
    pages = list(paginator.paginate(FunctionName=name, PaginationConfig={"PageSize": 1}))
    assert [c["FunctionArn"] for p in pages for c in p["FunctionEventInvokeConfigs"]] == [config["FunctionArn"]]
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.list_function_event_invoke_configs(FunctionName=name, MaxItems=51)


@ops("DeleteFunctionEventInvokeConfig", "GetFunctionEventInvokeConfig")
def test_delete(functions, lambda_client):
    name = functions.create()["FunctionName"]
    lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    deleted = lambda_client.delete_function_event_invoke_config(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (lambda_client.get_function_event_invoke_config,
                 lambda_client.delete_function_event_invoke_config):
        with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as raised:
            call(FunctionName=name)
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@ops("PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig",
     "GetFunctionEventInvokeConfig", "DeleteFunctionEventInvokeConfig",
     "ListFunctionEventInvokeConfigs")
def test_a_missing_function_is_not_found(lambda_client):
    missing = "missing-event-config-function"
    for call, members in (
        (lambda_client.put_function_event_invoke_config, {"MaximumRetryAttempts": 1}),
        (lambda_client.update_function_event_invoke_config, {"MaximumRetryAttempts": 1}),
        (lambda_client.get_function_event_invoke_config, {}),
        (lambda_client.delete_function_event_invoke_config, {}),
        (lambda_client.list_function_event_invoke_configs, {}),
    ):
        with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
            call(FunctionName=missing, **members)


@ops("PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig")
@pytest.mark.parametrize(
    "members",
    [
        {"MaximumRetryAttempts": 3},
        {"MaximumEventAgeInSeconds": 59},
        {"MaximumEventAgeInSeconds": 21601},
        {"DestinationConfig": {"OnFailure": {"Destination": ARN.format("no-such-function")}}},
        # Nimbus delivers results only to functions: SQS and friends are refused by name.
        {"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q"}}},
        {"DestinationConfig": {"OnSuccess": {"Destination": ARN.format("x").replace("us-east-1", "eu-west-1")}}},
    ],
    ids=["retries", "age-low", "age-high", "missing-destination", "sqs-destination", "other-region"],
)
def test_invalid_configurations_are_refused(functions, lambda_client, unchecked_client, members):
    name = functions.create()["FunctionName"]
    for call in (unchecked_client.put_function_event_invoke_config,
                 unchecked_client.update_function_event_invoke_config):
        with pytest.raises(unchecked_client.exceptions.InvalidParameterValueException) as raised:
            call(FunctionName=name, **members)
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Nothing was stored.
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_event_invoke_config(FunctionName=name)


@ops("DeleteFunction", "GetFunctionEventInvokeConfig")
def test_the_configuration_goes_with_its_function(functions, lambda_client):
    name = functions.create()["FunctionName"]
    lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    lambda_client.delete_function(FunctionName=name)
    functions.create(name=name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_event_invoke_config(FunctionName=name)
