//! Custom::AponoIntegration: SSM through moto, Apono through the fake, events through the
//! runtime to the response receiver.
//!
//! Over 400 lines on purpose: one file holds every test of this resource, so that its behaviours
//! read side by side; each test is short and stands alone.

use apono_integration::token::AwsTokens;
use apono_integration::AponoIntegration;
use serde_json::{json, Value};
use std::time::Duration;
use testkit::events::Event;
use testkit::fake_apono::{ApiFault, FakeApono};
use testkit::invoke::Invoker;
use testkit::moto::Moto;
use testkit::receiver::Receiver;

const TYPE: &str = "Custom::AponoIntegration";
const TOKEN: &str = "apono-api-token-5f1e0c7a9b";
const PARAM: &str = "/apono/api-token";
const CONNECTOR: &str = "apono-connector-1";

struct Bench {
    _moto: Moto,
    apono: FakeApono,
    rx: Receiver,
    invoker: Invoker<AponoIntegration<AwsTokens>>,
    tokens: AwsTokens,
    ssm: aws_sdk_ssm::Client,
}

async fn bench() -> Bench {
    let moto = Moto::start().await;
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config());
    ssm.put_parameter()
        .name(PARAM)
        .value(TOKEN)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let apono = FakeApono::start(TOKEN).await;
    apono.add_connector(CONNECTOR, "CONNECTED");
    let tokens = AwsTokens::new(&moto.sdk_config());
    let invoker = Invoker::new(
        AponoIntegration::new(tokens.clone()).also_allowing(["127.0.0.1".to_string()]),
    );
    Bench {
        _moto: moto,
        apono,
        rx: Receiver::start().await,
        invoker,
        tokens,
        ssm,
    }
}

impl Bench {
    fn props(&self) -> Value {
        json!({
            "ConnectorId": CONNECTOR,
            "ApiTokenParameterName": PARAM,
            "ApiUrl": self.apono.url(),
            "OrganizationId": "o-abcdefghij",
            "IntegrationConfig": {"region": "us-east-1", "role_arn": "arn:aws:iam::111111111111:role/apono-management"},
            "ConnectorWaitSeconds": "3",
        })
    }

    async fn send(&self, event: Event) -> Value {
        let before = self.rx.accepted().len();
        self.invoker.invoke(event).await.unwrap();
        let sent = self.rx.accepted();
        assert_eq!(sent.len(), before + 1, "exactly one response");
        sent.last().unwrap().json()
    }

    async fn create(&self, props: Value) -> Value {
        self.send(Event::create(TYPE, &self.rx.url("c")).properties(props))
            .await
    }
}

fn with(mut props: Value, key: &str, value: Value) -> Value {
    props[key] = value;
    props
}

#[tokio::test]
async fn full_lifecycle_creates_updates_in_place_and_deletes_what_it_created() {
    let b = bench().await;
    let created = b.create(b.props()).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    let id = created["Data"]["IntegrationId"]
        .as_str()
        .unwrap()
        .to_string();
    let physical = created["PhysicalResourceId"].as_str().unwrap().to_string();
    assert_eq!(physical, format!("created:{id}"));
    assert_eq!(created["Data"]["Status"], "ACTIVE");
    assert_eq!(
        created["Data"]["IntegrationName"],
        "aws-organization-o-abcdefghij"
    );
    let stored = b.apono.integration(&id).unwrap();
    assert_eq!(stored["type"], "aws-organization");
    assert_eq!(stored["connector_id"], CONNECTOR);
    assert_eq!(stored["integration_config"]["region"], "us-east-1");

    // A real change: PUT in place, same physical ID.
    let new_props = with(
        b.props(),
        "IntegrationConfig",
        json!({"region": "eu-west-1"}),
    );
    let writes = b.apono.writes();
    let updated = b
        .send(
            Event::update(TYPE, &b.rx.url("u"), &physical)
                .properties(new_props.clone())
                .old_properties(b.props()),
        )
        .await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    assert_eq!(updated["PhysicalResourceId"], physical.as_str());
    assert_eq!(b.apono.writes(), writes + 1);
    assert_eq!(
        b.apono.integration(&id).unwrap()["integration_config"]["region"],
        "eu-west-1"
    );

    // No change: not a single Apono call.
    let requests = b.apono.requests().len();
    let noop = b
        .send(
            Event::update(TYPE, &b.rx.url("n"), &physical)
                .properties(new_props.clone())
                .old_properties(new_props.clone()),
        )
        .await;
    assert_eq!(noop["Status"], "SUCCESS");
    assert_eq!(
        b.apono.requests().len(),
        requests,
        "a no-op update calls nothing"
    );

    let deleted = b
        .send(Event::delete(TYPE, &b.rx.url("d"), &physical).properties(new_props))
        .await;
    assert_eq!(deleted["Status"], "SUCCESS");
    assert!(
        b.apono.integration(&id).is_none(),
        "deleted what it created"
    );
}

