//! The runtime's guarantees, proven over real HTTP against the local response receiver.
//!
//! Over 400 lines on purpose: one test per guarantee of the runtime, each short and standing
//! alone, read together against the protocol.

use custom_resource::response::UrlPolicy;
use custom_resource::response::MAX_BODY_BYTES;
use custom_resource::{RuntimeConfig, FAILED_CREATE_PREFIX};
use std::time::Duration;
use testkit::demo::Demo;
use testkit::events::Event;
use testkit::invoke::Invoker;
use testkit::receiver::{Fault, Receiver};
use tokio::time::Instant;

const TYPE: &str = "Custom::Demo";

async fn setup() -> (Receiver, Demo, Invoker<Demo>) {
    let receiver = Receiver::start().await;
    let demo = Demo::default();
    let invoker = Invoker::new(demo.clone());
    (receiver, demo, invoker)
}

#[tokio::test]
async fn success_body_carries_every_field_cloudformation_needs() {
    let (rx, _, invoker) = setup().await;
    let event = Event::create(TYPE, &rx.url("ok"))
        .logical_id("Greeter")
        .request_id("req-1")
        .property("Name", "apono");
    invoker.invoke(event).await.unwrap();
    let sent = rx.accepted();
    assert_eq!(sent.len(), 1);
    let body = sent[0].json();
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], "demo-apono");
    assert_eq!(body["StackId"], testkit::events::STACK_ID);
    assert_eq!(body["RequestId"], "req-1");
    assert_eq!(body["LogicalResourceId"], "Greeter");
    assert_eq!(body["Data"]["Greeting"], "hello apono");
    assert!(body.get("Reason").is_none());
    assert_eq!(sent[0].method, "PUT");
}

#[tokio::test]
async fn empty_content_type_and_exact_content_length_on_the_wire() {
    let (rx, _, invoker) = setup().await;
    invoker
        .invoke(Event::create(TYPE, &rx.url("ct")))
        .await
        .unwrap();
    let sent = &rx.accepted()[0];
    assert_eq!(sent.header("content-type"), Some(""), "{:?}", sent.headers);
    assert_eq!(
        sent.header("content-length"),
        Some(sent.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn handler_error_becomes_failed_with_its_reason() {
    let (rx, _, invoker) = setup().await;
    invoker
        .invoke(Event::create(TYPE, &rx.url("fail")).property("Behaviour", "fail"))
        .await
        .unwrap();
    let body = rx.accepted()[0].json();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"]
        .as_str()
        .unwrap()
        .starts_with("the demo failed on purpose"));
    // A Create that failed before producing an ID answers with the recognisable marker.
    assert!(body["PhysicalResourceId"]
        .as_str()
        .unwrap()
        .starts_with(FAILED_CREATE_PREFIX));
}

#[tokio::test]
async fn panic_in_the_handler_becomes_failed() {
    let (rx, _, invoker) = setup().await;
    invoker
        .invoke(Event::create(TYPE, &rx.url("panic")).property("Behaviour", "panic"))
        .await
        .unwrap();
    let body = rx.accepted()[0].json();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"].as_str().unwrap().contains("panic"), "{body}");
}

#[tokio::test]
async fn a_handler_still_running_near_the_deadline_is_answered_failed_before_the_deadline() {
    let rx = Receiver::start().await;
    let mut invoker = Invoker::with(
        Demo::default(),
        RuntimeConfig {
            deadline_margin: Duration::from_secs(1),
            ..testkit::invoke::test_config()
        },
    );
    invoker.lambda_timeout = Duration::from_secs(3);
    let started = Instant::now();
    let lambda_deadline = started + Duration::from_secs(3);
    invoker
        .invoke(Event::create(TYPE, &rx.url("hang")).property("Behaviour", "hang"))
        .await
        .unwrap();
    let sent = rx.accepted();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].at < lambda_deadline, "answered after the deadline");
    assert!(
        sent[0].at >= started + Duration::from_millis(1900),
        "answered too early"
    );
    let body = sent[0].json();
    assert_eq!(body["Status"], "FAILED");
    assert!(
        body["Reason"].as_str().unwrap().contains("Timeout"),
        "{body}"
    );
}

#[tokio::test]
async fn response_put_is_retried_after_two_503s() {
    let (rx, _, invoker) = setup().await;
    rx.fail_next(2, Fault::Status(503));
    invoker
        .invoke(Event::create(TYPE, &rx.url("503")))
        .await
        .unwrap();
    let all = rx.requests();
    assert_eq!(all.len(), 3);
    assert_eq!(rx.accepted().len(), 1);
    assert_eq!(
        all[0].body, all[2].body,
        "every attempt sends the same body"
    );
}

