// Nimbus' Node.js runtime: the Lambda Runtime API loop for `nodejs*.x` functions.
//
// Built-ins only. Loads `file.function` from `_HANDLER` out of LAMBDA_TASK_ROOT, as CommonJS
// (.js, .cjs) or as an ES module (.mjs, or .js under "type": "module"), supports async
// handlers and callback handlers, and reports errors and logs as the AWS Node.js runtime does.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import util from "node:util";
import { pathToFileURL } from "node:url";

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const BASE = "/2018-06-01/runtime";
const JSON_HEADERS = { "Content-Type": "application/json" };

// The invocation being handled, for log lines and for errors no handler caught.
let currentRequestId;

function request(method, route, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: BASE + route, agent, headers }, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// console.* as on Lambda: one line per call, "time\trequest id\tLEVEL\tmessage", on stdout,
// which Node writes synchronously to a pipe (so a line is out before the response is posted).
function patchConsole() {
  const levels = { log: "INFO", info: "INFO", debug: "DEBUG", warn: "WARN", error: "ERROR", trace: "TRACE" };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => {
      const message = util.format(...args).replaceAll("\n", "\r");
      process.stdout.write(`${new Date().toISOString()}\t${currentRequestId ?? "undefined"}\t${level}\t${message}\n`);
    };
  }
}

function errorDocument(error) {
  if (error instanceof Error) {
    return {
      errorType: error.name || error.constructor?.name || "Error",
      errorMessage: error.message,
      trace: error.stack ? error.stack.split("\n") : [],
    };
  }
  return { errorType: typeof error, errorMessage: String(error), trace: [] };
}

async function postError(route, document) {
  console.error(`${document.errorType}: ${document.errorMessage}`);
  await request("POST", route, JSON.stringify(document), {
    ...JSON_HEADERS,
    "Lambda-Runtime-Function-Error-Type": document.errorType,
  });
}

async function initError(document) {
  await postError("/init/error", document);
  process.exit(1);
}

// `dir/file.name.path` names the module `dir/file` and the export `name.path`, as on Lambda.
function parseHandler(spec) {
  const slash = spec.lastIndexOf("/");
  const dot = spec.indexOf(".", slash + 1);
  if (dot <= slash + 1 || dot === spec.length - 1) return null;
  return { moduleName: spec.slice(0, dot), exportPath: spec.slice(dot + 1).split(".") };
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
  const parsed = parseHandler(spec);
  if (parsed === null) {
    await initError({ errorType: "Runtime.MalformedHandlerName", errorMessage: `Bad handler ${spec}`, trace: [] });
  }
  const { moduleName, exportPath } = parsed;
  const file = resolveModule(process.env.LAMBDA_TASK_ROOT ?? ".", moduleName);
  if (file === null) {
    await initError({
      errorType: "Runtime.ImportModuleError",
      errorMessage: `Error: Cannot find module '${moduleName}'`,
      trace: [],
    });
  }
  let module;
  try {
    // import() loads CommonJS and ES modules alike, honouring package.json "type".
    module = await import(pathToFileURL(file).href);
  } catch (error) {
    const document = errorDocument(error);
    const syntax = error instanceof SyntaxError;
    document.errorType = syntax ? "Runtime.UserCodeSyntaxError" : "Runtime.ImportModuleError";
    document.errorMessage = `${error}`;
    await initError(document);
  }
  const find = (root) => exportPath.reduce((value, key) => value?.[key], root);
  const handler = find(module) ?? find(module.default);
  if (typeof handler !== "function") {
    await initError({
      errorType: "Runtime.HandlerNotFound",
      errorMessage: `${moduleName}.${exportPath.join(".")} is undefined or not exported`,
      trace: [],
    });
  }
  return handler;
}

function makeContext(headers) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"] ?? 0);
  const clientContext = headers["lambda-runtime-client-context"];
  let parsedClientContext;
  try {
    parsedClientContext = clientContext ? JSON.parse(clientContext) : undefined;
  } catch {
    parsedClientContext = undefined;
  }
  return {
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parsedClientContext,
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

// An error no handler caught ends the process, as on Lambda; the invocation it broke (or
// init) is told first.
async function fatal(document, exitCode) {
  try {
    const route = currentRequestId ? `/invocation/${currentRequestId}/error` : "/init/error";
    await postError(route, document);
  } finally {
    process.exit(exitCode);
  }
}
process.on("uncaughtException", (error) => fatal(errorDocument(error), 129));
process.on("unhandledRejection", (reason) => {
  const document = errorDocument(reason);
  document.errorType = "Runtime.UnhandledPromiseRejection";
  document.errorMessage = `${reason instanceof Error ? `${reason.name}: ${reason.message}` : reason}`;
  fatal(document, 128);
});

patchConsole();
const handler = await loadHandler();
for (;;) {
  currentRequestId = undefined;
  const next = await request("GET", "/invocation/next");
  if (next.status !== 200) process.exit(0);
  const requestId = next.headers["lambda-runtime-aws-request-id"];
  currentRequestId = requestId;
  const traceId = next.headers["lambda-runtime-trace-id"];
  if (traceId) process.env._X_AMZN_TRACE_ID = traceId;
  else delete process.env._X_AMZN_TRACE_ID;

  let event;
  try {
    event = next.body.length ? JSON.parse(next.body.toString("utf8")) : {};
  } catch (error) {
    await postError(`/invocation/${requestId}/error`, {
      errorType: "Runtime.UnmarshalError",
      errorMessage: `Unable to parse input as JSON: ${error.message}`,
      trace: [],
    });
    continue;
  }
  let result;
  try {
    result = await run(handler, event, makeContext(next.headers));
  } catch (error) {
    await postError(`/invocation/${requestId}/error`, errorDocument(error));
    continue;
  }
  let body;
  try {
    body = result === undefined ? "null" : JSON.stringify(result);
  } catch (error) {
    await postError(`/invocation/${requestId}/error`, {
      errorType: "Runtime.MarshalError",
      errorMessage: `Unable to stringify response body as json: ${error.message}`,
      trace: [],
    });
    continue;
  }
  await request("POST", `/invocation/${requestId}/response`, body, JSON_HEADERS);
}
