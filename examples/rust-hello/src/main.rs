//! A Rust function for Nimbus (and for AWS Lambda, unchanged): greets whoever the event
//! names. Built with the `lambda_runtime` crate as the `bootstrap` of a `provided.al2023`
//! function; see `examples/README.md` for deploying it.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn greet(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err("asked to fail".into());
    }
    let name = payload
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("world");
    Ok(json!({
        "greeting": format!("Hello, {name}!"),
        "requestId": context.request_id,
        "functionArn": context.invoked_function_arn,
        "pid": std::process::id(),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(greet)).await
}
