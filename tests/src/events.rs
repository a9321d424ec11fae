//! Builders for CloudFormation custom-resource events.

use serde_json::{json, Map, Value};

pub const STACK_ID: &str =
    "arn:aws:cloudformation:us-east-1:123456789012:stack/apono-onboarding/1b2c3d4e-0000-1111-2222-333344445555";

#[derive(Debug, Clone)]
pub struct Event(Value);

impl Event {
    fn new(kind: &str, resource_type: &str, response_url: &str) -> Event {
        Event(json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:cr",
            "ResponseURL": response_url,
            "StackId": STACK_ID,
            "RequestId": format!("req-{:016x}", fastrand_u64()),
            "ResourceType": resource_type,
            "LogicalResourceId": "Resource",
            "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:cr"},
        }))
    }

    pub fn create(resource_type: &str, response_url: &str) -> Event {
        Event::new("Create", resource_type, response_url)
    }

    pub fn update(resource_type: &str, response_url: &str, physical_id: &str) -> Event {
        let mut e = Event::new("Update", resource_type, response_url);
        e.0["PhysicalResourceId"] = json!(physical_id);
        e.0["OldResourceProperties"] = e.0["ResourceProperties"].clone();
        e
    }

    pub fn delete(resource_type: &str, response_url: &str, physical_id: &str) -> Event {
        let mut e = Event::new("Delete", resource_type, response_url);
        e.0["PhysicalResourceId"] = json!(physical_id);
        e
    }

    pub fn request_type(mut self, kind: &str) -> Event {
        self.0["RequestType"] = json!(kind);
        self
    }

    /// The stack the event comes from.
    pub fn stack_id(mut self, id: &str) -> Event {
        self.0["StackId"] = json!(id);
        self
    }

    pub fn logical_id(mut self, id: &str) -> Event {
        self.0["LogicalResourceId"] = json!(id);
        self
    }

    pub fn request_id(mut self, id: &str) -> Event {
        self.0["RequestId"] = json!(id);
        self
    }

    pub fn property(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.0["ResourceProperties"][key] = value.into();
        self
    }

    /// Replaces the properties. CloudFormation always sends a ServiceToken: the given one, or
    /// the event's own.
    pub fn properties(mut self, props: Value) -> Event {
        let mut map: Map<String, Value> = props.as_object().cloned().unwrap_or_default();
        let token = map
            .entry("ServiceToken")
            .or_insert_with(|| self.0["ServiceToken"].clone())
            .clone();
        self.0["ServiceToken"] = token;
        self.0["ResourceProperties"] = Value::Object(map);
        self
    }

    pub fn old_properties(mut self, props: Value) -> Event {
        self.0["OldResourceProperties"] = props;
        self
    }

    pub fn get(&self) -> &Value {
        &self.0
    }

    pub fn into_value(self) -> Value {
        self.0
    }
}

fn fastrand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
}
