"""Fixtures of the compatibility suite: one `nimbus dev` on a free port and a temporary data
folder for the whole run, boto3 clients and the aws CLI pointed at it with dummy credentials,
zips built from handler sources, and the report of which Lambda operations the run covered.

The binary is `$NIMBUS_BIN`, else `target/debug/nimbus` (build it first with
`cargo build -p nimbus-cli`).
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections import defaultdict
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parent.parent
NIMBUS_BIN = Path(os.environ.get("NIMBUS_BIN", REPO / "target" / "debug" / "nimbus"))
REGION = "us-east-1"
START_TIMEOUT = 60.0

# Dummy credentials and a region for boto3 and the CLIs, and nothing read from ~/.aws.
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "nimbus",
    "AWS_SECRET_ACCESS_KEY": "nimbus",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_PAGER": "",
}
for _key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA"):
    os.environ.pop(_key, None)
os.environ.update(_AWS_ENV)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "operations(*names): the Lambda API operations a test exercises"
    )
    config.addinivalue_line(
        "markers",
        "not_implemented(*names, reason): operations Nimbus does not serve yet; the test is a "
        "strict xfail that expects the ClientError Nimbus answers today",
    )


# ---- nimbus dev ----


class Nimbus:
    """A `nimbus dev` process on `127.0.0.1:0` with a data folder of its own."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        if not NIMBUS_BIN.exists():
            pytest.exit(
                f"{NIMBUS_BIN} does not exist: run `cargo build -p nimbus-cli` or set NIMBUS_BIN",
                returncode=3,
            )
        self.dir = Path(tempfile.mkdtemp(prefix="nimbus-compat-"))
        # Run as root, Nimbus runs each instance as a user of its own, which must be able to
        # reach the data folder inside this one (docs/security.md).
        self.dir.chmod(0o711)
        self.log_path = self.dir / "nimbus.log"
        child_env = dict(os.environ)
        # Managed runtimes and `provided` bootstraps find `python3` on PATH: this venv's, the
        # interpreter awslambdaric's native module was built for.
        child_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        child_env.setdefault("RUST_LOG", "warn")
        child_env.update(env or {})
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [
                str(NIMBUS_BIN),
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(self.dir / "data"),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=child_env,
        )
        self.endpoint = self._wait_for_announcement()

    def _wait_for_announcement(self) -> str:
        """The address of `nimbus: dev listening on ADDRESS`, read by a thread so that the
        wait has a deadline; the thread then drains stdout until the process ends."""
        found: queue.Queue[str] = queue.Queue()

        def read():
            announced = False
            for raw in self.process.stdout:
                line = raw.decode(errors="replace").strip()
                if not announced and line.startswith("nimbus: ") and " listening on " in line:
                    announced = True
                    found.put(line.split(" listening on ", 1)[1].strip())

        threading.Thread(target=read, daemon=True).start()
        try:
            address = found.get(timeout=START_TIMEOUT)
        except queue.Empty:
            self.stop()
            raise RuntimeError(
                f"nimbus dev did not announce its address in {START_TIMEOUT}s; "
                f"log:\n{self.log_path.read_text(errors='replace')[-4000:]}"
            ) from None
        return address if address.startswith("http") else f"http://{address}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def get_json(self, path: str):
        """`GET` a `/nimbus/v1` route: `(status, decoded body)`."""
        try:
            with urllib.request.urlopen(self.endpoint + path, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def wait_for_invocation(self, request_id: str, done, timeout: float = 30.0) -> dict:
        """Polls the invocation record until `done(record)` holds; fails at the deadline."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            status, record = self.get_json(f"/nimbus/v1/invocations/{request_id}")
            if status == 200:
                last = record
                if done(record):
                    return record
            time.sleep(0.05)
        raise AssertionError(f"invocation {request_id} did not get there in {timeout}s: {last}")


@pytest.fixture(scope="session")
def nimbus():
    platform = Nimbus()
    yield platform
    platform.stop()


def client_for(endpoint: str, **config):
    """A boto3 Lambda client for `endpoint`. One attempt per call: a retried throttle or
    server error would hide what Nimbus answered."""
    return boto3.session.Session().client(
        "lambda",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="nimbus",
        aws_secret_access_key="nimbus",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=120, **config),
    )


@pytest.fixture(scope="session")
def lambda_client(nimbus):
    return client_for(nimbus.endpoint)


@pytest.fixture(scope="session")
def unchecked_client(nimbus):
    """A client that sends out-of-range values instead of refusing them itself, to see
    Nimbus refuse them."""
    return client_for(nimbus.endpoint, parameter_validation=False)


# ---- function code ----


def zip_bytes(files: dict[str, str | bytes], executable: tuple[str, ...] = ()) -> bytes:
    """A zip of `files` (name -> content); names in `executable` get mode 0755."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if name in executable else 0o100644) << 16
            archive.writestr(info, content, compresslevel=1)
    return buffer.getvalue()


def zip_dir(root: Path, executable: tuple[str, ...] = ()) -> bytes:
    """A zip of every file under `root`, paths relative to it."""
    files = {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    return zip_bytes(files, executable)


# The handler most tests deploy: echoes what it was given and what it sees.
ECHO_HANDLER = '''
import json
import os


def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("boom: " + str(event["fail"]))
    print("echo handler in", context.function_name)
    client_context = None
    if context.client_context is not None:
        client = context.client_context.client
        client_context = {
            "custom": context.client_context.custom,
            "env": context.client_context.env,
            "client": None if client is None else {"app_title": client.app_title},
        }
    return {
        "event": event,
        "requestId": context.aws_request_id,
        "functionArn": context.invoked_function_arn,
        "functionName": context.function_name,
        "version": context.function_version,
        "memory": context.memory_limit_in_mb,
        "greeting": os.environ.get("GREETING"),
        "clientContext": client_context,
    }
'''


def unique_name(prefix: str = "compat") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Functions:
    """Creates functions through boto3 and deletes what it created at the end of a test."""

    def __init__(self, client):
        self.client = client
        self.created: list[str] = []

    def create(
        self,
        source: str = ECHO_HANDLER,
        *,
        name: str | None = None,
        zip_file: bytes | None = None,
        runtime: str = "python3.12",
        handler: str | None = "app.handler",
        **members,
    ) -> dict:
        name = name or unique_name()
        request = {
            "FunctionName": name,
            "Runtime": runtime,
            "Role": "arn:aws:iam::000000000000:role/compat",
            "Code": {"ZipFile": zip_file if zip_file is not None else zip_bytes({"app.py": source})},
            **members,
        }
        if handler is not None:
            request["Handler"] = handler
        answer = self.client.create_function(**request)
        self.created.append(name)
        return answer

    def cleanup(self) -> None:
        for name in self.created:
            try:
                self.client.delete_function(FunctionName=name)
            except self.client.exceptions.ResourceNotFoundException:
                pass


@pytest.fixture
def functions(lambda_client):
    made = Functions(lambda_client)
    yield made
    made.cleanup()


def b64json(document) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


# ---- the aws CLI ----


class AwsCli:
    """Runs `aws lambda ...` against Nimbus and returns the completed process."""

    def __init__(self, executable: str, endpoint: str, cwd: Path):
        self.executable = executable
        self.endpoint = endpoint
        self.cwd = cwd

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [self.executable, "--endpoint-url", self.endpoint, "--output", "json", "lambda", *args],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **_AWS_ENV},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def json(self, *args: str):
        return json.loads(self(*args).stdout or "null")


def _version_of(executable: str) -> str:
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return ""
    return (done.stdout + done.stderr).strip()


@pytest.fixture(scope="session")
def aws_v1(nimbus, tmp_path_factory):
    """The aws CLI v1 from PyPI, installed in this virtualenv next to pytest."""
    executable = Path(sys.executable).parent / "aws"
    if not executable.exists():
        pytest.skip(f"the aws CLI is not installed next to {sys.executable}")
    assert _version_of(str(executable)).startswith("aws-cli/1."), executable
    return AwsCli(str(executable), nimbus.endpoint, tmp_path_factory.mktemp("aws-v1"))


@pytest.fixture(scope="session")
def aws_v2(nimbus, tmp_path_factory):
    """The aws CLI v2: PyPI has only v1, so this is Debian's `awscli` package (scripts/compat
    installs it), or `$NIMBUS_AWS_CLI_V2`."""
    executable = os.environ.get("NIMBUS_AWS_CLI_V2", "/usr/bin/aws")
    version = _version_of(executable)
    if not version.startswith("aws-cli/2."):
        pytest.skip(
            f"no aws CLI v2 at {executable} ({version or 'missing'}): PyPI has only v1; "
            "scripts/compat installs Debian's awscli package"
        )
    return AwsCli(executable, nimbus.endpoint, tmp_path_factory.mktemp("aws-v2"))


# ---- the report: which operations the run covered ----

_operations_of: dict[str, tuple[str, ...]] = {}
_outcomes: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))


