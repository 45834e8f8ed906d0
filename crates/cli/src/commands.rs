//! The client commands (`nimbus fn ...`, `nimbus invoke`, `nimbus invocations ...`,
//! `nimbus route add|list|rm`, `nimbus dlq list|show|redrive|purge`): thin
//! wrappers over the gateway's HTTP API that print what it answered.

use std::io::Write as _;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use reqwest::Method;

use crate::args::{
    DeadLetterFilterArgs, DeployArgs, DlqCommand, FunctionCommand, InvocationCommand, InvokeArgs,
    RouteCommand,
};
use crate::client::{FunctionSettings, LambdaClient};
use crate::package;

pub async fn function(command: FunctionCommand) -> anyhow::Result<()> {
    match command {
        FunctionCommand::Deploy(args) => deploy(args).await,
        FunctionCommand::List(endpoint) => {
            let functions = LambdaClient::new(&endpoint.endpoint)?.list().await?;
            println!(
                "{:<40} {:<16} {:>8} {:>7}  HANDLER",
                "NAME", "RUNTIME", "MEMORY", "TIMEOUT"
            );
            for function in functions {
                println!(
                    "{:<40} {:<16} {:>8} {:>7}  {}",
                    function["FunctionName"].as_str().unwrap_or("?"),
                    function["Runtime"].as_str().unwrap_or("?"),
                    function["MemorySize"],
                    function["Timeout"],
                    function["Handler"].as_str().unwrap_or("-"),
                );
            }
            Ok(())
        }
        FunctionCommand::Get { name, endpoint } => {
            let function = LambdaClient::new(&endpoint.endpoint)?.get(&name).await?;
            print_json(&function)
        }
        FunctionCommand::Delete { name, endpoint } => {
            LambdaClient::new(&endpoint.endpoint)?.delete(&name).await?;
            println!("deleted {name}");
            Ok(())
        }
    }
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let zip = package::function_zip(&args.path)?;
    let environment = if args.environment.is_empty() {
        None
    } else {
        let mut vars = serde_json::Map::new();
        for pair in &args.environment {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--env {pair}: expected KEY=VALUE"))?;
            vars.insert(key.to_owned(), Value::from(value));
        }
        Some(vars)
    };
    let settings = FunctionSettings {
        runtime: args.runtime,
        handler: args.handler,
        timeout: args.timeout,
        memory: args.memory,
        environment,
        description: args.description,
    };
    let client = LambdaClient::new(&args.endpoint.endpoint)?;
    let function = client.deploy(&args.name, &zip, &settings).await?;
    println!(
        "deployed {} ({}, {} bytes, sha256 {})",
        args.name,
        function["Runtime"].as_str().unwrap_or("?"),
        function["CodeSize"],
        function["CodeSha256"].as_str().unwrap_or("?"),
    );
    Ok(())
}

pub async fn invoke(args: InvokeArgs) -> anyhow::Result<()> {
    let payload = match args.payload.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {path}"))?,
        None => args.payload.into_bytes(),
    };
    let client = LambdaClient::new(&args.endpoint.endpoint)?;
    let invocation = client
        .invoke(&args.name, payload, &args.invocation_type, args.tail)
        .await?;
    if let Some(log) = &invocation.log {
        eprint!("{log}");
        if !log.ends_with('\n') {
            eprintln!();
        }
    }
    if let Some(request_id) = &invocation.request_id {
        eprintln!(
            "RequestId: {request_id}  StatusCode: {}  ExecutedVersion: {}",
            invocation.status.as_u16(),
            invocation.executed_version.as_deref().unwrap_or("-")
        );
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&invocation.payload)?;
    if !invocation.payload.is_empty() {
        writeln!(stdout)?;
    }
    if let Some(error) = invocation.function_error {
        bail!("the function failed ({error})");
    }
    Ok(())
}

