//! template.yaml against the functions' own parsers: every `Custom::` resource's properties
//! (parameters substituted the way CloudFormation does) parse, and every `!GetAtt` of a custom
//! resource names a key that function returns.

use custom_resource::props::parse;
use custom_resource::Properties;
use serde_json::Value;
use std::collections::BTreeMap;
use testkit::template::{get_atts, substitute, template_json, Rendering};

type Check = fn(Value) -> Result<(), String>;

fn check<P: Properties>(value: Value) -> Result<(), String> {
    parse::<P>(value).map(|_| ()).map_err(|e| e.to_string())
}

/// Each custom resource type, its parser and the `Data` keys it returns.
fn contract(resource_type: &str) -> Option<(Check, &'static [&'static str])> {
    match resource_type {
        "Custom::OrganizationInfo" => Some((check::<org_info::OrgInfoProps>, org_info::DATA_KEYS)),
        "Custom::EksAccessEntries" => Some((
            check::<eks_access_entries::EksProps>,
            eks_access_entries::DATA_KEYS,
        )),
        "Custom::ConnectorNetwork" => {
            Some((check::<network_info::NetworkProps>, network_info::DATA_KEYS))
        }
        "Custom::AponoIntegration" => Some((
            check::<apono_integration::AponoProps>,
            apono_integration::DATA_KEYS,
        )),
        _ => None,
    }
}

/// Scope x connector mode: every combination a user can deploy (with what its rules require).
const RENDERINGS: &[&[(&str, &str)]] = &[
    &[
        ("Scope", "Organization"),
        ("ConnectorMode", "Deploy"),
        ("SubnetIds", "subnet-0abc12345,subnet-0def67890"),
        ("ConnectorToken", "apono-connector-token"),
    ],
    &[
        ("Scope", "Organization"),
        ("ConnectorMode", "Existing"),
        (
            "ConnectorRoleArn",
            "arn:aws:iam::222222222222:role/apono-connector",
        ),
    ],
    &[
        ("Scope", "Account"),
        ("ConnectorMode", "Deploy"),
        ("SubnetIds", "subnet-0abc12345"),
        ("VpcId", "vpc-0abc12345"),
        (
            "ConnectorTokenSecretArn",
            "arn:aws:secretsmanager:us-east-1:111111111111:secret:c-AbCdEf",
        ),
    ],
    &[
        ("Scope", "Account"),
        ("ConnectorMode", "Existing"),
        (
            "ConnectorRoleArn",
            "arn:aws:iam::222222222222:role/apono-connector",
        ),
    ],
];

#[test]
fn every_custom_resource_parses_in_every_scope_and_mode_and_every_get_att_key_exists() {
    let template = template_json("template.yaml");
    let resources = template["Resources"].as_object().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for overrides in RENDERINGS {
        let rendering = Rendering::new(&template, overrides);
        let mut custom = BTreeMap::new();
        for (logical_id, resource) in resources {
            let resource_type = resource["Type"].as_str().unwrap();
            if !resource_type.starts_with("Custom::") || !rendering.included(resource) {
                continue;
            }
            let (check, keys) = contract(resource_type)
                .unwrap_or_else(|| panic!("{logical_id}: no contract for {resource_type}"));
            let props = substitute(&resource["Properties"], &rendering).unwrap();
            check(props.clone()).unwrap_or_else(|e| {
                panic!("{overrides:?} {logical_id} ({resource_type}): {e}\n{props:#}")
            });
            custom.insert(logical_id.clone(), keys);
            seen.insert(logical_id.clone());
        }
        let mut atts = Vec::new();
        get_atts(&template, &mut atts);
        for (res, key) in atts {
            if let Some(keys) = custom.get(&res) {
                assert!(
                    keys.contains(&key.as_str()),
                    "!GetAtt {res}.{key}: the function returns {keys:?}"
                );
            }
        }
    }
    let expected = [
        "AponoIntegration",
        "ConnectorNetwork",
        "EksAccessEntries",
        "OrganizationInfo",
    ];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected);
}

#[test]
fn account_scope_has_no_organization_lookup_and_no_stackset() {
    let template = template_json("template.yaml");
    let rendering = Rendering::new(&template, &[("Scope", "Account")]);
    for name in ["OrganizationInfo", "MemberRolesStackSet", "OrgInfoFunction"] {
        assert!(
            !rendering.included(&template["Resources"][name]),
            "{name} in Account scope"
        );
    }
    let existing = Rendering::new(
        &template,
        &[
            ("ConnectorMode", "Existing"),
            ("ConnectorRoleArn", "arn:aws:iam::222222222222:role/c"),
        ],
    );
    for name in [
        "ConnectorService",
        "ConnectorTaskRole",
        "ConnectorSecurityGroup",
        "ConnectorNotificationsTopic",
    ] {
        assert!(
            !existing.included(&template["Resources"][name]),
            "{name} in Existing mode"
        );
    }
}

