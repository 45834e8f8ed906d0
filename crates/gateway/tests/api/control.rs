//! The control API: functions created, read, listed, updated and deleted, and every kind of
//! bad input refused in Lambda's shape without writing anything.

use nimbus_core::CodeSha256;
use serde_json::{Value, json};

use crate::harness::{FUNCTIONS, Gateway, base64, create_body, handler_zip, zip_of};

fn is_lambda_timestamp(value: &Value) -> bool {
    // 2024-01-31T12:34:56.789+0000
    let text = value.as_str().unwrap_or_default();
    let bytes = text.as_bytes();
    text.len() == 28
        && bytes[10] == b'T'
        && bytes[19] == b'.'
        && text.ends_with("+0000")
        && time::OffsetDateTime::parse(
            &text.replace("+0000", "+00:00"),
            &time::format_description::well_known::Rfc3339,
        )
        .is_ok()
}

#[tokio::test]
async fn create_then_read_a_function() {
    let gateway = Gateway::start().await;
    let zip = handler_zip();
    let created = gateway.create("hello").await;

    assert_eq!(created["FunctionName"], "hello");
    assert_eq!(
        created["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:hello"
    );
    assert_eq!(created["Runtime"], "python3.12");
    assert_eq!(created["Handler"], "index.handler");
    assert_eq!(created["Role"], "arn:aws:iam::000000000000:role/nimbus");
    assert_eq!(created["Timeout"], 3);
    assert_eq!(created["MemorySize"], 128);
    assert_eq!(created["Description"], "");
    assert_eq!(created["CodeSize"], zip.len());
    assert_eq!(created["CodeSha256"], CodeSha256::of(&zip).to_base64());
    assert_eq!(created["Version"], "$LATEST");
    assert_eq!(created["State"], "Active");
    assert_eq!(created["LastUpdateStatus"], "Successful");
    assert_eq!(created["PackageType"], "Zip");
    assert_eq!(created["Architectures"], json!(["x86_64"]));
    assert_eq!(created["TracingConfig"], json!({"Mode": "PassThrough"}));
    assert_eq!(created["EphemeralStorage"], json!({"Size": 512}));
    assert_eq!(
        created["SnapStart"],
        json!({"ApplyOn": "None", "OptimizationStatus": "Off"})
    );
    assert_eq!(
        created["LoggingConfig"],
        json!({"LogFormat": "Text", "LogGroup": "/aws/lambda/hello"})
    );
    assert!(is_lambda_timestamp(&created["LastModified"]), "{created}");
    assert!(
        created["RevisionId"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(created.get("Environment").is_none(), "{created}");
    assert!(created.get("ReservedConcurrentExecutions").is_none());

    let configuration = gateway
        .get(&format!("{FUNCTIONS}/hello/configuration"))
        .await;
    assert_eq!(configuration.status, 200);
    assert_eq!(configuration.json(), created);

    let function = gateway.get(&format!("{FUNCTIONS}/hello")).await;
    assert_eq!(function.status, 200);
    let function = function.json();
    assert_eq!(function["Configuration"], created);
    assert_eq!(function["Code"]["RepositoryType"], "S3");
    let location = function["Code"]["Location"].as_str().unwrap();
    assert_eq!(
        location,
        gateway.url(&format!(
            "/nimbus/v1/code/{}",
            CodeSha256::of(&zip).to_hex()
        ))
    );

    let download = gateway.send(gateway.http.get(location)).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.header("content-type"), Some("application/zip"));
    assert_eq!(download.body.as_ref(), zip.as_slice());

    let missing = gateway
        .get(&format!(
            "/nimbus/v1/code/{}",
            CodeSha256::of(b"nothing").to_hex()
        ))
        .await;
    missing.assert_error(404, "ResourceNotFoundException");
    gateway
        .get("/nimbus/v1/code/not-a-sha")
        .await
        .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn create_keeps_the_settings_given() {
    let gateway = Gateway::start().await;
    let mut body = create_body("configured");
    body["Timeout"] = json!(30);
    body["MemorySize"] = json!(512);
    body["Description"] = json!("says hello");
    body["Role"] = json!("arn:aws:iam::123456789012:role/service-role/r");
    body["Environment"] = json!({"Variables": {"GREETING": "hi"}});
    body["Publish"] = json!(true);
    body["PackageType"] = json!("Zip");
    body["Architectures"] = json!(["x86_64"]);
    let created = gateway.post_json(FUNCTIONS, &body).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["Timeout"], 30);
    assert_eq!(created["MemorySize"], 512);
    assert_eq!(created["Description"], "says hello");
    assert_eq!(
        created["Role"],
        "arn:aws:iam::123456789012:role/service-role/r"
    );
    assert_eq!(
        created["Environment"],
        json!({"Variables": {"GREETING": "hi"}})
    );
}

#[tokio::test]
async fn functions_are_listed_a_page_at_a_time() {
    let gateway = Gateway::start().await;
    let empty = gateway.get(&format!("{FUNCTIONS}/")).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json(), json!({"Functions": []}));

    for name in ["e", "c", "a", "d", "b"] {
        gateway.create(name).await;
    }
    let mut names = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &marker {
            Some(marker) => format!("{FUNCTIONS}/?MaxItems=2&Marker={marker}"),
            None => format!("{FUNCTIONS}/?MaxItems=2"),
        };
        let page = gateway.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        let functions = page["Functions"].as_array().unwrap();
        assert!(functions.len() <= 2);
        names.extend(
            functions
                .iter()
                .map(|f| f["FunctionName"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match page.get("NextMarker") {
            Some(next) => marker = Some(next.as_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);

    // Without the trailing slash and with the default page size: everything, no marker.
    let all = gateway.get(FUNCTIONS).await.json();
    assert_eq!(all["Functions"].as_array().unwrap().len(), 5);
    assert!(all.get("NextMarker").is_none());
    assert_eq!(
        all["Functions"][0]["FunctionArn"],
        "arn:aws:lambda:us-east-1:000000000000:function:a"
    );

    for bad in [
        "MaxItems=0",
        "MaxItems=10001",
        "MaxItems=ten",
        "Marker=not%20a%20name",
    ] {
        gateway
            .get(&format!("{FUNCTIONS}/?{bad}"))
            .await
            .assert_error(400, "InvalidParameterValueException");
    }
}

#[tokio::test]
async fn code_updates_change_the_code_and_the_revision() {
    let gateway = Gateway::start().await;
    let created = gateway.create("coded").await;
    let path = format!("{FUNCTIONS}/coded/code");
    let new_zip = zip_of(&[("index.py", b"def handler(e, c):\n    return 2\n")]);

    let stale = gateway
        .put_json(
            &path,
            &json!({"ZipFile": base64(&new_zip), "RevisionId": "not-the-revision"}),
        )
        .await;
    stale.assert_error(412, "PreconditionFailedException");

    let dry = gateway
        .put_json(&path, &json!({"ZipFile": base64(&new_zip), "DryRun": true}))
        .await;
    assert_eq!(dry.status, 200, "{}", dry.text());
    let unchanged = gateway
        .get(&format!("{FUNCTIONS}/coded/configuration"))
        .await
        .json();
    assert_eq!(unchanged, created);

    let updated = gateway
        .put_json(
            &path,
            &json!({"ZipFile": base64(&new_zip), "RevisionId": created["RevisionId"]}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let updated = updated.json();
    assert_eq!(updated["CodeSha256"], CodeSha256::of(&new_zip).to_base64());
    assert_eq!(updated["CodeSize"], new_zip.len());
    assert_ne!(updated["RevisionId"], created["RevisionId"]);
    assert!(updated["LastModified"].as_str() >= created["LastModified"].as_str());
    assert_eq!(updated["Handler"], created["Handler"]);

    let read = gateway.get(&format!("{FUNCTIONS}/coded")).await.json();
    assert_eq!(read["Configuration"], updated);
    assert!(
        read["Code"]["Location"]
            .as_str()
            .unwrap()
            .ends_with(&CodeSha256::of(&new_zip).to_hex())
    );

    // The previous revision is now stale.
    gateway
        .put_json(
            &path,
            &json!({"ZipFile": base64(&handler_zip()), "RevisionId": created["RevisionId"]}),
        )
        .await
        .assert_error(412, "PreconditionFailedException");
    let evil = zip_of(&[("../evil", b"x")]);
    gateway
        .put_json(&path, &json!({"ZipFile": base64(&evil)}))
        .await
        .assert_error(400, "InvalidParameterValueException");
    gateway
        .put_json(&path, &json!({"S3Bucket": "b", "S3Key": "k"}))
        .await
        .assert_error(400, "InvalidParameterValueException");
    gateway
        .put_json(
            &format!("{FUNCTIONS}/ghost/code"),
            &json!({"ZipFile": base64(&new_zip)}),
        )
        .await
        .assert_error(404, "ResourceNotFoundException");
    let after = gateway
        .get(&format!("{FUNCTIONS}/coded/configuration"))
        .await
        .json();
    assert_eq!(after, updated);
}

#[tokio::test]
async fn configuration_updates_change_only_what_is_given() {
    let gateway = Gateway::start().await;
    let created = gateway.create("tuned").await;
    let path = format!("{FUNCTIONS}/tuned/configuration");

    let updated = gateway
        .put_json(
            &path,
            &json!({"Timeout": 60, "Environment": {"Variables": {"MODE": "fast"}}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let updated = updated.json();
    assert_eq!(updated["Timeout"], 60);
    assert_eq!(
        updated["Environment"],
        json!({"Variables": {"MODE": "fast"}})
    );
    assert_eq!(updated["MemorySize"], created["MemorySize"]);
    assert_eq!(updated["Handler"], created["Handler"]);
    assert_eq!(updated["CodeSha256"], created["CodeSha256"]);
    assert_ne!(updated["RevisionId"], created["RevisionId"]);

    gateway
        .put_json(
            &path,
            &json!({"MemorySize": 256, "RevisionId": created["RevisionId"]}),
        )
        .await
        .assert_error(412, "PreconditionFailedException");

    let guarded = gateway
        .put_json(
            &path,
            &json!({"MemorySize": 256, "Environment": {}, "RevisionId": updated["RevisionId"]}),
        )
        .await;
    assert_eq!(guarded.status, 200, "{}", guarded.text());
    let guarded = guarded.json();
    assert_eq!(guarded["MemorySize"], 256);
    assert_eq!(guarded["Timeout"], 60);
    assert!(guarded.get("Environment").is_none(), "{guarded}");

    // Runtime and handler are checked together: a custom runtime needs no module.function.
    gateway
        .put_json(&path, &json!({"Handler": "bootstrap"}))
        .await
        .assert_error(400, "InvalidParameterValueException");
    let custom = gateway
        .put_json(
            &path,
            &json!({"Runtime": "provided.al2023", "Handler": "bootstrap"}),
        )
        .await;
    assert_eq!(custom.status, 200, "{}", custom.text());
    assert_eq!(custom.json()["Runtime"], "provided.al2023");

    for bad in [
        json!({"Timeout": 0}),
        json!({"Timeout": 901}),
        json!({"MemorySize": 64}),
        json!({"Runtime": "java21"}),
        json!({"Role": "not-a-role"}),
        json!({"Environment": {"Variables": {"AWS_REGION": "x"}}}),
    ] {
        gateway
            .put_json(&path, &bad)
            .await
            .assert_error(400, "InvalidParameterValueException");
    }
    let last = gateway.get(&path).await.json();
    assert_eq!(last["Runtime"], "provided.al2023");
    assert_eq!(last["Timeout"], 60);
    gateway
        .put_json(
            &format!("{FUNCTIONS}/ghost/configuration"),
            &json!({"Timeout": 5}),
        )
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn deleted_functions_are_gone() {
    let gateway = Gateway::start().await;
    gateway.create("doomed").await;
    let deleted = gateway.delete(&format!("{FUNCTIONS}/doomed")).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    gateway
        .get(&format!("{FUNCTIONS}/doomed"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .delete(&format!("{FUNCTIONS}/doomed"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    // The name is free again.
    gateway.create("doomed").await;
}

#[tokio::test]
async fn a_taken_name_is_a_conflict() {
    let gateway = Gateway::start().await;
    gateway.create("twice").await;
    let again = gateway.post_json(FUNCTIONS, &create_body("twice")).await;
    let message = again.assert_error(409, "ResourceConflictException");
    assert_eq!(message, "Function already exist: twice");
}

#[tokio::test]
async fn unknown_functions_are_not_found() {
    let gateway = Gateway::start().await;
    let answer = gateway.get(&format!("{FUNCTIONS}/nobody")).await;
    assert_eq!(answer.status, 404);
    assert_eq!(
        answer.header("x-amzn-ErrorType"),
        Some("ResourceNotFoundException")
    );
    assert_eq!(
        answer.json(),
        json!({
            "Type": "User",
            "Message": "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nobody"
        })
    );
    gateway
        .get(&format!("{FUNCTIONS}/nobody/configuration"))
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn arns_name_functions() {
    let gateway = Gateway::start().await;
    gateway.create("by-arn").await;
    for reference in [
        "arn:aws:lambda:us-east-1:000000000000:function:by-arn",
        "000000000000:function:by-arn",
        "by-arn:$LATEST",
        "arn:aws:lambda:us-east-1:000000000000:function:by-arn:%24LATEST",
    ] {
        let answer = gateway
            .get(&format!("{FUNCTIONS}/{reference}/configuration"))
            .await;
        assert_eq!(answer.status, 200, "{reference}: {}", answer.text());
        assert_eq!(answer.json()["FunctionName"], "by-arn");
    }
    // Versions are not published yet: any other qualifier names nothing.
    for path in [
        format!("{FUNCTIONS}/by-arn:1"),
        format!("{FUNCTIONS}/by-arn?Qualifier=2"),
        format!("{FUNCTIONS}/arn:aws:lambda:us-east-1:000000000000:function:by-arn:live"),
    ] {
        gateway
            .get(&path)
            .await
            .assert_error(404, "ResourceNotFoundException");
    }
    gateway
        .get(&format!("{FUNCTIONS}/by-arn:1?Qualifier=2"))
        .await
        .assert_error(400, "InvalidParameterValueException");
    gateway
        .get(&format!("{FUNCTIONS}/arn:aws:s3:::bucket"))
        .await
        .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn invalid_settings_are_refused_and_nothing_is_created() {
    let gateway = Gateway::start().await;
    let with = |member: &str, value: Value| {
        let mut body = create_body("refused");
        body[member] = value;
        body
    };
    let without = |member: &str| {
        let mut body = create_body("refused");
        body.as_object_mut().unwrap().remove(member);
        body
    };
    let refused = [
        with("FunctionName", json!("not/a name")),
        with("FunctionName", json!("x".repeat(65))),
        with("Runtime", json!("python2.7")),
        with("Runtime", json!("cobol")),
        with("Handler", json!("index")),
        with("Handler", json!("in dex.handler")),
        with("Timeout", json!(0)),
        with("Timeout", json!(901)),
        with("Timeout", json!(-1)),
        with("MemorySize", json!(127)),
        with("MemorySize", json!(10241)),
        with("Timeout", json!("ten")),
        with("Role", json!("")),
        with("PackageType", json!("Image")),
        with("Architectures", json!(["arm64"])),
        with("Code", json!({"S3Bucket": "bucket", "S3Key": "code.zip"})),
        with("Code", json!({"ImageUri": "example.com/image:latest"})),
        with("Code", json!({})),
        with("Code", json!({"ZipFile": "%%% not base64 %%%"})),
        without("FunctionName"),
        without("Runtime"),
        without("Handler"),
        without("Code"),
    ];
    for body in refused {
        let answer = gateway.post_json(FUNCTIONS, &body).await;
        answer.assert_error(400, "InvalidParameterValueException");
    }
    let s3 = gateway
        .post_json(
            FUNCTIONS,
            &with("Code", json!({"S3Bucket": "b", "S3Key": "k"})),
        )
        .await;
    let message = s3.assert_error(400, "InvalidParameterValueException");
    assert!(message.contains("ZipFile"), "{message}");

    let listed = gateway.get(&format!("{FUNCTIONS}/")).await.json();
    assert_eq!(listed["Functions"], json!([]));
}

#[tokio::test]
async fn bad_zips_are_refused_and_nothing_is_written() {
    let gateway = Gateway::start().await;
    let garbage = base64(b"this is not a zip");
    let evil = base64(&zip_of(&[("index.py", b"x"), ("../evil", b"x")]));
    for (name, zip) in [("garbage", garbage), ("evil", evil)] {
        let mut body = create_body(name);
        body["Code"] = json!({ "ZipFile": zip });
        let answer = gateway.post_json(FUNCTIONS, &body).await;
        answer.assert_error(400, "InvalidParameterValueException");
        gateway
            .get(&format!("{FUNCTIONS}/{name}"))
            .await
            .assert_error(404, "ResourceNotFoundException");
    }
}

#[tokio::test]
async fn malformed_bodies_get_lambda_errors() {
    let gateway = Gateway::start().await;
    let send = |body: &'static str| {
        gateway.send(
            gateway
                .http
                .post(gateway.url(FUNCTIONS))
                .header("content-type", "application/json")
                .body(body),
        )
    };
    send("{not json")
        .await
        .assert_error(400, "InvalidRequestContentException");
    send("")
        .await
        .assert_error(400, "InvalidParameterValueException");
    send("[1, 2]")
        .await
        .assert_error(400, "InvalidParameterValueException");
    // No content type at all is still read as JSON, as SDKs differ in what they send.
    let untyped = gateway
        .send(
            gateway
                .http
                .post(gateway.url(FUNCTIONS))
                .body(create_body("untyped").to_string()),
        )
        .await;
    assert_eq!(untyped.status, 201, "{}", untyped.text());
}

#[tokio::test]
async fn an_oversized_control_request_is_refused_unread() {
    let gateway = Gateway::start().await;
    // Only the head is sent: the answer must come without the body.
    let answer = gateway
        .raw(
            &format!(
                "POST {FUNCTIONS} HTTP/1.1\r\nhost: nimbus\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                nimbus_gateway::MAX_CONTROL_BODY_BYTES + 1
            ),
            b"",
        )
        .await;
    answer.assert_error(413, "RequestTooLargeException");
}

#[tokio::test]
async fn unknown_operations_are_lambda_shaped() {
    let gateway = Gateway::start().await;
    let unknown = gateway.get("/2015-03-31/nothing-here").await;
    unknown.assert_error(404, "UnknownOperationException");
    let wrong_method = gateway
        .send(gateway.http.patch(gateway.url(&format!("{FUNCTIONS}/f"))))
        .await;
    wrong_method.assert_error(405, "UnknownOperationException");
}

#[tokio::test]
async fn a_large_zip_is_accepted() {
    let gateway = Gateway::start().await;
    // Bytes that do not compress, so that the request is megabytes long.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..2 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let zip = zip_of(&[
        ("index.py", b"def handler(e, c): return e"),
        ("data.bin", &noise),
    ]);
    let mut body = create_body("large");
    body["Code"] = json!({ "ZipFile": base64(&zip) });
    let created = gateway.post_json(FUNCTIONS, &body).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["CodeSize"], zip.len());
    assert!(zip.len() > 2 * 1024 * 1024);
}