pub async fn invocations(command: InvocationCommand) -> anyhow::Result<()> {
    match command {
        InvocationCommand::Show {
            request_id,
            endpoint,
        } => {
            let record = LambdaClient::new(&endpoint.endpoint)?
                .invocation_record(&request_id)
                .await?;
            print_json(&record)
        }
        InvocationCommand::List {
            function,
            status,
            limit,
            next,
            endpoint,
        } => {
            let page = LambdaClient::new(&endpoint.endpoint)?
                .nimbus(
                    Method::GET,
                    "invocations",
                    &[
                        ("function", function),
                        ("status", status),
                        ("limit", Some(limit.to_string())),
                        ("next", next),
                    ],
                )
                .await?;
            println!(
                "{:<36}  {:<24} {:<15} {:<14} {:>8}  CREATED",
                "REQUEST ID", "FUNCTION", "TYPE", "STATUS", "ATTEMPTS"
            );
            for record in page["invocations"].as_array().into_iter().flatten() {
                println!(
                    "{:<36}  {:<24} {:<15} {:<14} {:>8}  {}",
                    text(&record["requestId"]),
                    text(&record["functionName"]),
                    text(&record["invocationType"]),
                    text(&record["status"]),
                    record["attempts"],
                    text(&record["createdAt"]),
                );
            }
            print_next(&page, "nimbus invocations list --next");
            Ok(())
        }
    }
}

pub async fn route(command: RouteCommand) -> anyhow::Result<()> {
    match command {
        RouteCommand::Add(args) => {
            let client = LambdaClient::new(&args.endpoint.endpoint)?;
            let (function, qualifier) = match args.function.split_once(':') {
                Some((name, qualifier)) => (name.to_owned(), Some(qualifier.to_owned())),
                None => (args.function.clone(), None),
            };
            let method = args.method.to_ascii_uppercase();
            let mut body = json!({
                "method": method,
                "path": args.path,
                "functionName": function,
                "qualifier": qualifier,
                "invocationType": if args.run_async { "Event" } else { "RequestResponse" },
                "timeoutMs": u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX),
                "authType": args.auth,
            });
            if !args.cors_origins.is_empty() {
                let methods = if args.cors_methods.is_empty() {
                    vec![if method == "ANY" {
                        "*".to_owned()
                    } else {
                        method.clone()
                    }]
                } else {
                    args.cors_methods
                };
                body["cors"] = json!({
                    "AllowOrigins": args.cors_origins,
                    "AllowMethods": methods,
                    "AllowHeaders": args.cors_headers,
                });
            }
            let route = client.post_json("nimbus/v1/routes", &body).await?;
            println!(
                "route {} added: {} -> {}",
                text(&route["routeId"]),
                text(&route["routeKey"]),
                args.function
            );
            Ok(())
        }
        RouteCommand::List(endpoint) => {
            let routes = LambdaClient::new(&endpoint.endpoint)?
                .nimbus(Method::GET, "routes", &[])
                .await?;
            println!(
                "{:<12}  {:<7} {:<32} {:<24} {:<15} AUTH",
                "ID", "METHOD", "PATH", "FUNCTION", "TYPE"
            );
            for route in routes["routes"].as_array().into_iter().flatten() {
                let function = match route["qualifier"].as_str() {
                    Some(qualifier) => format!("{}:{qualifier}", text(&route["functionName"])),
                    None => text(&route["functionName"]).to_owned(),
                };
                println!(
                    "{:<12}  {:<7} {:<32} {:<24} {:<15} {}",
                    text(&route["routeId"]),
                    text(&route["method"]),
                    text(&route["path"]),
                    function,
                    text(&route["invocationType"]),
                    text(&route["authType"]),
                );
            }
            Ok(())
        }
        RouteCommand::Rm { route, endpoint } => {
            let client = LambdaClient::new(&endpoint.endpoint)?;
            let route_id = match route.as_slice() {
                [id] => id.clone(),
                [method, path] => {
                    let method = method.to_ascii_uppercase();
                    let routes = client.nimbus(Method::GET, "routes", &[]).await?;
                    routes["routes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|r| r["method"] == method.as_str() && r["path"] == path.as_str())
                        .and_then(|r| r["routeId"].as_str())
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow::anyhow!("no route {method} {path}"))?
                }
                _ => anyhow::bail!("name a route by its id, or by METHOD PATH"),
            };
            client
                .nimbus(Method::DELETE, &format!("routes/{route_id}"), &[])
                .await?;
            println!("route {route_id} removed");
            Ok(())
        }
    }
}

