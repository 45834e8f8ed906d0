//! The Node.js runtime on real `node` processes: CommonJS and ES modules, async and callback
//! handlers, the context object, errors and logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{failed, fixture, function, request, succeeded};
use serde_json::json;

const CONTEXT_FIELDS: &str = "({ id: context.awsRequestId, name: context.functionName, \
     version: context.functionVersion, arn: context.invokedFunctionArn, \
     memory: context.memoryLimitInMB, group: context.logGroupName, \
     stream: context.logStreamName, remaining: context.getRemainingTimeInMillis(), \
     client: context.clientContext, pid: process.pid })";

#[tokio::test]
async fn commonjs_and_es_module_handlers_run() {
    let f = fixture(|_| {}).await;
    let cjs_source = format!(
        "exports.handler = async (event, context) => {{ console.log('cjs got', event); \
         return {{ kind: 'cjs', event, context: {CONTEXT_FIELDS} }}; }};"
    );
    let cjs = function(
        &*f.store,
        "cjs",
        "nodejs20.x",
        Some("index.handler"),
        &[("index.js", &cjs_source)],
    )
    .await;
    let mut call = request(&cjs, json!({"n": 1}));
    call.want_log_tail = true;
    call.client_context = Some(r#"{"custom": {"k": "v"}}"#.to_owned());
    let id = call.request_id.to_string();
    let outcome = f.invoke(call).await;
    let body = succeeded(&outcome);
    assert_eq!(body["kind"], json!("cjs"));
    assert_eq!(body["event"], json!({"n": 1}));
    let context = &body["context"];
    assert_eq!(context["id"], json!(id));
    assert_eq!(context["name"], json!("cjs"));
    assert_eq!(context["version"], json!("$LATEST"));
    assert_eq!(
        context["arn"],
        json!("arn:aws:lambda:us-east-1:000000000000:function:cjs")
    );
    assert_eq!(context["memory"], json!("128"));
    assert_eq!(context["group"], json!("/aws/lambda/cjs"));
    assert!(context["remaining"].as_u64().unwrap() > 5_000);
    assert_eq!(context["client"], json!({"custom": {"k": "v"}}));
    // console.log lines carry the request id and level, as on Lambda.
    let tail = outcome.log_tail.unwrap();
    assert!(
        tail.contains(&format!("\t{id}\tINFO\tcjs got {{ n: 1 }}")),
        "{tail}"
    );

    // An ES module in a subfolder, with a named export.
    let esm = function(
        &*f.store,
        "esm",
        "nodejs20.x",
        Some("lib/main.run"),
        &[(
            "lib/main.mjs",
            "export async function run(event) { return { kind: 'esm', event }; }",
        )],
    )
    .await;
    let body = succeeded(&f.invoke(request(&esm, json!({"n": 2}))).await);
    assert_eq!(body, json!({"kind": "esm", "event": {"n": 2}}));

    // A .js file under "type": "module", with a callback handler.
    let typed = function(
        &*f.store,
        "typed",
        "nodejs22.x",
        Some("app.handler"),
        &[
            ("package.json", r#"{"type": "module"}"#),
            (
                "app.js",
                "export const handler = (event, context, callback) => { \
                 setTimeout(() => callback(null, { kind: 'callback', n: event.n }), 5); };",
            ),
        ],
    )
    .await;
    let body = succeeded(&f.invoke(request(&typed, json!({"n": 3}))).await);
    assert_eq!(body, json!({"kind": "callback", "n": 3}));
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn errors_come_back_as_lambda_documents() {
    let f = fixture(|_| {}).await;
    let failing = function(
        &*f.store,
        "failing",
        "nodejs20.x",
        Some("index.handler"),
        &[(
            "index.mjs",
            "export const handler = async (event) => { \
             if (event.callback) { return; } throw new RangeError('nope ' + event.n); };",
        )],
    )
    .await;
    let outcome = f.invoke(request(&failing, json!({"n": 4}))).await;
    let body = failed(&outcome);
    assert_eq!(body["errorType"], json!("RangeError"));
    assert_eq!(body["errorMessage"], json!("nope 4"));
    assert!(
        body["trace"].as_array().unwrap()[0]
            .as_str()
            .unwrap()
            .starts_with("RangeError: nope 4")
    );
    assert_eq!(outcome.error_type.as_deref(), Some("RangeError"));

    let callback_error = function(
        &*f.store,
        "cberror",
        "nodejs20.x",
        Some("index.handler"),
        &[(
            "index.js",
            "exports.handler = (event, context, callback) => callback(new TypeError('bad'));",
        )],
    )
    .await;
    let body = failed(&f.invoke(request(&callback_error, json!({}))).await);
    assert_eq!(body["errorType"], json!("TypeError"));

    // An exception no handler catches ends the process after reporting the invocation.
    let uncaught = function(
        &*f.store,
        "uncaught",
        "nodejs20.x",
        Some("index.handler"),
        &[(
            "index.js",
            "exports.handler = () => new Promise(() => { \
             setTimeout(() => { throw new Error('from a timer'); }, 1); });",
        )],
    )
    .await;
    let body = failed(&f.invoke(request(&uncaught, json!({}))).await);
    assert_eq!(body["errorType"], json!("Error"));
    assert_eq!(body["errorMessage"], json!("from a timer"));
    // The next invocation gets a working instance, whether or not the old one was gone yet.
    let body = failed(&f.invoke(request(&uncaught, json!({}))).await);
    assert_eq!(body["errorMessage"], json!("from a timer"));

    let missing = function(
        &*f.store,
        "missing",
        "nodejs20.x",
        Some("nothere.handler"),
        &[("index.js", "exports.handler = async () => 1;")],
    )
    .await;
    let body = failed(&f.invoke(request(&missing, json!({}))).await);
    assert_eq!(body["errorType"], json!("Runtime.ImportModuleError"));

    let not_exported = function(
        &*f.store,
        "notexported",
        "nodejs20.x",
        Some("index.other"),
        &[("index.js", "exports.handler = async () => 1;")],
    )
    .await;
    let body = failed(&f.invoke(request(&not_exported, json!({}))).await);
    assert_eq!(body["errorType"], json!("Runtime.HandlerNotFound"));
    f.invoker.shutdown().await;
}