def pytest_collection_modifyitems(items):
    for item in items:
        names = [n for mark in item.iter_markers("operations") for n in mark.args]
        for mark in item.iter_markers("not_implemented"):
            names.extend(mark.args)
            reason = (
                f"not implemented yet: {mark.kwargs['reason']}. Once this passes, mark it "
                "`operations` and run `python compat/ops_table.py --write`"
            )
            item.add_marker(pytest.mark.xfail(raises=ClientError, strict=True, reason=reason))
        _operations_of[item.nodeid] = tuple(names)


def pytest_runtest_logreport(report):
    operations = _operations_of.get(report.nodeid)
    if not operations:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            outcome = "xpassed" if report.passed else "xfailed"
        elif report.failed and report.when == "setup":
            outcome = "error"
        else:
            outcome = report.outcome
        for name in operations:
            _outcomes[name][outcome].append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if not _outcomes:
        return
    write = terminalreporter.write_line
    terminalreporter.section("Lambda operations covered (botocore model lambda 2015-03-31)")
    order = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    width = max(len(name) for name in _outcomes)
    for name in sorted(_outcomes):
        counts = _outcomes[name]
        if counts.get("failed") or counts.get("error"):
            status = "FAILING"
        elif counts.get("passed"):
            status = "covered"
        elif counts.get("xfailed"):
            status = "not implemented (xfail)"
        else:
            status = "not run"
        tally = ", ".join(f"{len(counts[k])} {k}" for k in order if counts.get(k))
        write(f"{name:<{width}}  {status:<23}  {tally}")
    write("docs/compatibility.md lists every operation of the model and the tests proving each.")
