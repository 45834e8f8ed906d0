"""Versions, aliases, reserved concurrency, account settings and tags through boto3, and
`Qualifier` on `Invoke`, `GetFunction` and the event invoke configuration."""

from __future__ import annotations

import json

import pytest

from conftest import ECHO_HANDLER, unique_name, zip_bytes

ops = pytest.mark.operations


def returning(value: str) -> bytes:
    return zip_bytes({"app.py": f"def handler(event, context):\n    return {value!r}\n"})


@ops("PublishVersion", "ListVersionsByFunction", "Invoke", "GetFunction")
def test_versions_keep_their_code(functions, lambda_client):
    name = functions.create(zip_file=returning("one"))["FunctionName"]
    published = lambda_client.publish_version(FunctionName=name, Description="first")
    assert published["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert published["Version"] == "1"
    assert published["FunctionArn"].endswith(f":function:{name}:1")
    assert published["Description"] == "first"
    lambda_client.get_waiter("published_version_active").wait(FunctionName=name, Qualifier="1")

    lambda_client.update_function_code(FunctionName=name, ZipFile=returning("two"))
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "2"

    versions = lambda_client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    paginator = lambda_client.get_paginator("list_versions_by_function")
    paged = [v["Version"] for p in paginator.paginate(FunctionName=name, PaginationConfig={"PageSize": 1})
             for v in p["Versions"]]
    assert paged == ["$LATEST", "1", "2"]

    lambda_client.update_function_code(FunctionName=name, ZipFile=returning("latest"))
    for qualifier, expected in (("1", "one"), ("2", "two"), ("$LATEST", "latest")):
        answer = lambda_client.invoke(FunctionName=name, Qualifier=qualifier, Payload=b"{}")
        assert answer["ExecutedVersion"] == qualifier
        assert json.loads(answer["Payload"].read()) == expected
    assert lambda_client.get_function(FunctionName=name, Qualifier="1")["Configuration"]["Version"] == "1"
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name, Qualifier="7")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.invoke(FunctionName=f"{name}:7", Payload=b"{}")


@ops("PublishVersion")
def test_publishing_unchanged_code_twice_returns_the_same_version(functions, lambda_client):
    name = functions.create()["FunctionName"]
    first = lambda_client.publish_version(FunctionName=name)
    again = lambda_client.publish_version(FunctionName=name)
    assert again["Version"] == first["Version"]
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.publish_version(FunctionName=unique_name("missing"))


@ops("CreateAlias", "GetAlias", "UpdateAlias", "ListAliases", "DeleteAlias", "Invoke")
def test_aliases_route_invocations(functions, lambda_client):
    name = functions.create(zip_file=returning("one"))["FunctionName"]
    one = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.update_function_code(FunctionName=name, ZipFile=returning("two"))
    two = lambda_client.publish_version(FunctionName=name)["Version"]

    created = lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion=one)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"].endswith(f":function:{name}:live")
    assert (created["Name"], created["FunctionVersion"]) == ("live", one)
    assert created["RevisionId"]
    with pytest.raises(lambda_client.exceptions.ResourceConflictException):
        lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion=one)

    answer = lambda_client.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
    assert (answer["ExecutedVersion"], json.loads(answer["Payload"].read())) == (one, "one")

    # Weighted routing: half to the other version; both run, and each says which ran.
    updated = lambda_client.update_alias(
        FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {two: 0.5}}
    )
    assert updated["RoutingConfig"] == {"AdditionalVersionWeights": {two: 0.5}}
    assert updated["RevisionId"] != created["RevisionId"]
    got = lambda_client.get_alias(FunctionName=name, Name="live")
    assert got["RoutingConfig"] == updated["RoutingConfig"] and got["FunctionVersion"] == one
    ran = {}
    for _ in range(60):
        answer = lambda_client.invoke(FunctionName=f"{name}:live", Payload=b"{}")
        ran[answer["ExecutedVersion"]] = json.loads(answer["Payload"].read())
        if len(ran) == 2:
            break
    assert ran == {one: "one", two: "two"}, "60 invocations at 50% never reached both versions"

    lambda_client.create_alias(FunctionName=name, Name="beta", FunctionVersion=two)
    listed = lambda_client.list_aliases(FunctionName=name)["Aliases"]
    assert sorted(a["Name"] for a in listed) == ["beta", "live"]
    assert [a["Name"] for a in lambda_client.list_aliases(FunctionName=name, FunctionVersion=two)["Aliases"]] == ["beta"]

    assert lambda_client.delete_alias(FunctionName=name, Name="beta")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_alias(FunctionName=name, Name="beta")


@ops("CreateAlias", "PutFunctionEventInvokeConfig", "GetFunctionEventInvokeConfig",
     "ListFunctionEventInvokeConfigs")
def test_event_invoke_config_per_qualifier(functions, lambda_client):
    name = functions.create()["FunctionName"]
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=2)
    aliased = lambda_client.put_function_event_invoke_config(
        FunctionName=name, Qualifier="live", MaximumRetryAttempts=0
    )
    assert aliased["FunctionArn"].endswith(f":function:{name}:live")
    got = lambda_client.get_function_event_invoke_config(FunctionName=name, Qualifier="live")
    assert got["MaximumRetryAttempts"] == 0
    assert lambda_client.get_function_event_invoke_config(FunctionName=name)["MaximumRetryAttempts"] == 2
    listed = lambda_client.list_function_event_invoke_configs(FunctionName=name)
    assert len(listed["FunctionEventInvokeConfigs"]) == 2


@ops("PutFunctionConcurrency", "GetFunctionConcurrency", "DeleteFunctionConcurrency",
     "GetFunction", "Invoke")
def test_reserved_concurrency_zero_throttles(functions, lambda_client):
    name = functions.create(ECHO_HANDLER)["FunctionName"]
    assert lambda_client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") is None
    put = lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert put["ReservedConcurrentExecutions"] == 0
    assert lambda_client.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 0
    assert lambda_client.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 0}
    with pytest.raises(lambda_client.exceptions.TooManyRequestsException) as raised:
        lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert raised.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    deleted = lambda_client.delete_function_concurrency(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lambda_client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200


@ops("PutFunctionConcurrency")
def test_reserved_concurrency_must_be_a_count(functions, unchecked_client):
    name = functions.create()["FunctionName"]
    with pytest.raises(unchecked_client.exceptions.InvalidParameterValueException):
        unchecked_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=-1)


@ops("GetAccountSettings")
def test_account_settings(lambda_client):
    settings = lambda_client.get_account_settings()
    limit = settings["AccountLimit"]
    assert limit["ConcurrentExecutions"] > 0
    assert 0 <= limit["UnreservedConcurrentExecutions"] <= limit["ConcurrentExecutions"]
    assert limit["CodeSizeZipped"] > 0 and limit["CodeSizeUnzipped"] > 0
    assert "FunctionCount" in settings["AccountUsage"]


@ops("TagResource", "ListTags", "UntagResource")
def test_tags(functions, lambda_client):
    arn = functions.create()["FunctionArn"]
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {}
    tagged = lambda_client.tag_resource(Resource=arn, Tags={"team": "compat", "tier": "test"})
    assert tagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"team": "compat", "tier": "test"}
    lambda_client.untag_resource(Resource=arn, TagKeys=["tier"])
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"team": "compat"}
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.tag_resource(Resource=arn, Tags={"aws:reserved": "x"})
    missing = arn.rsplit(":", 1)[0] + ":" + unique_name("missing")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.list_tags(Resource=missing)
