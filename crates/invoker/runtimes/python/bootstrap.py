"""Nimbus' Python runtime: the Lambda Runtime API loop for `python3.x` functions.

Standard library only. Loads `module.function` from `_HANDLER` (dots allowed in the module
part) out of LAMBDA_TASK_ROOT, then takes invocations from the Runtime API one at a time
over one keep-alive connection, as the AWS Python runtime does, with the same error types
and messages.
"""

import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"
JSON = {"Content-Type": "application/json"}

# The request being handled, for log records.
current_request_id = ""


class Headers(dict):
    """Response headers, looked up without regard to case."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


class Connection:
    """One persistent HTTP/1.1 connection to the Runtime API, reopened if it drops.

    A few lines of HTTP instead of http.client: the Runtime API is ours, small and fixed, and
    http.client's header parsing costs more than the rest of a no-op invocation (the AWS
    runtime client uses a C extension for the same reason).
    """

    def __init__(self):
        host, _, port = API.rpartition(":")
        self.address = (host, int(port))
        self.sock = None
        self.rfile = None

    def request(self, method, path, body=b"", headers=JSON):
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(self.address)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.rfile = self.sock.makefile("rb")
                head = "%s %s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (
                    method, BASE, path, API, len(body))
                for name, value in headers.items():
                    head += "%s: %s\r\n" % (name, value)
                self.sock.sendall(head.encode("latin-1") + b"\r\n" + body)
                return self.read_response()
            except (OSError, ValueError):
                self.close()
                if attempt == 2:
                    raise

    def read_response(self):
        status_line = self.rfile.readline(65537)
        if not status_line:
            raise ConnectionError("the Runtime API closed the connection")
        status = int(status_line.split(None, 2)[1])
        headers = Headers()
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self.read_chunked()
        else:
            body = self.rfile.read(int(headers.get("content-length", "0")))
        return Response(status, headers), body

    def read_chunked(self):
        chunks = []
        while True:
            size = int(self.rfile.readline(65537).split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.rfile = None


class Response:
    def __init__(self, status, headers):
        self.status = status
        self.headers = headers


class Client:
    def __init__(self, document):
        self.installation_id = document.get("installation_id")
        self.app_title = document.get("app_title")
        self.app_version_name = document.get("app_version_name")
        self.app_version_code = document.get("app_version_code")
        self.app_package_name = document.get("app_package_name")


class ClientContext:
    def __init__(self, document):
        client = document.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = document.get("custom")
        self.env = document.get("env")


# What every invocation's context repeats, read once: the environment does not change.
FUNCTION_NAME = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
FUNCTION_VERSION = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
MEMORY_LIMIT_IN_MB = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
LOG_GROUP_NAME = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
LOG_STREAM_NAME = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers.get("lambda-runtime-aws-request-id")
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn")
        self.function_name = FUNCTION_NAME
        self.function_version = FUNCTION_VERSION
        self.memory_limit_in_mb = MEMORY_LIMIT_IN_MB
        self.log_group_name = LOG_GROUP_NAME
        self.log_stream_name = LOG_STREAM_NAME
        self.identity = None
        self._deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)
        raw_context = headers.get("lambda-runtime-client-context")
        self.client_context = None
        if raw_context:
            try:
                self.client_context = ClientContext(json.loads(raw_context))
            except (ValueError, AttributeError):
                pass

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = current_request_id
        return True


def install_logging():
    """The root logger writes as Lambda's does: level, UTC time, request id, message."""
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)


def stack_trace(error):
    # The bootstrap's own frames are no part of the function's error.
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename != __file__
    ]
    return [line.rstrip("\n") for line in traceback.format_list(frames)]


def error_document(error, error_type=None, message=None, request_id=None):
    document = {
        "errorMessage": str(error) if message is None else message,
        "errorType": error_type or type(error).__name__,
        "stackTrace": stack_trace(error),
    }
    if request_id:
        document["requestId"] = request_id
    return document


def post_error(api, path, document):
    sys.stdout.flush()
    lines = ["[ERROR] %s: %s" % (document["errorType"], document["errorMessage"])]
    if document.get("stackTrace"):
        lines.append("Traceback (most recent call last):")
        lines.extend(document["stackTrace"])
    print("\n".join(lines), file=sys.stderr)
    sys.stderr.flush()
    headers = {
        "Content-Type": "application/json",
        "Lambda-Runtime-Function-Error-Type": document["errorType"],
    }
    api.request("POST", path, body=json.dumps(document).encode(), headers=headers)


def init_error(api, document):
    post_error(api, "/init/error", document)
    sys.exit(1)


def load_handler(api):
    spec = os.environ.get("_HANDLER", "")
    module_name, _, function_name = spec.rpartition(".")
    if not module_name or not function_name:
        init_error(api, {
            "errorMessage": "Bad handler '%s': not enough values to unpack (expected 2, got 1)" % spec,
            "errorType": "Runtime.MalformedHandlerName",
            "stackTrace": [],
        })
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT", "."))
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except SyntaxError as error:
        init_error(api, error_document(
            error,
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '%s': %s" % (module_name, error),
        ))
    except Exception as error:  # noqa: BLE001 - any import failure is the function's
        init_error(api, error_document(
            error,
            "Runtime.ImportModuleError",
            "Unable to import module '%s': %s" % (module_name, error),
        ))
    handler = getattr(module, function_name, None)
    if not callable(handler):
        init_error(api, {
            "errorMessage": "Handler '%s' missing on module '%s'" % (function_name, module_name),
            "errorType": "Runtime.HandlerNotFound",
            "stackTrace": [],
        })
    return handler


def invoke(api, handler, headers, body):
    """Runs one invocation; returns the path to post to and the body to post."""
    request_id = headers.get("lambda-runtime-aws-request-id")
    try:
        event = json.loads(body) if body else {}
    except ValueError as error:
        return "error", error_document(
            error, "Runtime.UnmarshalError", "Unable to unmarshal input: %s" % error, request_id
        )
    try:
        result = handler(event, Context(headers))
    except MemoryError:
        # The instance hit its memory limit: the invoker replaces it and words the error.
        return "error", {"errorType": "Runtime.OutOfMemory", "errorMessage": "MemoryError"}
    except Exception as error:  # noqa: BLE001 - reported to the caller, as on Lambda
        return "error", error_document(error, request_id=request_id)
    try:
        return "response", json.dumps(result).encode()
    except (TypeError, ValueError) as error:
        return "error", error_document(
            error, "Runtime.MarshalError", "Unable to marshal response: %s" % error, request_id
        )


def main():
    global current_request_id
    install_logging()
    api = Connection()
    handler = load_handler(api)
    while True:
        response, body = api.request("GET", "/invocation/next", headers={})
        if response.status != 200:
            sys.exit(0)
        headers = response.headers
        request_id = headers.get("lambda-runtime-aws-request-id")
        current_request_id = request_id
        trace_id = headers.get("lambda-runtime-trace-id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        elif "_X_AMZN_TRACE_ID" in os.environ:
            del os.environ["_X_AMZN_TRACE_ID"]
        kind, reply = invoke(api, handler, headers, body)
        path = "/invocation/%s/%s" % (request_id, kind)
        if kind == "error":
            post_error(api, path, reply)
        else:
            # What the handler printed is in the pipe before the response is posted.
            sys.stdout.flush()
            sys.stderr.flush()
            api.request("POST", path, body=reply)


if __name__ == "__main__":
    main()