#[tokio::test]
async fn response_put_is_retried_after_a_connection_reset() {
    let (rx, _, invoker) = setup().await;
    rx.fail_next(1, Fault::Reset);
    invoker
        .invoke(Event::create(TYPE, &rx.url("reset")))
        .await
        .unwrap();
    assert_eq!(rx.requests().len(), 2);
    assert_eq!(rx.accepted()[0].json()["Status"], "SUCCESS");
}

#[tokio::test]
async fn a_slow_endpoint_is_waited_for_not_abandoned() {
    let (rx, _, invoker) = setup().await;
    rx.fail_next(1, Fault::Slow(Duration::from_millis(1500)));
    invoker
        .invoke(Event::create(TYPE, &rx.url("slow")))
        .await
        .unwrap();
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test]
async fn a_20kb_reason_still_fits_in_4096_bytes() {
    let (rx, _, invoker) = setup().await;
    invoker
        .invoke(
            Event::create(TYPE, &rx.url("long"))
                .property("Behaviour", "long-reason")
                .property("Size", "20000"),
        )
        .await
        .unwrap();
    let sent = &rx.accepted()[0];
    assert!(
        sent.body.len() <= MAX_BODY_BYTES,
        "{} bytes",
        sent.body.len()
    );
    let body = sent.json();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"].as_str().unwrap().starts_with("xxxx"));
}

#[tokio::test]
async fn oversized_data_fails_the_resource_with_a_reason_that_says_so() {
    let (rx, _, invoker) = setup().await;
    invoker
        .invoke(Event::create(TYPE, &rx.url("big")).property("Behaviour", "big-data"))
        .await
        .unwrap();
    let sent = &rx.accepted()[0];
    assert!(sent.body.len() <= MAX_BODY_BYTES);
    assert!(sent.json()["Reason"].as_str().unwrap().contains("Data"));
}

#[tokio::test]
async fn a_malformed_property_fails_naming_the_property() {
    let (rx, demo, invoker) = setup().await;
    invoker
        .invoke(Event::create(TYPE, &rx.url("bad")).property("Size", "lots"))
        .await
        .unwrap();
    let body = rx.accepted()[0].json();
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("Size") && reason.contains("lots"),
        "{reason}"
    );
    assert_eq!(demo.calls(), 0, "the handler never saw bad input");

    invoker
        .invoke(Event::create(TYPE, &rx.url("typo")).property("Nmae", "x"))
        .await
        .unwrap();
    let reason = rx.accepted()[1].json()["Reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("Nmae") && reason.contains("unknown"),
        "{reason}"
    );
}

#[tokio::test]
async fn rollback_delete_of_a_failed_create_marker_succeeds_without_the_handler() {
    let (rx, demo, invoker) = setup().await;
    invoker
        .invoke(Event::create(TYPE, &rx.url("c")).property("Behaviour", "fail"))
        .await
        .unwrap();
    let marker = rx.accepted()[0].json()["PhysicalResourceId"]
        .as_str()
        .unwrap()
        .to_string();
    let calls_after_create = demo.calls();
    invoker
        .invoke(Event::delete(TYPE, &rx.url("d"), &marker).property("Behaviour", "fail"))
        .await
        .unwrap();
    let body = rx.accepted()[1].json();
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], marker.as_str());
    assert_eq!(demo.calls(), calls_after_create, "handler not called");
}

#[tokio::test]
async fn update_keeps_the_physical_id_and_failed_update_answers_with_it() {
    let (rx, _, invoker) = setup().await;
    invoker
        .invoke(Event::update(TYPE, &rx.url("u"), "existing-id").property("Name", "b"))
        .await
        .unwrap();
    invoker
        .invoke(Event::update(TYPE, &rx.url("u2"), "existing-id").property("Behaviour", "fail"))
        .await
        .unwrap();
    let sent = rx.accepted();
    assert_eq!(sent[0].json()["PhysicalResourceId"], "existing-id");
    assert_eq!(sent[1].json()["Status"], "FAILED");
    assert_eq!(sent[1].json()["PhysicalResourceId"], "existing-id");
}

#[tokio::test]
async fn unknown_request_type_fails_with_a_clear_reason() {
    let (rx, demo, invoker) = setup().await;
    invoker
        .invoke(Event::create(TYPE, &rx.url("x")).request_type("Upsert"))
        .await
        .unwrap();
    let body = rx.accepted()[0].json();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"].as_str().unwrap().contains("Upsert"));
    assert_eq!(demo.calls(), 0);
}

