"""Function URLs through boto3 and the aws CLI: created, read, listed, updated and deleted
with the Lambda API, and called over plain HTTP at the `FunctionUrl` the API hands back, as a
browser or curl would."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

ops = pytest.mark.operations

HTTP_HANDLER = '''
import json


def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-route-key": event["routeKey"]},
        "body": json.dumps({
            "path": event["rawPath"],
            "query": event.get("queryStringParameters"),
            "method": event["requestContext"]["http"]["method"],
            "body": event.get("body"),
        }),
    }
'''


def fetch(url: str, *, method: str = "GET", body: bytes | None = None, headers=None):
    """(status, headers, body) of one plain HTTP request, errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@ops("CreateFunctionUrlConfig", "GetFunctionUrlConfig", "UpdateFunctionUrlConfig",
     "ListFunctionUrlConfigs", "DeleteFunctionUrlConfig")
def test_function_urls_through_boto3(functions, lambda_client):
    name = functions.create(HTTP_HANDLER)["FunctionName"]
    created = lambda_client.create_function_url_config(
        FunctionName=name,
        AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"], "MaxAge": 60},
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AuthType"] == "NONE"
    assert created["FunctionArn"].endswith(f":function:{name}")
    url = created["FunctionUrl"]
    assert url.endswith("/")

    with pytest.raises(lambda_client.exceptions.ResourceConflictException):
        lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")

    status, headers, body = fetch(url + "orders/7?verbose=1", method="POST", body=b"hello",
                                  headers={"content-type": "text/plain"})
    assert status == 200, body
    assert headers["x-route-key"] == "$default"
    assert json.loads(body) == {"path": "/orders/7", "query": {"verbose": "1"},
                                "method": "POST", "body": "hello"}

    # A CORS preflight is answered without the function.
    status, headers, _ = fetch(url, method="OPTIONS", headers={
        "origin": "https://app.example", "access-control-request-method": "POST"})
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["access-control-max-age"] == "60"

    got = lambda_client.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == url
    assert got["Cors"]["AllowMethods"] == ["GET", "POST"]
    assert "LastModifiedTime" in got

    updated = lambda_client.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert updated["AuthType"] == "AWS_IAM"
    assert updated["Cors"] == got["Cors"]

    listed = lambda_client.list_function_url_configs(FunctionName=name)
    assert [config["FunctionUrl"] for config in listed["FunctionUrlConfigs"]] == [url]

    lambda_client.delete_function_url_config(FunctionName=name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_url_config(FunctionName=name)
    status, _, body = fetch(url)
    assert status == 404, body


@ops("CreateFunctionUrlConfig", "GetFunctionUrlConfig", "DeleteFunctionUrlConfig")
def test_function_urls_through_the_aws_cli(functions, aws_v2):
    name = functions.create(HTTP_HANDLER)["FunctionName"]
    created = aws_v2.json("create-function-url-config", "--function-name", name,
                          "--auth-type", "NONE")
    status, _, body = fetch(created["FunctionUrl"] + "ping")
    assert status == 200, body
    assert json.loads(body)["path"] == "/ping"
    got = aws_v2.json("get-function-url-config", "--function-name", name)
    assert got["FunctionUrl"] == created["FunctionUrl"]
    aws_v2("delete-function-url-config", "--function-name", name)