pub async fn dead_letters(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List {
            filter,
            limit,
            next,
            endpoint,
        } => {
            let mut query = filter_query(filter);
            query.push(("limit", Some(limit.to_string())));
            query.push(("next", next));
            let page = LambdaClient::new(&endpoint.endpoint)?
                .nimbus(Method::GET, "dead-letters", &query)
                .await?;
            println!(
                "{:<36}  {:<24} {:<18} {:>8}  {:<25} REDRIVEN AS",
                "REQUEST ID", "FUNCTION", "REASON", "ATTEMPTS", "DEAD-LETTERED"
            );
            for letter in page["deadLetters"].as_array().into_iter().flatten() {
                println!(
                    "{:<36}  {:<24} {:<18} {:>8}  {:<25} {}",
                    text(&letter["requestId"]),
                    text(&letter["functionName"]),
                    text(&letter["reason"]),
                    letter["attempts"],
                    text(&letter["deadLetteredAt"]),
                    text(&letter["redrive"]["requestId"]),
                );
            }
            print_next(&page, "nimbus dlq list --next");
            Ok(())
        }
        DlqCommand::Show {
            request_id,
            endpoint,
        } => {
            let letter = LambdaClient::new(&endpoint.endpoint)?
                .nimbus(Method::GET, &format!("dead-letters/{request_id}"), &[])
                .await?;
            print_json(&letter)
        }
        DlqCommand::Redrive(selection) => {
            let client = LambdaClient::new(&selection.endpoint.endpoint)?;
            let result = match selection.request_id {
                Some(id) => {
                    client
                        .nimbus(Method::POST, &format!("dead-letters/{id}/redrive"), &[])
                        .await?
                }
                None => {
                    let query = selection_query(selection.filter, selection.all)?;
                    client
                        .nimbus(Method::POST, "dead-letters/redrive", &query)
                        .await?
                }
            };
            let redriven = result["redriven"].as_array().cloned().unwrap_or_default();
            for entry in &redriven {
                println!(
                    "redrove {} as {}",
                    text(&entry["originalRequestId"]),
                    text(&entry["requestId"])
                );
            }
            println!("{} dead letter(s) redriven", redriven.len());
            Ok(())
        }
        DlqCommand::Purge(selection) => {
            let client = LambdaClient::new(&selection.endpoint.endpoint)?;
            let purged = match selection.request_id {
                Some(id) => {
                    client
                        .nimbus(Method::DELETE, &format!("dead-letters/{id}"), &[])
                        .await?;
                    1
                }
                None => {
                    let query = selection_query(selection.filter, selection.all)?;
                    let result = client
                        .nimbus(Method::DELETE, "dead-letters", &query)
                        .await?;
                    result["purged"].as_u64().unwrap_or(0)
                }
            };
            println!("{purged} dead letter(s) purged");
            Ok(())
        }
    }
}

fn filter_query(filter: DeadLetterFilterArgs) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("function", filter.function),
        ("since", filter.since),
        ("until", filter.until),
    ]
}

/// A filter for redrive or purge; the gateway refuses one that names nothing, and so do we,
/// with advice that fits the command line.
fn selection_query(
    filter: DeadLetterFilterArgs,
    all: bool,
) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
    if filter.function.is_none() && !all {
        bail!("name the letters: a REQUEST_ID, --function NAME (with --since/--until), or --all");
    }
    let mut query = filter_query(filter);
    query.push(("all", all.then(|| "true".to_owned())));
    Ok(query)
}

fn print_next(page: &Value, command: &str) {
    if let Some(token) = page["nextToken"].as_str() {
        println!("more: {command} {token}");
    }
}

/// A JSON string member as plain text; `-` when absent.
fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