#[tokio::test]
async fn non_aws_response_url_is_never_requested() {
    let (rx, demo, _) = setup().await;
    let invoker = Invoker::with(
        demo.clone(),
        RuntimeConfig {
            url_policy: UrlPolicy::AwsS3Only,
            ..testkit::invoke::test_config()
        },
    );
    invoker
        .invoke(Event::create(TYPE, &rx.url("nope")))
        .await
        .unwrap();
    invoker
        .invoke(Event::create(
            TYPE,
            "https://attacker.example.com/collect?X-Amz-Signature=1",
        ))
        .await
        .unwrap();
    assert!(rx.requests().is_empty());
    assert_eq!(
        demo.calls(),
        0,
        "nothing is done for an event that cannot be answered"
    );
}

#[tokio::test]
async fn a_duplicate_delivery_gets_the_same_answer_without_running_the_handler_again() {
    let (rx, demo, invoker) = setup().await;
    let event = Event::create(TYPE, &rx.url("dup")).property("Name", "once");
    invoker.invoke(event.clone()).await.unwrap();
    invoker.invoke(event).await.unwrap();
    let sent = rx.accepted();
    assert_eq!(sent.len(), 2, "each delivery is answered");
    assert_eq!(sent[0].body, sent[1].body, "with the same answer");
    assert_eq!(demo.calls(), 1, "the handler ran once");
}

/// A continuation chain answers within the resource's ServiceTimeout: once CloudFormation has
/// stopped waiting (and may be rolling back), the next invocation does no more work and
/// answers FAILED saying which limit was reached.
#[tokio::test]
async fn a_continuation_chain_past_its_service_timeout_stops_and_says_so() {
    use custom_resource::{CHAIN_STARTED_KEY, CONTINUATION_KEY};
    let rx = Receiver::start().await;
    let demo = Demo::default();
    let captured = testkit::invoke::Captured::default();
    let invoker = Invoker::with_config(
        demo.clone(),
        captured.clone(),
        testkit::invoke::test_config(),
    );
    let event = Event::create(TYPE, &rx.url("chain"))
        .property("Behaviour", "keep-continuing")
        .property("Name", "chained")
        .property("ServiceTimeout", "30");
    invoker.invoke(event).await.unwrap();
    let mut next = captured.take().expect("the first invocation continued");
    let started = next[CHAIN_STARTED_KEY].as_u64().expect("the chain's start");
    assert_eq!(next[CONTINUATION_KEY]["Step"], 1);

    // The second link keeps the chain's start: the budget is the chain's, not each link's.
    invoker.invoke(next).await.unwrap();
    next = captured.take().expect("the second invocation continued");
    assert_eq!(next[CHAIN_STARTED_KEY], started);
    assert!(
        rx.accepted().is_empty(),
        "nothing answered while within budget"
    );

    // 31 s later (the chain began 31 s ago), ServiceTimeout 30 s has passed.
    next[CHAIN_STARTED_KEY] = (started - 31_000).into();
    let calls = demo.calls();
    invoker.invoke(next).await.unwrap();
    assert_eq!(
        demo.calls(),
        calls,
        "no more work once CloudFormation stopped waiting"
    );
    assert!(captured.take().is_none(), "no further continuation");
    let body = rx.accepted()[0].json();
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains("ServiceTimeout (30 s)"), "{reason}");
    // Work was done by earlier links: the rollback's Delete must reach the handler.
    assert_eq!(body["PhysicalResourceId"], "demo-chained");
}

/// A Create that knows its physical ID up front answers a failure (here the Lambda timeout)
/// with it, not with the failed-Create marker, so the rollback's Delete cleans up.
#[tokio::test]
async fn a_failed_create_that_made_things_answers_with_its_physical_id() {
    let rx = Receiver::start().await;
    let mut invoker = Invoker::with(
        Demo::default(),
        RuntimeConfig {
            deadline_margin: Duration::from_millis(500),
            ..testkit::invoke::test_config()
        },
    );
    invoker.lambda_timeout = Duration::from_secs(1);
    for (behaviour, url) in [
        ("hang", "timed-out"),
        ("panic", "panicked"),
        ("fail", "failed"),
    ] {
        let event = Event::create(TYPE, &rx.url(url))
            .property("Behaviour", behaviour)
            .property("Name", "made");
        invoker.invoke(event).await.unwrap();
    }
    for sent in rx.accepted() {
        let body = sent.json();
        assert_eq!(body["Status"], "FAILED", "{body}");
        assert_eq!(body["PhysicalResourceId"], "demo-made", "{body}");
    }
    assert_eq!(rx.accepted().len(), 3);
}

