//! Secrets never reach a log line, a reason or `Data`, at `debug` level.
//!
//! A test binary of its own: its tests read the process-wide log capture
//! (`testkit::logs::capture`, which explains why), and every test here calls it first, so the
//! capturing subscriber is in place before any event of the process.

use apono_integration::token::AwsTokens;
use apono_integration::AponoIntegration;
use serde_json::json;
use testkit::demo::Demo;
use testkit::events::Event;
use testkit::fake_apono::{ApiFault, FakeApono};
use testkit::invoke::Invoker;
use testkit::logs::capture;
use testkit::moto::Moto;
use testkit::receiver::{Receiver, FAKE_SIGNATURE};

#[tokio::test]
async fn secrets_and_the_url_signature_never_reach_the_logs() {
    let logs = capture();
    let marker = "RuntimeLogProbe";
    let rx = Receiver::start().await;
    let invoker = Invoker::new(Demo::default());
    let key = "apono-secret-key-7f3a9c";
    for behaviour in ["succeed", "fail", "panic"] {
        let event = Event::create("Custom::Demo", &rx.url(behaviour))
            .logical_id(marker)
            .properties(json!({"Behaviour": behaviour, "ApiKey": key}));
        invoker.invoke(event).await.unwrap();
    }
    let typed = Event::create("Custom::Demo", &rx.url("typed"))
        .logical_id(marker)
        .properties(json!({"ApiKey": [key]}));
    invoker.invoke(typed).await.unwrap();

    let ours = logs.lines_with(marker);
    let sent = ours.iter().filter(|l| l.contains("response sent")).count();
    assert_eq!(
        sent,
        4,
        "one 'response sent' line per event:\n{}",
        ours.join("\n")
    );
    let text = logs.text();
    assert!(!text.contains(key), "secret property leaked:\n{text}");
    assert!(
        !text.contains(FAKE_SIGNATURE),
        "URL signature leaked:\n{text}"
    );
    assert!(
        !text.contains("X-Amz-Credential"),
        "URL query leaked:\n{text}"
    );
    // Reasons sent to CloudFormation are scrubbed too.
    for sent in rx.accepted() {
        assert!(!String::from_utf8_lossy(&sent.body).contains(key));
    }
}

#[tokio::test]
async fn the_apono_token_never_reaches_logs_reasons_or_data() {
    let logs = capture();
    let marker = "AponoLogProbe";
    let token = "apono-api-token-5f1e0c7a9b";
    let moto = Moto::start().await;
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config());
    ssm.put_parameter()
        .name("/apono/api-token")
        .value(token)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let apono = FakeApono::start(token).await;
    apono.add_connector("apono-connector-1", "CONNECTED");
    let rx = Receiver::start().await;
    let invoker = Invoker::new(
        AponoIntegration::new(AwsTokens::new(&moto.sdk_config()))
            .also_allowing(["127.0.0.1".to_string()]),
    );
    let props = |name: &str| {
        json!({
            "ConnectorId": "apono-connector-1",
            "ApiTokenParameterName": "/apono/api-token",
            "ApiUrl": apono.url(),
            "OrganizationId": "o-abcdefghij",
            "IntegrationName": name,
            "IntegrationConfig": {"region": "us-east-1", "role_arn": "arn:aws:iam::111111111111:role/apono-management"},
            "ConnectorWaitSeconds": "3",
        })
    };
    let create = |url: &str, name: &str| {
        Event::create("Custom::AponoIntegration", &rx.url(url))
            .logical_id(marker)
            .properties(props(name))
    };
    invoker.invoke(create("created", "first")).await.unwrap();
    apono.fail_next(1, ApiFault::Status(400));
    invoker.invoke(create("failed", "second")).await.unwrap();

    let answers: Vec<_> = rx.accepted().iter().map(|r| r.json()).collect();
    assert_eq!(answers.len(), 2, "one answer per event");
    assert_eq!(answers[0]["Status"], "SUCCESS", "{}", answers[0]);
    assert_eq!(answers[1]["Status"], "FAILED", "{}", answers[1]);
    let ours = logs.lines_with(marker);
    assert!(
        ours.iter().filter(|l| l.contains("response sent")).count() == 2,
        "both events logged:\n{}",
        ours.join("\n")
    );
    let text = logs.text();
    assert!(!text.contains(token), "token in logs:\n{text}");
    for answer in &answers {
        assert!(
            !answer.to_string().contains(token),
            "token in an answer: {answer}"
        );
    }
}