#[test]
fn each_stackset_carries_exactly_its_member_template() {
    let template = template_json("template.yaml");
    for (stack_set, path) in [
        ("MemberRolesStackSet", "templates/member-account.yaml"),
        (
            "EksClusterEventsStackSet",
            "templates/member-eks-events.yaml",
        ),
    ] {
        let inline = template["Resources"][stack_set]["Properties"]["TemplateBody"]
            .as_str()
            .unwrap();
        let file = std::fs::read_to_string(testkit::workspace_root().join(path)).unwrap();
        assert_eq!(
            inline.trim_end(),
            file.trim_end(),
            "{stack_set}: run scripts/sync-member-template.sh"
        );
    }
}

/// The cluster-events rule hands the function the schedule's reconcile input and the cluster:
/// in every scope and mode, its transformed input (placeholders filled as EventBridge fills them
/// from a CloudTrail CreateCluster event) parses as a cluster event whose properties are the
/// schedule's, and the three rules that match cluster events match the same events.
#[test]
fn the_cluster_event_input_is_the_schedules_reconcile_input_plus_the_cluster() {
    let template = template_json("template.yaml");
    let resource = |name: &str| &template["Resources"][name]["Properties"];
    for overrides in RENDERINGS {
        let r = Rendering::new(&template, overrides);
        let schedule = substitute(&resource("EksScheduleRule")["Targets"][0]["Input"], &r).unwrap();
        let schedule: Value = serde_json::from_str(schedule.as_str().unwrap()).unwrap();
        let target = &resource("EksClusterEventsRule")["Targets"][0]["InputTransformer"];
        let paths = &target["InputPathsMap"];
        let mut text = substitute(&target["InputTemplate"], &r)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        for (name, path, value) in [
            ("account", "$.account", "210987654321"),
            ("region", "$.region", "eu-west-1"),
            ("cluster", "$.detail.requestParameters.name", "prod-eu"),
            ("event", "$.detail.eventName", "CreateCluster"),
            ("time", "$.time", "2026-12-01T19:14:34Z"),
        ] {
            assert_eq!(paths[name], path, "{name}");
            text = text.replace(&format!("<{name}>"), value);
        }
        let input: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let event: eks_access_entries::ClusterEventInput =
            serde_json::from_value(input["ClusterEvent"].clone()).unwrap();
        assert_eq!(
            event.properties, schedule["ScheduledReconcile"]["Properties"],
            "{overrides:?}"
        );
        assert_eq!(
            (event.cluster.as_str(), event.account.as_str()),
            ("prod-eu", "210987654321")
        );
        check::<eks_access_entries::EksProps>(event.properties).unwrap();
    }
    let member = template_json("templates/member-eks-events.yaml");
    let pattern = &resource("EksClusterEventsRule")["EventPattern"];
    assert_eq!(
        pattern,
        &resource("EksOwnAccountEventsRule")["EventPattern"]
    );
    assert_eq!(
        pattern,
        &member["Resources"]["ForwardEksClusterEvents"]["Properties"]["EventPattern"]
    );
    assert_eq!(
        pattern["detail"]["eventName"],
        serde_json::json!(eks_access_entries::CLUSTER_EVENT_NAMES),
        "the rule forwards exactly the events the function takes"
    );
}

/// Deploy mode without a typed connector ID: the connector, its roles in every account, the
/// functions and the StackSets all take `aws-<account ID>`, and no name is left half-empty.
#[test]
fn an_untyped_connector_id_is_derived_from_the_account_everywhere() {
    let template = template_json("template.yaml");
    let overrides = [
        ("ConnectorMode", "Deploy"),
        ("SubnetIds", "subnet-0abc12345"),
        ("ConnectorToken", "apono-connector-token"),
        ("AponoApiToken", "apono-api-token"),
        ("AponoConnectorId", ""),
    ];
    let r = Rendering::new(&template, &overrides);
    let rendered = substitute(&template["Resources"], &r).unwrap();
    let text = rendered.to_string();
    let derived = "aws-111111111111";
    for (resource, pointer) in [
        ("EksAccessEntriesFunction", "/Properties/FunctionName"),
        ("AponoAccountRole", "/Properties/RoleName"),
        ("MemberRolesStackSet", "/Properties/StackSetName"),
        ("EksClusterEventsStackSet", "/Properties/StackSetName"),
        ("EksEventBus", "/Properties/Name"),
        ("AponoIntegration", "/Properties/ConnectorId"),
    ] {
        let value = rendered[resource]
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("");
        assert!(value.ends_with(derived), "{resource}{pointer}: {value:?}");
    }
    let member = &rendered["MemberRolesStackSet"]["Properties"]["Parameters"];
    assert!(member
        .to_string()
        .contains(&format!("\"ParameterValue\":\"{derived}\"")));
    for half_empty in [
        "apono-eks-\"",
        "apono-eks-access-\"",
        "cross-account-\"",
        "-events-\"",
    ] {
        assert!(!text.contains(half_empty), "a name ends in {half_empty}");
    }
}
