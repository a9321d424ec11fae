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
fn the_stackset_carries_exactly_the_member_account_template() {
    let template = template_json("template.yaml");
    let inline = template["Resources"]["MemberRolesStackSet"]["Properties"]["TemplateBody"]
        .as_str()
        .unwrap();
    let file =
        std::fs::read_to_string(testkit::workspace_root().join("templates/member-account.yaml"))
            .unwrap();
    assert_eq!(
        inline.trim_end(),
        file.trim_end(),
        "run: scripts/sync-member-template.sh"
    );
}
