//! The client commands (`nimbus fn ...`, `nimbus invoke`, `nimbus invocation get`): thin
//! wrappers over the gateway's HTTP API that print what it answered.

use std::io::Write as _;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::args::{DeployArgs, FunctionCommand, InvocationCommand, InvokeArgs};
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

pub async fn invocation(command: InvocationCommand) -> anyhow::Result<()> {
    match command {
        InvocationCommand::Get {
            request_id,
            endpoint,
        } => {
            let record = LambdaClient::new(&endpoint.endpoint)?
                .invocation_record(&request_id)
                .await?;
            print_json(&record)
        }
    }
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