/// A secret property echoed into `Data` by a handler bug never reaches CloudFormation (Data
/// shows in the stack's events and outputs).
#[tokio::test]
async fn a_secret_echoed_into_data_is_scrubbed() {
    let (rx, _, invoker) = setup().await;
    let event = Event::create(TYPE, &rx.url("echo"))
        .property("Behaviour", "echo-key")
        .property("ApiKey", "sk-live-4f9a2c7e1b");
    invoker.invoke(event).await.unwrap();
    let body = rx.accepted()[0].json();
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["Echo"], "key=***", "{body}");
}

/// `RUST_LOG=trace` in production does not print the raw event: at TRACE `lambda_runtime` logs
/// each event before the runtime registers its ResponseURL signature, so TRACE is refused
/// (the real binary, as Lambda runs it).
#[tokio::test]
async fn a_trace_level_run_never_logs_the_response_url_signature() {
    let bin = testkit::local_run::build_binaries().expect("function binaries");
    let rx = Receiver::start().await;
    let env = vec![
        ("RUST_LOG".to_string(), "trace".to_string()),
        (
            custom_resource::TEST_LOOPBACK_ENV.to_string(),
            "1".to_string(),
        ),
        ("AWS_REGION".to_string(), "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID".to_string(), "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ];
    let function = testkit::lambda::Function::start(
        "org-info",
        &bin.join("org-info"),
        &env,
        Duration::from_secs(30),
    )
    .await;
    // The rollback of a Create that never succeeded: answered without any AWS call.
    let marker = format!("{FAILED_CREATE_PREFIX}req-1");
    let event = Event::delete("Custom::OrganizationInfo", &rx.url("trace"), &marker);
    function
        .invoke(event.into_value(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(rx.accepted().len(), 1, "answered");
    let output = function.output_text();
    let signature = testkit::receiver::FAKE_SIGNATURE.split('=').nth(1).unwrap();
    assert!(output.contains("response sent"), "{output}");
    assert!(
        !output.contains(signature),
        "the signature was logged:\n{output}"
    );
    assert!(
        !output.contains("\"level\":\"TRACE\""),
        "TRACE lines were written"
    );
}

/// Event fields far beyond CloudFormation's own sizes: refused without running the handler,
/// and still exactly one answer within 4096 bytes (the encoder used to recurse forever).
#[tokio::test]
async fn oversized_event_identifiers_are_refused_in_one_bounded_answer() {
    let (rx, demo, invoker) = setup().await;
    let huge = "x".repeat(5000);
    let mut event = Event::create(TYPE, &rx.url("huge"))
        .logical_id(&huge)
        .request_id(&huge)
        .into_value();
    event["StackId"] =
        serde_json::json!(format!("arn:aws:cloudformation:us-east-1:1:stack/{huge}"));
    invoker.invoke(event).await.unwrap();
    let sent = rx.accepted();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].body.len() <= MAX_BODY_BYTES,
        "{} bytes",
        sent[0].body.len()
    );
    let body = sent[0].json();
    assert_eq!(body["Status"], "FAILED");
    assert!(
        body["Reason"].as_str().unwrap().contains("refused"),
        "{body}"
    );
    assert_eq!(demo.calls(), 0);
}

/// A function's own events (the EKS schedule) go through the runtime like CloudFormation's:
/// the handler's progress is handed on under the one continuation key until it finishes,
/// nothing is sent to CloudFormation, and a panic is an error returned to Lambda (which
/// retries), not a crash.
#[tokio::test]
async fn own_events_continue_under_the_one_key_and_answer_no_one() {
    use custom_resource::CONTINUATION_KEY;
    let rx = Receiver::start().await;
    let demo = Demo::default();
    let captured = testkit::invoke::Captured::default();
    let invoker = Invoker::with_config(
        demo.clone(),
        captured.clone(),
        testkit::invoke::test_config(),
    );
    let mut event = serde_json::json!({"DemoTick": {"Steps": 3}});
    let mut invocations = 0;
    loop {
        invoker.invoke(event.clone()).await.unwrap();
        invocations += 1;
        match captured.take() {
            Some(next) => {
                assert_eq!(next[CONTINUATION_KEY], invocations, "{next}");
                assert_eq!(next["DemoTick"]["Steps"], 3, "the input is handed on");
                event = next;
            }
            None => break,
        }
    }
    assert_eq!(invocations, 3);
    assert_eq!(demo.calls(), 3);
    assert!(rx.accepted().is_empty(), "no CloudFormation to answer");

    let failed = invoker
        .invoke(serde_json::json!({"DemoTick": {"Panic": true}}))
        .await
        .unwrap_err();
    assert!(failed.contains("demo tick panicked"), "{failed}");
    let failed = invoker
        .invoke(serde_json::json!({"DemoTick": {}}))
        .await
        .unwrap_err();
    assert!(failed.contains("Steps is required"), "{failed}");
}
