// Nimbus' Node.js runtime: the Lambda Runtime API loop for `nodejs*.x` functions.
//
// Built-ins only. Loads `file.function` from `_HANDLER` out of LAMBDA_TASK_ROOT, as CommonJS
// (.js, .cjs) or as an ES module (.mjs, or .js under "type": "module"), and supports async
// handlers and callback handlers, as the AWS Node.js runtime does.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const BASE = "/2018-06-01/runtime";

function request(method, route, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port, method, path: BASE + route, agent, headers },
      (res) => {
        const chunks = [];
        res.on("data", (chunk) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function errorDocument(error) {
  const isError = error instanceof Error;
  return {
    errorType: isError ? error.name || error.constructor.name : "Error",
    errorMessage: isError ? error.message : String(error),
    trace: isError && error.stack ? error.stack.split("\n") : [],
  };
}

async function postError(route, errorType, document) {
  await request("POST", route, JSON.stringify(document), {
    "Content-Type": "application/json",
    "Lambda-Runtime-Function-Error-Type": errorType,
  });
}

function resolveModule(taskRoot, moduleName) {
  for (const extension of [".js", ".mjs", ".cjs"]) {
    const candidate = path.resolve(taskRoot, moduleName + extension);
    if (fs.existsSync(candidate)) return candidate;
  }
  return null;
}

async function loadHandler() {
  const spec = process.env._HANDLER ?? "";
  const dot = spec.lastIndexOf(".");
  const moduleName = spec.slice(0, dot);
  const functionName = spec.slice(dot + 1);
  const taskRoot = process.env.LAMBDA_TASK_ROOT ?? ".";
  const file = resolveModule(taskRoot, moduleName);
  if (file === null) {
    await postError("/init/error", "Runtime.ImportModuleError", {
      errorType: "Runtime.ImportModuleError",
      errorMessage: `Error: Cannot find module '${moduleName}'`,
      trace: [],
    });
    process.exit(1);
  }
  let module;
  try {
    // import() loads CommonJS and ES modules alike, honouring package.json "type".
    module = await import(pathToFileURL(file).href);
  } catch (error) {
    const document = errorDocument(error);
    document.errorType = "Runtime.ImportModuleError";
    document.errorMessage = `${error}`;
    await postError("/init/error", "Runtime.ImportModuleError", document);
    process.exit(1);
  }
  const handler = module[functionName] ?? module.default?.[functionName];
  if (typeof handler !== "function") {
    await postError("/init/error", "Runtime.HandlerNotFound", {
      errorType: "Runtime.HandlerNotFound",
      errorMessage: `${moduleName}.${functionName} is undefined or not exported`,
      trace: [],
    });
    process.exit(1);
  }
  return handler;
}

function makeContext(headers) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"] ?? 0);
  const clientContext = headers["lambda-runtime-client-context"];
  return {
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: clientContext ? JSON.parse(clientContext) : undefined,
    identity: undefined,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };
}

// A handler may return a promise or call back; whichever comes first settles it.
function run(handler, event, context) {
  return new Promise((resolve, reject) => {
    const callback = (error, result) => (error ? reject(error) : resolve(result));
    try {
      const returned = handler(event, context, callback);
      if (returned && typeof returned.then === "function") returned.then(resolve, reject);
      else if (handler.length < 3) resolve(returned);
    } catch (error) {
      reject(error);
    }
  });
}

const handler = await loadHandler();
for (;;) {
  const next = await request("GET", "/invocation/next");
  if (next.status !== 200) process.exit(0);
  const requestId = next.headers["lambda-runtime-aws-request-id"];
  const traceId = next.headers["lambda-runtime-trace-id"];
  if (traceId) process.env._X_AMZN_TRACE_ID = traceId;
  else delete process.env._X_AMZN_TRACE_ID;
  try {
    const event = next.body.length ? JSON.parse(next.body.toString("utf8")) : {};
    const result = await run(handler, event, makeContext(next.headers));
    const body = result === undefined ? "null" : JSON.stringify(result);
    await request("POST", `/invocation/${requestId}/response`, body, { "Content-Type": "application/json" });
  } catch (error) {
    await postError(`/invocation/${requestId}/error`, "Unhandled", errorDocument(error));
  }
}
