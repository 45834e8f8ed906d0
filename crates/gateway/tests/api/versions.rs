//! Versions, aliases, reserved concurrency, tags and the account settings, through the API.

use serde_json::{Value, json};

use crate::harness::{FUNCTIONS, Gateway};

async fn publish(gateway: &Gateway, name: &str, body: Value) -> Value {
    let answer = gateway
        .post_json(&format!("{FUNCTIONS}/{name}/versions"), &body)
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    answer.json()
}

async fn set_timeout(gateway: &Gateway, name: &str, timeout: u32) {
    let answer = gateway
        .put_json(
            &format!("{FUNCTIONS}/{name}/configuration"),
            &json!({"Timeout": timeout}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

async fn invoke_qualified(
    gateway: &Gateway,
    name: &str,
    qualifier: &str,
) -> crate::harness::Answer {
    let url = gateway.url(&format!(
        "{FUNCTIONS}/{name}/invocations?Qualifier={qualifier}"
    ));
    gateway.send(gateway.http.post(url).body("{}")).await
}

#[tokio::test]
async fn published_versions_are_snapshots_listed_after_latest() {
    let gateway = Gateway::start().await;
    gateway.create("fn").await;
    let one = publish(&gateway, "fn", json!({"Description": "first"})).await;
    assert_eq!(one["Version"], "1");
    assert_eq!(one["Description"], "first");
    assert!(
        one["FunctionArn"]
            .as_str()
            .unwrap()
            .ends_with(":function:fn:1")
    );
    // Nothing changed: publishing again answers version 1.
    assert_eq!(publish(&gateway, "fn", json!({})).await["Version"], "1");

    set_timeout(&gateway, "fn", 30).await;
    let two = publish(&gateway, "fn", json!({})).await;
    assert_eq!(two["Version"], "2");
    assert_eq!(two["Timeout"], 30);
    let v1 = gateway
        .get(&format!("{FUNCTIONS}/fn/configuration?Qualifier=1"))
        .await;
    assert_eq!(v1.status, 200, "{}", v1.text());
    assert_eq!(v1.json()["Timeout"], 3);
    let v2 = gateway.get(&format!("{FUNCTIONS}/fn:2")).await;
    assert_eq!(v2.json()["Configuration"]["Version"], "2");

    let listed = gateway
        .get(&format!("{FUNCTIONS}/fn/versions?MaxItems=2"))
        .await;
    let page = listed.json();
    let versions: Vec<&str> = page["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["$LATEST", "1"]);
    let marker = page["NextMarker"].as_str().unwrap();
    let rest = gateway
        .get(&format!("{FUNCTIONS}/fn/versions?Marker={marker}"))
        .await
        .json();
    assert_eq!(rest["Versions"][0]["Version"], "2");
    assert!(rest.get("NextMarker").is_none(), "{rest}");

    // A page of one ends at $LATEST; its marker leads on to version 1 (boto3's paginator
    // with PageSize 1 walks exactly this way).
    let mut marker: Option<String> = None;
    let mut walked = Vec::new();
    loop {
        let query = marker.map_or(String::new(), |m| format!("&Marker={m}"));
        let page = gateway
            .get(&format!("{FUNCTIONS}/fn/versions?MaxItems=1{query}"))
            .await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        walked.push(page["Versions"][0]["Version"].as_str().unwrap().to_owned());
        marker = page["NextMarker"].as_str().map(str::to_owned);
        if marker.is_none() {
            break;
        }
    }
    assert_eq!(walked, ["$LATEST", "1", "2"]);

    gateway
        .get(&format!("{FUNCTIONS}/fn/configuration?Qualifier=9"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    let stale = gateway
        .post_json(
            &format!("{FUNCTIONS}/fn/versions"),
            &json!({"RevisionId": "old"}),
        )
        .await;
    stale.assert_error(412, "PreconditionFailedException");
    let wrong_code = gateway
        .post_json(
            &format!("{FUNCTIONS}/fn/versions"),
            &json!({"CodeSha256": "abc"}),
        )
        .await;
    wrong_code.assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn invoking_a_version_or_alias_runs_it_and_says_which() {
    let gateway = Gateway::start().await;
    gateway.create("fn").await;
    publish(&gateway, "fn", json!({})).await;
    set_timeout(&gateway, "fn", 30).await;

    let answer = invoke_qualified(&gateway, "fn", "1").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("x-amz-executed-version"), Some("1"));
    assert_eq!(gateway.invoker.last().function.timeout_secs, 3);
    let latest = gateway.invoke("fn", "{}").await;
    assert_eq!(latest.header("x-amz-executed-version"), Some("$LATEST"));
    assert_eq!(gateway.invoker.last().function.timeout_secs, 30);

    let created = gateway
        .post_json(
            &format!("{FUNCTIONS}/fn/aliases"),
            &json!({"Name": "live", "FunctionVersion": "1"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let answer = invoke_qualified(&gateway, "fn", "live").await;
    assert_eq!(answer.header("x-amz-executed-version"), Some("1"));

    invoke_qualified(&gateway, "fn", "nope")
        .await
        .assert_error(404, "ResourceNotFoundException");
    invoke_qualified(&gateway, "fn", "7")
        .await
        .assert_error(404, "ResourceNotFoundException");
    // An event sent to an alias is queued for it: the worker resolves it when it runs.
    let url = gateway.url(&format!("{FUNCTIONS}/fn:live/invocations"));
    let answer = gateway
        .send(
            gateway
                .http
                .post(url)
                .header("x-amz-invocation-type", "Event")
                .body("{}"),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(gateway.take_queued().await[0].qualifier, "live");
}

#[tokio::test]
async fn weighted_aliases_split_traffic_between_two_versions() {
    let gateway = Gateway::start().await;
    gateway.create("fn").await;
    publish(&gateway, "fn", json!({})).await;
    set_timeout(&gateway, "fn", 30).await;
    publish(&gateway, "fn", json!({})).await;
    let created = gateway
        .post_json(
            &format!("{FUNCTIONS}/fn/aliases"),
            &json!({
                "Name": "canary",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}}
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(
        created.json()["RoutingConfig"]["AdditionalVersionWeights"]["2"],
        0.5
    );
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..200 {
        let answer = invoke_qualified(&gateway, "fn", "canary").await;
        let version = answer.header("x-amz-executed-version").unwrap().to_owned();
        *seen.entry(version).or_default() += 1;
    }
    // 200 fair draws: each side gets at least 50 with overwhelming probability.
    assert!(seen["1"] >= 50 && seen["2"] >= 50, "{seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn aliases_are_created_read_updated_listed_and_deleted() {
    let gateway = Gateway::start().await;
    gateway.create("fn").await;
    publish(&gateway, "fn", json!({})).await;
    let aliases = format!("{FUNCTIONS}/fn/aliases");
    let body = json!({"Name": "live", "FunctionVersion": "1", "Description": "prod"});
    let created = gateway.post_json(&aliases, &body).await.json();
    assert!(
        created["AliasArn"]
            .as_str()
            .unwrap()
            .ends_with(":function:fn:live")
    );
    gateway
        .post_json(&aliases, &body)
        .await
        .assert_error(409, "ResourceConflictException");
    gateway
        .post_json(&aliases, &json!({"Name": "x", "FunctionVersion": "5"}))
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .post_json(&aliases, &json!({"Name": "123", "FunctionVersion": "1"}))
        .await
        .assert_error(400, "InvalidParameterValueException");
    gateway
        .post_json(
            &aliases,
            &json!({"Name": "w", "FunctionVersion": "1",
                    "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}),
        )
        .await
        .assert_error(400, "InvalidParameterValueException");

    let got = gateway.get(&format!("{aliases}/live")).await.json();
    assert_eq!(got, created);
    gateway
        .put_json(
            &format!("{aliases}/live"),
            &json!({"Description": "moved", "RevisionId": "stale"}),
        )
        .await
        .assert_error(412, "PreconditionFailedException");
    let updated = gateway
        .put_json(
            &format!("{aliases}/live"),
            &json!({"FunctionVersion": "$LATEST", "RevisionId": created["RevisionId"]}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(updated.json()["FunctionVersion"], "$LATEST");
    assert_eq!(updated.json()["Description"], "prod");

    gateway
        .post_json(&aliases, &json!({"Name": "beta", "FunctionVersion": "1"}))
        .await;
    let listed = gateway
        .get(&format!("{aliases}?FunctionVersion=1"))
        .await
        .json();
    assert_eq!(listed["Aliases"].as_array().unwrap().len(), 1);
    assert_eq!(listed["Aliases"][0]["Name"], "beta");
    let paged = gateway.get(&format!("{aliases}?MaxItems=1")).await.json();
    assert_eq!(paged["NextMarker"], "beta");

    // A version an alias points at cannot be deleted; once free, it can.
    gateway
        .delete(&format!("{FUNCTIONS}/fn?Qualifier=1"))
        .await
        .assert_error(409, "ResourceConflictException");
    assert_eq!(gateway.delete(&format!("{aliases}/beta")).await.status, 204);
    gateway
        .delete(&format!("{aliases}/beta"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    assert_eq!(
        gateway
            .delete(&format!("{FUNCTIONS}/fn?Qualifier=1"))
            .await
            .status,
        204
    );
    gateway
        .delete(&format!("{FUNCTIONS}/fn?Qualifier=$LATEST"))
        .await
        .assert_error(400, "InvalidParameterValueException");
    assert_eq!(gateway.get(&format!("{FUNCTIONS}/fn")).await.status, 200);
}

#[tokio::test]
async fn reserved_concurrency_is_set_read_and_removed() {
    let gateway = Gateway::start().await;
    gateway.create("fn").await;
    let put = |n: Value| {
        let gateway = &gateway;
        async move {
            gateway
                .put_json(
                    "/2017-10-31/functions/fn/concurrency",
                    &json!({"ReservedConcurrentExecutions": n}),
                )
                .await
        }
    };
    let answer = put(json!(5)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({"ReservedConcurrentExecutions": 5}));
    let got = gateway.get("/2019-09-30/functions/fn/concurrency").await;
    assert_eq!(got.json(), json!({"ReservedConcurrentExecutions": 5}));
    let function = gateway.get(&format!("{FUNCTIONS}/fn")).await.json();
    assert_eq!(function["Concurrency"]["ReservedConcurrentExecutions"], 5);

    put(json!(-1))
        .await
        .assert_error(400, "InvalidParameterValueException");
    // The account's 1000 must keep 100 unreserved.
    put(json!(901))
        .await
        .assert_error(400, "InvalidParameterValueException");
    let settings = gateway.get("/2016-08-19/account-settings/").await.json();
    assert_eq!(settings["AccountLimit"]["ConcurrentExecutions"], 1000);
    assert_eq!(
        settings["AccountLimit"]["UnreservedConcurrentExecutions"],
        995
    );
    assert_eq!(settings["AccountUsage"]["FunctionCount"], 1);

    assert_eq!(
        gateway
            .delete("/2017-10-31/functions/fn/concurrency")
            .await
            .status,
        204
    );
    let got = gateway.get("/2019-09-30/functions/fn/concurrency").await;
    assert_eq!(got.json(), json!({}));
    gateway
        .get("/2019-09-30/functions/nope/concurrency")
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn zero_reserved_concurrency_stops_synchronous_calls() {
    let gateway = Gateway::start().await;
    gateway.create("fn").await;
    let answer = gateway
        .put_json(
            "/2017-10-31/functions/fn/concurrency",
            &json!({"ReservedConcurrentExecutions": 0}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // The harness invoker does not enforce limits; the gateway passes the limit on.
    gateway.invoke("fn", "{}").await;
    assert_eq!(
        gateway.invoker.last().function.reserved_concurrency,
        Some(0)
    );
}

#[tokio::test]
async fn tags_are_added_listed_and_removed_on_the_function_arn() {
    let gateway = Gateway::start().await;
    let created = gateway.create("fn").await;
    let arn = created["FunctionArn"].as_str().unwrap().to_owned();
    let path = format!("/2017-03-31/tags/{}", arn.replace(':', "%3A"));
    let answer = gateway
        .post_json(&path, &json!({"Tags": {"team": "orders", "tier": "1"}}))
        .await;
    assert_eq!(answer.status, 204, "{}", answer.text());
    let listed = gateway.get(&path).await.json();
    assert_eq!(listed, json!({"Tags": {"team": "orders", "tier": "1"}}));
    let function = gateway.get(&format!("{FUNCTIONS}/fn")).await.json();
    assert_eq!(function["Tags"]["team"], "orders");

    let answer = gateway
        .delete(&format!("{path}?tagKeys=tier&tagKeys=nope"))
        .await;
    assert_eq!(answer.status, 204, "{}", answer.text());
    assert_eq!(
        gateway.get(&path).await.json(),
        json!({"Tags": {"team": "orders"}})
    );

    gateway
        .post_json(&path, &json!({"Tags": {"aws:reserved": "x"}}))
        .await
        .assert_error(400, "InvalidParameterValueException");
    let missing = format!(
        "/2017-03-31/tags/{}",
        arn.replace("fn", "nope").replace(':', "%3A")
    );
    gateway
        .get(&missing)
        .await
        .assert_error(404, "ResourceNotFoundException");
}
