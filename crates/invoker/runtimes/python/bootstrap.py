"""Nimbus' Python runtime: the Lambda Runtime API loop for `python3.x` functions.

Standard library only. Loads `module.function` from `_HANDLER` (dots allowed in the module
part) out of LAMBDA_TASK_ROOT, then takes invocations from the Runtime API one at a time
over one keep-alive connection, as the AWS Python runtime does.
"""

import http.client
import importlib
import json
import os
import sys
import time
import traceback

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"


class Connection:
    """One persistent HTTP/1.1 connection to the Runtime API, reopened if it drops."""

    def __init__(self):
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(API)
                self.conn.request(method, BASE + path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                return response, response.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn = None
                if attempt == 2:
                    raise


class ClientContext:
    def __init__(self, document):
        self.client = document.get("client")
        self.custom = document.get("custom")
        self.env = document.get("env")


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        self.invoked_function_arn = headers.get("Lambda-Runtime-Invoked-Function-Arn")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self._deadline_ms = int(headers.get("Lambda-Runtime-Deadline-Ms") or 0)
        raw_context = headers.get("Lambda-Runtime-Client-Context")
        self.client_context = ClientContext(json.loads(raw_context)) if raw_context else None

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def error_document(error, request_id=None):
    frames = traceback.format_list(traceback.extract_tb(error.__traceback__))
    document = {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": [frame.rstrip("\n") for frame in frames],
    }
    if request_id:
        document["requestId"] = request_id
    return document


def post_error(api, path, error_type, document):
    sys.stdout.flush()
    sys.stderr.flush()
    api.request(
        "POST",
        path,
        body=json.dumps(document).encode(),
        headers={
            "Content-Type": "application/json",
            "Lambda-Runtime-Function-Error-Type": error_type,
        },
    )


def load_handler(api):
    spec = os.environ.get("_HANDLER", "")
    module_name, _, function_name = spec.rpartition(".")
    task_root = os.environ.get("LAMBDA_TASK_ROOT", ".")
    sys.path.insert(0, task_root)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except Exception as error:  # noqa: BLE001 - any import failure is the function's
        document = error_document(error)
        document["errorMessage"] = "Unable to import module '%s': %s" % (module_name, error)
        document["errorType"] = "Runtime.ImportModuleError"
        post_error(api, "/init/error", "Runtime.ImportModuleError", document)
        sys.exit(1)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        document = {
            "errorMessage": "Handler '%s' missing on module '%s'" % (function_name, module_name),
            "errorType": "Runtime.HandlerNotFound",
            "stackTrace": [],
        }
        post_error(api, "/init/error", "Runtime.HandlerNotFound", document)
        sys.exit(1)
    return handler


def main():
    api = Connection()
    handler = load_handler(api)
    while True:
        response, body = api.request("GET", "/invocation/next")
        if response.status != 200:
            sys.exit(0)
        headers = response.headers
        request_id = headers.get("Lambda-Runtime-Aws-Request-Id")
        trace_id = headers.get("Lambda-Runtime-Trace-Id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        try:
            event = json.loads(body) if body else {}
            result = handler(event, Context(headers))
            payload = json.dumps(result).encode()
        except Exception as error:  # noqa: BLE001 - reported to the caller, as on Lambda
            post_error(
                api,
                "/invocation/%s/error" % request_id,
                "Unhandled",
                error_document(error, request_id),
            )
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        api.request(
            "POST",
            "/invocation/%s/response" % request_id,
            body=payload,
            headers={"Content-Type": "application/json"},
        )


if __name__ == "__main__":
    main()
