//! Provisioned concurrency configurations through the API: put, get, list and delete, and
//! the rules on qualifiers and reserved concurrency. (The invoker's tests start the
//! instances.)

use serde_json::{Value, json};

use crate::harness::{FUNCTIONS, Gateway};

const PROVISIONED: &str = "/2019-09-30/functions";

async fn with_version_and_alias(gateway: &Gateway, name: &str) {
    gateway.create(name).await;
    let published = gateway
        .post_json(&format!("{FUNCTIONS}/{name}/versions"), &json!({}))
        .await;
    assert_eq!(published.status, 201, "{}", published.text());
    let alias = gateway
        .post_json(
            &format!("{FUNCTIONS}/{name}/aliases"),
            &json!({"Name": "live", "FunctionVersion": "1"}),
        )
        .await;
    assert_eq!(alias.status, 201, "{}", alias.text());
}

async fn put(
    gateway: &Gateway,
    name: &str,
    qualifier: &str,
    count: Value,
) -> crate::harness::Answer {
    gateway
        .put_json(
            &format!("{PROVISIONED}/{name}/provisioned-concurrency?Qualifier={qualifier}"),
            &json!({ "ProvisionedConcurrentExecutions": count }),
        )
        .await
}

#[tokio::test]
async fn configs_are_put_read_listed_and_deleted() {
    let gateway = Gateway::start().await;
    with_version_and_alias(&gateway, "fn").await;

    let answer = put(&gateway, "fn", "1", json!(2)).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["RequestedProvisionedConcurrentExecutions"], 2);
    assert_eq!(body["AllocatedProvisionedConcurrentExecutions"], 0);
    assert_eq!(body["AvailableProvisionedConcurrentExecutions"], 0);
    assert_eq!(body["Status"], "IN_PROGRESS");
    assert!(body.get("StatusReason").is_none(), "{body}");
    assert!(body["LastModified"].as_str().unwrap().ends_with("+0000"));

    let got = gateway
        .get(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?Qualifier=1"
        ))
        .await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["RequestedProvisionedConcurrentExecutions"], 2);
    assert_eq!(got.json()["Status"], "IN_PROGRESS");
    // The qualifier may come in the name too.
    let got = gateway
        .get(&format!("{PROVISIONED}/fn:1/provisioned-concurrency"))
        .await;
    assert_eq!(got.status, 200, "{}", got.text());

    assert_eq!(put(&gateway, "fn", "live", json!(1)).await.status, 202);
    let listed = gateway
        .get(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?List=ALL"
        ))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let items = listed.json()["ProvisionedConcurrencyConfigs"].clone();
    let arns: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["FunctionArn"].as_str().unwrap())
        .collect();
    assert_eq!(arns.len(), 2);
    assert!(arns[0].ends_with(":function:fn:1"), "{arns:?}");
    assert!(arns[1].ends_with(":function:fn:live"), "{arns:?}");
    assert_eq!(items[1]["RequestedProvisionedConcurrentExecutions"], 1);
    assert!(listed.json().get("NextMarker").is_none());

    let first = gateway
        .get(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?List=ALL&MaxItems=1"
        ))
        .await
        .json();
    assert_eq!(
        first["ProvisionedConcurrencyConfigs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let marker = first["NextMarker"].as_str().unwrap();
    let rest = gateway
        .get(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?List=ALL&Marker={marker}"
        ))
        .await
        .json();
    assert!(
        rest["ProvisionedConcurrencyConfigs"][0]["FunctionArn"]
            .as_str()
            .unwrap()
            .ends_with(":live")
    );
    gateway
        .get(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?List=ALL&MaxItems=51"
        ))
        .await
        .assert_error(400, "InvalidParameterValueException");

    let deleted = gateway
        .delete(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?Qualifier=1"
        ))
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    gateway
        .get(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?Qualifier=1"
        ))
        .await
        .assert_error(404, "ProvisionedConcurrencyConfigNotFoundException");
    gateway
        .delete(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?Qualifier=1"
        ))
        .await
        .assert_error(404, "ProvisionedConcurrencyConfigNotFoundException");

    // Deleting the function deletes its configurations.
    assert_eq!(gateway.delete(&format!("{FUNCTIONS}/fn")).await.status, 204);
    gateway
        .get(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?List=ALL"
        ))
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn only_published_versions_and_aliases_that_exist_take_a_config() {
    let gateway = Gateway::start().await;
    with_version_and_alias(&gateway, "fn").await;

    let message = put(&gateway, "fn", "$LATEST", json!(1))
        .await
        .assert_error(400, "InvalidParameterValueException");
    assert_eq!(
        message,
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
    );
    gateway
        .put_json(
            &format!("{PROVISIONED}/fn/provisioned-concurrency"),
            &json!({"ProvisionedConcurrentExecutions": 1}),
        )
        .await
        .assert_error(400, "InvalidParameterValueException");
    put(&gateway, "fn", "7", json!(1))
        .await
        .assert_error(404, "ResourceNotFoundException");
    put(&gateway, "fn", "nope", json!(1))
        .await
        .assert_error(404, "ResourceNotFoundException");
    put(&gateway, "missing", "1", json!(1))
        .await
        .assert_error(404, "ResourceNotFoundException");
    for bad in [json!(0), json!(-1), json!(null)] {
        put(&gateway, "fn", "1", bad)
            .await
            .assert_error(400, "InvalidParameterValueException");
    }
    gateway
        .get(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?Qualifier=live"
        ))
        .await
        .assert_error(404, "ProvisionedConcurrencyConfigNotFoundException");
    gateway
        .get(&format!(
            "{PROVISIONED}/fn/provisioned-concurrency?Qualifier=$LATEST"
        ))
        .await
        .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn provisioned_concurrency_stays_within_reserved_concurrency() {
    let gateway = Gateway::start().await;
    with_version_and_alias(&gateway, "fn").await;
    let reserved = gateway
        .put_json(
            "/2017-10-31/functions/fn/concurrency",
            &json!({"ReservedConcurrentExecutions": 3}),
        )
        .await;
    assert_eq!(reserved.status, 200, "{}", reserved.text());

    assert_eq!(put(&gateway, "fn", "1", json!(2)).await.status, 202);
    put(&gateway, "fn", "live", json!(2))
        .await
        .assert_error(400, "InvalidParameterValueException");
    assert_eq!(put(&gateway, "fn", "live", json!(1)).await.status, 202);
    // Replacing a config counts its new value, not the old one.
    assert_eq!(put(&gateway, "fn", "1", json!(1)).await.status, 202);
    assert_eq!(put(&gateway, "fn", "live", json!(2)).await.status, 202);

    // Nor can reserved concurrency drop below what is provisioned.
    gateway
        .put_json(
            "/2017-10-31/functions/fn/concurrency",
            &json!({"ReservedConcurrentExecutions": 2}),
        )
        .await
        .assert_error(400, "InvalidParameterValueException");
    let reserved = gateway
        .put_json(
            "/2017-10-31/functions/fn/concurrency",
            &json!({"ReservedConcurrentExecutions": 4}),
        )
        .await;
    assert_eq!(reserved.status, 200, "{}", reserved.text());
}