#[tokio::test]
async fn an_existing_integration_is_adopted_and_left_alone_on_delete() {
    let b = bench().await;
    let existing = b.apono.add_integration(
        "aws-organization-o-abcdefghij",
        "aws-organization",
        CONNECTOR,
    );
    let created = b.create(b.props()).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert_eq!(created["PhysicalResourceId"], format!("adopted:{existing}"));
    assert_eq!(created["Data"]["Ownership"], "adopted");
    assert_eq!(b.apono.integrations().len(), 1, "no duplicate");
    let deleted = b
        .send(
            Event::delete(TYPE, &b.rx.url("d"), &format!("adopted:{existing}"))
                .properties(b.props()),
        )
        .await;
    assert_eq!(deleted["Status"], "SUCCESS");
    assert!(
        b.apono.integration(&existing).is_some(),
        "adopted integration kept"
    );
}

/// Every delivery of one Create, in this process or another, answers with the same
/// integration, owned by the stack: whichever answer CloudFormation takes, Delete removes it.
#[tokio::test]
async fn duplicate_create_delivery_yields_one_integration_owned_by_the_stack() {
    let b = bench().await;
    let event = Event::create(TYPE, &b.rx.url("dup")).properties(b.props());
    b.invoker.invoke(event.clone()).await.unwrap();
    b.invoker.invoke(event.clone()).await.unwrap();
    // The same event in another process (another Lambda container).
    elsewhere(&b).invoke(event).await.unwrap();
    assert_eq!(b.apono.integrations().len(), 1);
    let answers: Vec<Value> = b.rx.accepted().iter().map(|r| r.json()).collect();
    assert_eq!(answers.len(), 3, "every delivery answered");
    let physical = answers[0]["PhysicalResourceId"].as_str().unwrap();
    assert!(physical.starts_with("created:"), "{physical}");
    for answer in &answers {
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
        assert_eq!(answer["PhysicalResourceId"], physical, "{answer}");
    }
    b.send(Event::delete(TYPE, &b.rx.url("d"), physical).properties(b.props()))
        .await;
    assert!(b.apono.integrations().is_empty(), "Delete removed it");
}

/// Another Lambda container with its own handler state.
fn elsewhere(b: &Bench) -> Invoker<AponoIntegration<AwsTokens>> {
    Invoker::new(AponoIntegration::new(b.tokens.clone()).also_allowing(["127.0.0.1".to_string()]))
}

#[tokio::test]
async fn a_connector_unknown_to_apono_is_waited_for_until_it_first_connects() {
    let b = bench().await;
    b.apono.appear_after("just-started", 3);
    let created = b
        .create(with(b.props(), "ConnectorId", json!("just-started")))
        .await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert_eq!(b.apono.integrations().len(), 1);
    assert_eq!(b.apono.integrations()[0]["connector_id"], "just-started");
}

#[tokio::test]
async fn unknown_connector_fails_clearly_after_the_wait_and_rollback_delete_succeeds() {
    let b = bench().await;
    let failed = b
        .create(with(b.props(), "ConnectorId", json!("not-installed")))
        .await;
    assert_eq!(failed["Status"], "FAILED");
    let reason = failed["Reason"].as_str().unwrap();
    assert!(
        reason.contains("connector not-installed is not known to Apono after waiting 3 s"),
        "{reason}"
    );
    let marker = failed["PhysicalResourceId"].as_str().unwrap();
    let rollback = b
        .send(Event::delete(TYPE, &b.rx.url("r"), marker).properties(b.props()))
        .await;
    assert_eq!(rollback["Status"], "SUCCESS");
    assert!(b.apono.integrations().is_empty());
}

#[tokio::test]
async fn delete_of_an_integration_already_gone_succeeds() {
    let b = bench().await;
    let created = b.create(b.props()).await;
    let id = created["Data"]["IntegrationId"].as_str().unwrap();
    b.apono.remove_integration(id);
    let deleted = b
        .send(
            Event::delete(
                TYPE,
                &b.rx.url("d"),
                created["PhysicalResourceId"].as_str().unwrap(),
            )
            .properties(b.props()),
        )
        .await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted}");
}

#[tokio::test]
async fn a_rejected_token_names_the_ssm_parameter_and_the_status() {
    let b = bench().await;
    b.ssm
        .put_parameter()
        .name(PARAM)
        .value("wrong-token-value-123")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let failed = b.create(b.props()).await;
    let reason = failed["Reason"].as_str().unwrap();
    assert!(
        reason
            .contains("Apono rejected the API token in SSM parameter /apono/api-token (HTTP 401)"),
        "{reason}"
    );
    assert!(!reason.contains("wrong-token-value-123"));
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_until_success() {
    let b = bench().await;
    b.apono.fail_next(2, ApiFault::Status(500));
    b.apono.fail_next(
        1,
        ApiFault::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    let started = std::time::Instant::now();
    let created = b.create(b.props()).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(b.apono.integrations().len(), 1);
}

#[tokio::test]
async fn the_matching_integration_is_found_among_150_on_later_pages() {
    let b = bench().await;
    // The name filter is a search: these all match it, on our connector, but none is ours.
    for i in 0..160 {
        b.apono.add_integration(
            &format!("aws-organization-o-abcdefghij-copy-{i}"),
            "aws-organization",
            CONNECTOR,
        );
    }
    let mine = b.apono.add_integration(
        "aws-organization-o-abcdefghij",
        "aws-organization",
        CONNECTOR,
    );
    let created = b.create(b.props()).await;
    assert_eq!(
        created["PhysicalResourceId"],
        format!("adopted:{mine}"),
        "{created}"
    );
    let pages = b
        .apono
        .requests()
        .iter()
        .filter(|(m, p)| m == "GET" && p.starts_with("/api/admin/v4/integrations?"))
        .count();
    assert_eq!(pages, 2, "161 matches at 100 a page");
}

#[tokio::test]
async fn a_connector_that_never_connects_fails_before_the_deadline_saying_its_status() {
    let b = bench().await;
    b.apono.add_connector("sleepy", "DISCONNECTED");
    let started = std::time::Instant::now();
    let failed = b
        .create(with(
            with(b.props(), "ConnectorId", json!("sleepy")),
            "ConnectorWaitSeconds",
            json!("2"),
        ))
        .await;
    let reason = failed["Reason"].as_str().unwrap();
    assert!(
        reason.contains("did not report CONNECTED") && reason.contains("DISCONNECTED"),
        "{reason}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // One that connects after a few polls is waited for.
    b.apono.add_connector("slow", "DISCONNECTED");
    b.apono.connect_after("slow", 2);
    let created = b
        .create(with(b.props(), "ConnectorId", json!("slow")))
        .await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
}

/// The token given as the stack's NoEcho parameter lives in the stack's own secret; the
/// properties carry only that secret's ARN, and never both places.
#[tokio::test]
async fn the_token_can_come_from_the_stacks_own_secret_instead_of_ssm() {
    let b = bench().await;
    let arn = b
        .tokens
        .secrets
        .create_secret()
        .name("apono-api-token")
        .secret_string(TOKEN)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let mut props = b.props();
    props
        .as_object_mut()
        .unwrap()
        .remove("ApiTokenParameterName");
    props["ApiTokenSecretArn"] = json!(arn);
    let created = b.create(props.clone()).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert!(!created.to_string().contains(TOKEN));

    let mut both = props.clone();
    both["ApiTokenParameterName"] = json!(PARAM);
    let refused = b.create(both).await;
    assert!(
        refused["Reason"].as_str().unwrap().contains("not both"),
        "{refused}"
    );

    let mut gone = props;
    gone["ApiTokenSecretArn"] = json!(arn.replace("apono-api-token", "apono-other"));
    let failed = b.create(gone).await;
    assert!(
        failed["Reason"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{failed}"
    );
}

#[tokio::test]
async fn a_missing_ssm_parameter_fails_with_the_command_that_creates_it() {
    let b = bench().await;
    let failed = b
        .create(with(
            b.props(),
            "ApiTokenParameterName",
            json!("/apono/missing"),
        ))
        .await;
    let reason = failed["Reason"].as_str().unwrap();
    assert!(
        reason.contains("SSM parameter /apono/missing does not exist"),
        "{reason}"
    );
    assert!(
        reason.contains("aws ssm put-parameter --type SecureString"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_type_change_under_a_new_name_is_a_replacement_whose_old_integration_is_then_deleted() {
    let b = bench().await;
    let created = b.create(b.props()).await;
    let old_physical = created["PhysicalResourceId"].as_str().unwrap().to_string();
    let old_id = created["Data"]["IntegrationId"]
        .as_str()
        .unwrap()
        .to_string();
    let new_props = with(b.props(), "IntegrationType", json!("aws-account"));
    let new_props = with(new_props, "IntegrationName", json!("apono-account"));
    let updated = b
        .send(
            Event::update(TYPE, &b.rx.url("u"), &old_physical)
                .properties(new_props.clone())
                .old_properties(b.props()),
        )
        .await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    let new_physical = updated["PhysicalResourceId"].as_str().unwrap();
    assert_ne!(new_physical, old_physical, "replacement");
    assert!(new_physical.starts_with("created:"));
    // CloudFormation then deletes the old physical ID.
    b.send(Event::delete(TYPE, &b.rx.url("d"), &old_physical).properties(b.props()))
        .await;
    assert!(b.apono.integration(&old_id).is_none());
    assert_eq!(b.apono.integrations().len(), 1);
    assert_eq!(b.apono.integrations()[0]["type"], "aws-account");
}

/// Apono integration names are unique, so a new type under the same name cannot coexist with
/// the old integration: the Update is refused with what to do, nothing changes, and the
/// update rollback (old properties back) succeeds without touching Apono's integration.
#[tokio::test]
async fn a_type_change_under_the_same_name_is_refused_and_its_rollback_succeeds() {
    let b = bench().await;
    let created = b.create(b.props()).await;
    let physical = created["PhysicalResourceId"].as_str().unwrap().to_string();
    let new_props = with(b.props(), "IntegrationType", json!("aws-account"));
    let refused = b
        .send(
            Event::update(TYPE, &b.rx.url("u"), &physical)
                .properties(new_props.clone())
                .old_properties(b.props()),
        )
        .await;
    assert_eq!(refused["Status"], "FAILED", "{refused}");
    let reason = refused["Reason"].as_str().unwrap();
    assert!(
        reason.contains("change IntegrationName as well"),
        "{reason}"
    );
    let writes = b.apono.writes();
    let rollback = b
        .send(
            Event::update(TYPE, &b.rx.url("r"), &physical)
                .properties(b.props())
                .old_properties(new_props),
        )
        .await;
    assert_eq!(rollback["Status"], "SUCCESS", "{rollback}");
    assert_eq!(rollback["PhysicalResourceId"], physical.as_str());
    assert_eq!(b.apono.integrations().len(), 1);
    assert_eq!(b.apono.integrations()[0]["type"], "aws-organization");
    assert!(
        b.apono.writes() <= writes + 1,
        "at most the PUT of the same values"
    );
}

/// `UpdateIntegrationV4` takes `connector_id`: a new connector is a PUT, same integration.
#[tokio::test]
async fn a_connector_change_is_made_in_place() {
    let b = bench().await;
    b.apono.add_connector("apono-connector-2", "CONNECTED");
    let created = b.create(b.props()).await;
    let physical = created["PhysicalResourceId"].as_str().unwrap().to_string();
    let id = created["Data"]["IntegrationId"]
        .as_str()
        .unwrap()
        .to_string();
    let updated = b
        .send(
            Event::update(TYPE, &b.rx.url("u"), &physical)
                .properties(with(b.props(), "ConnectorId", json!("apono-connector-2")))
                .old_properties(b.props()),
        )
        .await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    assert_eq!(updated["PhysicalResourceId"], physical.as_str());
    assert_eq!(
        b.apono.integration(&id).unwrap()["connector_id"],
        "apono-connector-2"
    );
}

/// A name taken on another connector is not adopted (it serves other resources) and not
/// fought over: the Create says which connector holds it.
#[tokio::test]
async fn a_name_taken_on_another_connector_fails_clearly_and_changes_nothing() {
    let b = bench().await;
    let theirs = b.apono.add_integration(
        "aws-organization-o-abcdefghij",
        "aws-organization",
        "someone-elses-connector",
    );
    let answer = b.create(b.props()).await;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("already exists on connector someone-elses-connector"),
        "{reason}"
    );
    let physical = answer["PhysicalResourceId"].as_str().unwrap();
    b.send(Event::delete(TYPE, &b.rx.url("d"), physical).properties(b.props()))
        .await;
    assert!(b.apono.integration(&theirs).is_some(), "theirs untouched");
}

/// The API token goes only to Apono: an event naming another host is refused before the
/// token is read, and nothing reaches that host.
#[tokio::test]
async fn a_foreign_api_url_is_refused_and_never_receives_the_token() {
    let b = bench().await;
    let attacker = Receiver::start().await;
    // "localhost" reaches the attacker's server, but is not a host this function may use.
    let foreign = attacker.url("steal").replace("127.0.0.1", "localhost");
    let foreign = foreign.split("/cfn-response").next().unwrap().to_string();
    for url in [
        foreign.as_str(),
        "https://api.apono.io.attacker.example",
        "https://evil.example/apono.io",
    ] {
        let answer = b.create(with(b.props(), "ApiUrl", json!(url))).await;
        assert_eq!(answer["Status"], "FAILED", "{url}: {answer}");
        let reason = answer["Reason"].as_str().unwrap();
        assert!(reason.contains("refused: ApiUrl host"), "{url}: {reason}");
        assert!(!reason.contains(TOKEN));
    }
    assert!(attacker.requests().is_empty(), "the attacker heard nothing");
    assert_eq!(b.apono.integrations().len(), 0);
}

/// A list whose cursor never ends is refused after it repeats, not followed forever.
#[tokio::test]
async fn an_endless_cursor_ends_with_a_clear_error() {
    let b = bench().await;
    b.apono.fail_next(1, ApiFault::EndlessCursor);
    let answer = b.create(b.props()).await;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(reason.contains("the list did not end"), "{reason}");
    assert!(
        b.apono.requests().len() < 10,
        "followed the cursor {} times",
        b.apono.requests().len()
    );
}

/// A 50 MB answer is refused once it passes the limit: the function (128 MB) keeps its memory
/// and answers CloudFormation.
#[tokio::test]
async fn a_50_mb_body_is_refused_without_reading_it_all() {
    let b = bench().await;
    b.apono.fail_next(
        1,
        ApiFault::HugeBody {
            bytes: 50 * 1024 * 1024,
        },
    );
    let answer = b.create(b.props()).await;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap();
    assert!(reason.contains("larger than 4194304 bytes"), "{reason}");
}

/// A Retry-After of u64::MAX seconds does not overflow: it means "not before the deadline".
#[tokio::test]
async fn a_huge_retry_after_fails_in_time_instead_of_overflowing() {
    let b = bench().await;
    b.apono.fail_next(
        1,
        ApiFault::TooManyRequests {
            retry_after_secs: u64::MAX,
        },
    );
    let answer = b.create(b.props()).await;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(
        answer["Reason"]
            .as_str()
            .unwrap()
            .contains("within the time left"),
        "{answer}"
    );
}

/// A POST that Apono carried out but whose answer was lost (a 502) is not repeated blindly:
/// the retry finds the integration it made, so there is one integration, owned by the stack
/// (Delete removes it).
#[tokio::test]
async fn a_post_whose_answer_was_lost_creates_one_integration_which_delete_removes() {
    let b = bench().await;
    b.apono.fail_next(1, ApiFault::PostAppliedAnswerLost);
    let answer = b.create(b.props()).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(
        b.apono.integrations().len(),
        1,
        "{:?}",
        b.apono.integrations()
    );
    let physical_id = answer["PhysicalResourceId"].as_str().unwrap();
    assert!(physical_id.starts_with("created:"), "{physical_id}");
    let deleted = b
        .send(Event::delete(TYPE, &b.rx.url("d"), physical_id).properties(b.props()))
        .await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted}");
    assert!(b.apono.integrations().is_empty());
}

/// The deadline passes while the POST's answer is on its way, after Apono created the
/// integration: the failed Create answers with a physical ID its rollback acts on, and the
/// rollback's Delete removes the integration (it carries this resource's mark).
#[tokio::test]
async fn a_create_whose_post_outlives_the_deadline_is_cleaned_up_by_its_rollback() {
    let b = bench().await;
    let mut short = elsewhere(&b);
    // A 2 s margin: the handler has 2 s.
    short.lambda_timeout = Duration::from_secs(4);
    b.apono
        .fail_next(1, ApiFault::PostAppliedAnswerAfter(Duration::from_secs(8)));
    let before = b.rx.accepted().len();
    short
        .invoke(Event::create(TYPE, &b.rx.url("c")).properties(b.props()))
        .await
        .unwrap();
    let answer = b.rx.accepted()[before].json();
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert_eq!(b.apono.integrations().len(), 1, "the POST was carried out");
    let physical = answer["PhysicalResourceId"].as_str().unwrap();
    assert_eq!(physical, "pending:aws-organization-o-abcdefghij");
    let deleted = b
        .send(Event::delete(TYPE, &b.rx.url("d"), physical).properties(b.props()))
        .await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted}");
    assert!(b.apono.integrations().is_empty(), "the rollback removed it");
}

/// A process killed after its POST was carried out never answers; Lambda delivers the event
/// again to another process, which finds the integration carrying this resource's mark and
/// answers with it as created (not adopted), so Delete removes it.
#[tokio::test]
async fn a_create_retried_after_its_process_died_owns_what_the_first_attempt_made() {
    let b = bench().await;
    b.apono
        .fail_next(1, ApiFault::PostAppliedAnswerAfter(Duration::from_secs(30)));
    let event = Event::create(TYPE, &b.rx.url("c")).properties(b.props());
    let first = elsewhere(&b);
    let first_event = event.clone();
    let killed = tokio::spawn(async move { first.invoke(first_event).await });
    for _ in 0..200 {
        if !b.apono.integrations().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        b.apono.integrations().len(),
        1,
        "the first POST was carried out"
    );
    killed.abort();
    assert!(
        b.rx.accepted().is_empty(),
        "the killed process never answered"
    );
    let answer = b.send(event).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["Data"]["Ownership"], "created", "{answer}");
    assert_eq!(b.apono.integrations().len(), 1);
    let physical = answer["PhysicalResourceId"].as_str().unwrap();
    b.send(Event::delete(TYPE, &b.rx.url("d"), physical).properties(b.props()))
        .await;
    assert!(b.apono.integrations().is_empty());
}

/// The mark is what tells ours from theirs: it names the stack by its unique ID and the
/// resource, and fits Apono's 400-character note at the largest IDs CloudFormation allows.
#[test]
fn the_owner_mark_fits_the_note_and_tells_stacks_and_resources_apart() {
    use apono_integration::OwnerMark;
    let stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/onboarding/1b2c3d4e-0000-1111-2222-333344445555";
    let again = "arn:aws:cloudformation:us-east-1:123456789012:stack/onboarding/99999999-0000-1111-2222-333344445555";
    let mark = OwnerMark::of(stack, "AponoIntegration");
    assert_ne!(
        mark,
        OwnerMark::of(again, "AponoIntegration"),
        "a re-created stack is another owner"
    );
    assert_ne!(mark, OwnerMark::of(stack, "AponoIntegration2"));
    assert!(!OwnerMark::of(stack, "AponoIntegration2")
        .note()
        .contains(mark.as_str()));
    let longest = OwnerMark::of(&format!("{stack}{}", "x".repeat(900)), &"L".repeat(255));
    assert!(
        longest.note().chars().count() <= 400,
        "{}",
        longest.note().len()
    );
}
