//! template.yaml as CloudFormation judges it (after the SAM transform), beyond cfn-lint: only
//! rule functions in `Rules`, rule assertions against real parameter sets, and the ordering
//! every scenario needs, each a named check on the dependency graph.
//!
//! Over 400 lines on purpose: one check per CloudFormation rule the template must pass, each
//! short and standing alone, read together against the template.

use serde_json::Value;
use std::sync::OnceLock;
use testkit::cfn::{
    check_rules, function_role, policies_on_role, service_token_function, transformed_template,
    unsupported_rule_functions, Graph,
};
use testkit::template::Rendering;

fn template() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(|| transformed_template("template.yaml"))
}

const DEPLOY_NETWORK: &[(&str, &str)] = &[
    ("VpcId", "vpc-0abc12345"),
    ("SubnetIds", "subnet-0abc12345,subnet-0def67890"),
    (
        "ConnectorTokenSecretArn",
        "arn:aws:secretsmanager:us-east-1:111111111111:secret:apono-connector-AbCdEf",
    ),
];
const EXISTING_ROLE: (&str, &str) = (
    "ConnectorRoleArn",
    "arn:aws:iam::222222222222:role/apono-connector",
);

/// Every combination of the choices that change the graph.
fn scenarios() -> Vec<Vec<(&'static str, &'static str)>> {
    let mut all = Vec::new();
    for scope in ["Organization", "Account"] {
        for mode in ["Deploy", "Existing"] {
            for ous in ["", "ou-ab12-abcdefgh"] {
                for activate in ["true", "false"] {
                    for switch in ["true", "false"] {
                        let mut s = vec![
                            ("Scope", scope),
                            ("ConnectorMode", mode),
                            ("OrganizationalUnitIds", ous),
                            ("ActivateStackSetsTrustedAccess", activate),
                            ("EnableApiAuthMode", switch),
                        ];
                        match mode {
                            "Deploy" => s.extend_from_slice(DEPLOY_NETWORK),
                            _ => s.push(EXISTING_ROLE),
                        }
                        all.push(s);
                    }
                }
            }
        }
    }
    all
}

fn rendering(overrides: &[(&str, &str)]) -> Rendering {
    Rendering::new(template(), overrides)
}

#[test]
fn rules_use_only_the_functions_cloudformation_allows() {
    let refused = unsupported_rule_functions(template());
    assert!(
        refused.is_empty(),
        "CloudFormation refuses the template: \"Template format error: Following functions are \
         not supported in the Rules block of the template\": {refused:?}"
    );
}

#[test]
fn rule_assertions_stop_an_incomplete_stack_with_their_description() {
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: &[Case] = &[
        (&[("ConnectorMode", "Deploy")], Some("needs SubnetIds")),
        (
            &[
                ("ConnectorMode", "Deploy"),
                ("VpcId", "vpc-0abc12345"),
                ("ConnectorTokenSecretArn", DEPLOY_NETWORK[2].1),
            ],
            Some("needs SubnetIds"),
        ),
        (
            &[
                ("ConnectorMode", "Deploy"),
                ("VpcId", "vpc-0abc12345"),
                ("SubnetIds", "subnet-0abc12345"),
            ],
            Some("needs ConnectorToken (or ConnectorTokenSecretArn)"),
        ),
        (
            &[
                ("ConnectorMode", "Deploy"),
                DEPLOY_NETWORK[0],
                DEPLOY_NETWORK[1],
                DEPLOY_NETWORK[2],
                ("ConnectorToken", "apono-connector-token"),
            ],
            Some("not both"),
        ),
        (
            &[
                ("ConnectorMode", "Deploy"),
                DEPLOY_NETWORK[0],
                DEPLOY_NETWORK[1],
                ("ConnectorToken", "apono-connector-token"),
            ],
            None,
        ),
        (
            &[("ConnectorMode", "Existing")],
            Some("needs ConnectorRoleArn"),
        ),
        (&[("ConnectorMode", "Existing"), EXISTING_ROLE], None),
        (
            &[
                ("ConnectorMode", "Existing"),
                EXISTING_ROLE,
                ("AponoConnectorId", ""),
            ],
            Some("needs AponoConnectorId"),
        ),
        (
            &[
                ("ConnectorMode", "Deploy"),
                DEPLOY_NETWORK[1],
                ("ConnectorToken", "apono-connector-token"),
                ("AponoConnectorId", ""),
            ],
            None,
        ),
        (
            &[
                ("ConnectorMode", "Deploy"),
                DEPLOY_NETWORK[0],
                DEPLOY_NETWORK[1],
                DEPLOY_NETWORK[2],
            ],
            None,
        ),
    ];
    for (overrides, expected) in cases {
        let result = check_rules(template(), &rendering(overrides).params);
        match expected {
            Some(why) => {
                let err = result.expect_err(&format!("{overrides:?} must be refused"));
                assert!(err.contains(why), "{overrides:?}: {err}");
            }
            None => result.unwrap_or_else(|e| panic!("{overrides:?} refused: {e}")),
        }
    }
}

/// The ordering each scenario needs, by name, so that an edit that breaks one fails here.
#[test]
fn every_scenario_orders_what_must_come_first() {
    for scenario in scenarios() {
        let r = rendering(&scenario);
        check_rules(template(), &r.params).expect("the scenario is complete");
        let g = Graph::new(template(), &r);
        g.assert_acyclic();
        let c = |name: &str| r.conditions[name];
        let mut must: Vec<(&str, &str, &str)> = Vec::new();
        if c("DeployConnector") && c("Register") {
            must.push((
                "AponoIntegration",
                "ConnectorService",
                "Apono knows a new connector only once its service runs",
            ));
        }
        if c("ActivateTrustedAccess") {
            must.push((
                "OrganizationInfo",
                "OrgInfoActivateTrustedAccessPolicy",
                "the activation needs its policy complete",
            ));
        }
        if c("IsOrganization") {
            must.push((
                "MemberRolesStackSet",
                "OrganizationInfo",
                "a service-managed StackSet needs trusted access checked first",
            ));
        }
        if c("OrganizationEks") {
            must.push((
                "EksAccessEntries",
                "MemberRolesStackSet",
                "member accounts need their roles first",
            ));
        }
        if c("EksSwitchAuthMode") {
            must.push((
                "EksAccessEntries",
                "EksAuthModeSwitchPolicy",
                "the auth-mode switch needs its policy complete",
            ));
        }
        if c("ScheduleEks") {
            must.push((
                "EksScheduleRule",
                "EksAccessEntries",
                "no scheduled reconcile while the entries are created or deleted",
            ));
        }
        if c("EksClusterEvents") {
            must.push((
                "EksClusterEventsRule",
                "EksAccessEntries",
                "no cluster event is served while the entries are created or deleted",
            ));
            must.push((
                "EksClusterEventsPermission",
                "EksClusterEventsRule",
                "the permission names the rule",
            ));
        }
        if c("OrganizationEksClusterEvents") {
            must.push((
                "EksClusterEventsStackSet",
                "MemberRolesStackSet",
                "each account's forwarding rule needs the forwarding role the member roles bring",
            ));
            must.push((
                "EksClusterEventsStackSet",
                "EksEventBusPolicy",
                "the bus must admit the organization before its accounts forward",
            ));
            must.push((
                "MemberRolesStackSet",
                "EksEventBus",
                "the forwarding role may put events on that bus only",
            ));
        }
        for (later, earlier, why) in must {
            assert!(
                g.waits_for(later, earlier),
                "{later} must wait for {earlier} ({why}) in {scenario:?}"
            );
        }
    }
}

/// IAM grants nothing until a policy resource is complete: every custom resource waits for
/// every policy resource on its function's role.
#[test]
fn every_custom_resource_waits_for_every_policy_of_its_function() {
    let t = template();
    for scenario in scenarios() {
        let r = rendering(&scenario);
        let g = Graph::new(t, &r);
        for name in g.deps.keys() {
            let resource = &t["Resources"][name.as_str()];
            if !resource["Type"]
                .as_str()
                .unwrap_or("")
                .starts_with("Custom::")
            {
                continue;
            }
            let function = service_token_function(resource).expect("ServiceToken is a GetAtt");
            let role = function_role(t, &function).expect("the function has a role of the stack");
            for policy in policies_on_role(t, &g, &role) {
                assert!(
                    g.waits_for(name, &policy),
                    "{name} runs as {role} but does not wait for {policy} in {scenario:?}"
                );
            }
        }
    }
}

/// The connector's ECS service in Deploy mode can start (its execution role reads a secret
/// encrypted with a customer managed key, through Secrets Manager only), fails fast instead of
/// keeping CloudFormation waiting for hours when its tasks cannot start, and reaches the
/// resources it manages on their own ports.
#[test]
fn the_connector_service_starts_fails_fast_and_reaches_what_it_manages() {
    let t = template();
    let mut scenario = vec![("Scope", "Organization"), ("ConnectorMode", "Deploy")];
    scenario.extend_from_slice(DEPLOY_NETWORK);
    let r = rendering(&scenario);
    let render = |resource: &str, path: &[&str]| {
        let mut value = &t["Resources"][resource]["Properties"];
        for key in path {
            value = &value[*key];
        }
        testkit::template::substitute(value, &r).unwrap_or(Value::Null)
    };

    let breaker = render(
        "ConnectorService",
        &["DeploymentConfiguration", "DeploymentCircuitBreaker"],
    );
    assert!(
        breaker["Enable"] == "true" && breaker["Rollback"] == "true",
        "ConnectorService has no deployment circuit breaker with rollback: a task that cannot \
         start (a wrong registry credential) keeps CloudFormation waiting for hours: {breaker}"
    );

    let egress = render("ConnectorSecurityGroup", &["SecurityGroupEgress"]);
    let reaches_any_port = |port: u16| {
        egress.as_array().into_iter().flatten().any(|rule| {
            let protocol = rule["IpProtocol"].as_str().unwrap_or("");
            let from = rule["FromPort"].as_str().and_then(|p| p.parse().ok());
            let to = rule["ToPort"].as_str().and_then(|p| p.parse().ok());
            rule["CidrIp"] == "0.0.0.0/0"
                && (protocol == "-1"
                    || (protocol == "tcp"
                        && from.is_some_and(|f: u16| f <= port)
                        && to.is_some_and(|t: u16| port <= t)))
        })
    };
    for (what, port) in [("Apono", 443), ("PostgreSQL", 5432), ("MySQL", 3306)] {
        assert!(
            reaches_any_port(port),
            "the connector cannot reach {what} on port {port}: {egress}"
        );
    }

    let policies: Vec<Value> = render("ConnectorExecutionRole", &["Policies"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["PolicyDocument"].clone())
        .collect();
    let secret = DEPLOY_NETWORK[2].1;
    let key = format!(
        "arn:aws:kms:us-east-1:{}:key/0b1c2d3e",
        r.pseudo("AWS::AccountId")
    );
    let via = |service: &str| format!("{service}.us-east-1.amazonaws.com");
    assert!(
        testkit::iam::allows(&policies, "secretsmanager:GetSecretValue", secret, &[]),
        "the execution role cannot read the connector's token secret"
    );
    assert!(
        testkit::iam::allows(
            &policies,
            "kms:Decrypt",
            &key,
            &[("kms:ViaService", &via("secretsmanager"))]
        ),
        "the execution role cannot decrypt a secret encrypted with a customer managed key"
    );
    assert!(
        !testkit::iam::allows(
            &policies,
            "kms:Decrypt",
            &key,
            &[("kms:ViaService", &via("s3"))]
        ),
        "the execution role may decrypt with the key outside Secrets Manager"
    );
}

/// The EKS function's role, and the role it assumes in each member account, may create
/// entries only for the stack's connector role and associate only the cluster admin access
/// policy with it: whoever holds either role (the function, or anyone able to invoke it)
/// cannot grant a cluster to another principal. Removal stays open, for an Update that
/// replaces the connector role.
#[test]
fn the_eks_roles_may_grant_only_the_connector_the_cluster_admin_policy() {
    let t = template();
    let member = testkit::template::template_json("templates/member-account.yaml");
    let admin_policy = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";
    let admin_view = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy";
    let attacker = "arn:aws:iam::111111111111:role/attacker";
    for mode in ["Deploy", "Existing"] {
        let mut scenario = vec![("Scope", "Organization"), ("ConnectorMode", mode)];
        match mode {
            "Deploy" => scenario.extend_from_slice(DEPLOY_NETWORK),
            _ => scenario.push(EXISTING_ROLE),
        }
        let r = rendering(&scenario);
        let role = function_role(t, "EksAccessEntriesFunction").unwrap();
        let function_policies = documents(t, &role, &r);
        let connector = testkit::template::substitute(
            &t["Resources"]["EksAccessEntriesFunction"]["Properties"]["Environment"]["Variables"]
                ["EKS_GRANT_PRINCIPAL_ARN"],
            &r,
        )
        .unwrap();
        let connector = connector.as_str().unwrap();
        let stack = r.pseudo("AWS::StackId");
        let parameters = [
            ("AponoConnectorId", "apono-connector-prod"),
            ("ConnectorRoleArn", connector),
            ("Permissions", "Read-Only (Discovery)"),
            (
                "EksManagerRoleArn",
                "arn:aws:iam::111111111111:role/eks-function",
            ),
            ("EksMemberRoleName", "apono-eks-access-apono-connector-prod"),
            ("OwnerStackId", &stack),
        ];
        let m = testkit::template::Rendering::in_account(&member, &parameters, "222222222222");
        let member_policies = documents(&member, "EksAccessEntriesRole", &m);
        for (who, policies, account) in [
            ("the function's role", &function_policies, "111111111111"),
            ("the member role", &member_policies, "222222222222"),
        ] {
            let cluster = format!("arn:aws:eks:eu-west-1:{account}:cluster/prod");
            let entry = |principal: &str| {
                let name = principal.rsplit('/').next().unwrap();
                format!("arn:aws:eks:eu-west-1:{account}:access-entry/prod/role/111111111111/{name}/1a2b")
            };
            let may = |action: &str, resource: &str, keys: &[(&str, &str)]| {
                testkit::iam::allows(policies, action, resource, keys)
            };
            let create = |principal| {
                may(
                    "eks:CreateAccessEntry",
                    &cluster,
                    &[("eks:principalArn", principal)],
                )
            };
            // AssociateAccessPolicy carries no eks:principalArn: the entry must carry the
            // owning stack's tag.
            let associate = |principal, policy, stack: &str| {
                may(
                    "eks:AssociateAccessPolicy",
                    &entry(principal),
                    &[
                        ("eks:policyArn", policy),
                        ("eks:accessScope", "cluster"),
                        ("aws:ResourceTag/apono-onboarding:stack-id", stack),
                    ],
                )
            };
            let other_stack = "arn:aws:cloudformation:us-east-1:111111111111:stack/other/1";
            assert!(
                create(connector),
                "{mode}: {who} cannot create the connector's entry"
            );
            assert!(
                associate(connector, admin_policy, &stack),
                "{mode}: {who} cannot associate the cluster admin policy"
            );
            assert!(
                !create(attacker),
                "{mode}: {who} may create an entry for anyone"
            );
            assert!(
                !associate(attacker, admin_policy, other_stack),
                "{mode}: {who} may make anyone's entry cluster admin"
            );
            assert!(
                !associate(connector, admin_view, &stack),
                "{mode}: {who} may associate any access policy"
            );
            assert!(
                may(
                    "eks:DeleteAccessEntry",
                    &entry(attacker),
                    &[("eks:principalArn", attacker)]
                ),
                "{mode}: {who} cannot remove an old connector role's entry"
            );
        }
    }
}

/// The inline policy documents of a resource's `Policies` (a role) or its `PolicyDocument`
/// (a policy resource), rendered.
fn documents(t: &Value, resource: &str, r: &testkit::template::Rendering) -> Vec<Value> {
    let props = testkit::template::substitute(&t["Resources"][resource]["Properties"], r)
        .unwrap_or(Value::Null);
    match props.get("PolicyDocument") {
        Some(document) => vec![document.clone()],
        None => props["Policies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["PolicyDocument"].clone())
            .collect(),
    }
}

/// Full-Access (Manage IAM) lets Apono change IAM for just-in-time access, but never the roles
/// that guard the account and the organization: its own, the StackSet execution roles,
/// OrganizationAccountAccessRole, Identity Center's and AWS's service roles.
#[test]
fn full_access_never_reaches_the_roles_that_guard_the_organization() {
    let t = template();
    let member = testkit::template::template_json("templates/member-account.yaml");
    let mut scenario = vec![
        ("Scope", "Organization"),
        ("ConnectorMode", "Existing"),
        ("Permissions", "Full-Access (Manage IAM)"),
    ];
    scenario.push(EXISTING_ROLE);
    let r = rendering(&scenario);
    let m = testkit::template::Rendering::in_account(
        &member,
        &[
            ("AponoConnectorId", "apono-connector-prod"),
            ("ConnectorRoleArn", EXISTING_ROLE.1),
            ("Permissions", "Full-Access (Manage IAM)"),
        ],
        "111111111111",
    );
    for (who, policies) in [
        (
            "the management account's Apono role",
            documents(t, "AponoAccountRole", &r),
        ),
        (
            "a member account's Apono role",
            documents(&member, "AponoManageIamPolicy", &m),
        ),
    ] {
        let attach = |role: &str| {
            testkit::iam::allows(
                &policies,
                "iam:AttachRolePolicy",
                &format!("arn:aws:iam::111111111111:role/{role}"),
                &[],
            )
        };
        assert!(attach("payments-app"), "{who} cannot grant access at all");
        for guarded in [
            "apono-management-apono-connector-prod",
            "apono-cross-account-apono-connector-prod",
            "OrganizationAccountAccessRole",
            "stacksets-exec-0a1b2c3d4e5f",
            "AWSCloudFormationStackSetExecutionRole",
            "aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef",
            "aws-service-role/stacksets.cloudformation.amazonaws.com/AWSServiceRoleForCloudFormationStackSetsOrgMember",
        ] {
            assert!(!attach(guarded), "{who} may attach a policy to {guarded}");
        }
    }
}

/// The conditions that keep each grant to what it is for.
#[test]
fn iam_conditions_hold_each_grant_to_its_purpose() {
    let t = template();
    let mut scenario = vec![
        ("Scope", "Organization"),
        ("ConnectorMode", "Deploy"),
        ("ActivateStackSetsTrustedAccess", "true"),
    ];
    scenario.extend_from_slice(DEPLOY_NETWORK);
    let r = rendering(&scenario);
    let account = r.pseudo("AWS::AccountId");

    // The connector assumes Apono roles of its own organization only.
    let connector = documents(t, "ConnectorTaskRole", &r);
    let apono_role = "arn:aws:iam::222222222222:role/apono-cross-account-apono-connector-prod";
    let assume = |org: &str| {
        testkit::iam::allows(
            &connector,
            "sts:AssumeRole",
            apono_role,
            &[("aws:ResourceOrgID", org)],
        )
    };
    assert!(
        assume("o-abcdefghij"),
        "the connector cannot assume its organization's roles"
    );
    assert!(
        !assume("o-zzzzzzzzzz"),
        "the connector may assume apono-* roles of any organization"
    );

    // ECS tasks of this account only may be the connector.
    for role in ["ConnectorTaskRole", "ConnectorExecutionRole"] {
        let trust = testkit::template::substitute(
            &t["Resources"][role]["Properties"]["AssumeRolePolicyDocument"],
            &r,
        )
        .unwrap();
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"], account,
            "{role}'s trust admits ECS tasks of any account"
        );
    }

    // The token: decrypted through SSM, for this parameter only.
    let token_reader = documents(
        t,
        &function_role(t, "AponoIntegrationFunction").unwrap(),
        &r,
    );
    let key = format!("arn:aws:kms:us-east-1:{account}:key/0b1c2d3e");
    let parameter = |name: &str| format!("arn:aws:ssm:us-east-1:{account}:parameter{name}");
    let decrypt = |name: &str| {
        testkit::iam::allows(
            &token_reader,
            "kms:Decrypt",
            &key,
            &[
                ("kms:ViaService", "ssm.us-east-1.amazonaws.com"),
                ("kms:EncryptionContext:PARAMETER_ARN", &parameter(name)),
            ],
        )
    };
    assert!(
        decrypt("/apono/api-token"),
        "the function cannot decrypt its token"
    );
    assert!(
        !decrypt("/payments/db-password"),
        "the function may decrypt any SecureString"
    );

    // Trusted access: for StackSets only.
    let activation = documents(t, "OrgInfoActivateTrustedAccessPolicy", &r);
    let enable = |principal: &str| {
        testkit::iam::allows(
            &activation,
            "organizations:EnableAWSServiceAccess",
            "*",
            &[("organizations:ServicePrincipal", principal)],
        )
    };
    assert!(enable("member.org.stacksets.cloudformation.amazonaws.com"));
    assert!(
        !enable("sso.amazonaws.com"),
        "any service may be given trusted access"
    );
}

/// ConnectorExternalId guards the Apono roles' trust (a connector outside the organization);
/// PermissionsBoundaryArn reaches every role the stack creates, member accounts included.
#[test]
fn external_id_and_permissions_boundary_reach_every_role() {
    let t = template();
    let member = testkit::template::template_json("templates/member-account.yaml");
    let boundary = "arn:aws:iam::111111111111:policy/org-boundary";
    for mode in ["Deploy", "Existing"] {
        let mut scenario = vec![
            ("Scope", "Organization"),
            ("ConnectorMode", mode),
            ("ConnectorExternalId", "apono-7f3a9c"),
            ("PermissionsBoundaryArn", boundary),
        ];
        match mode {
            "Deploy" => scenario.extend_from_slice(DEPLOY_NETWORK),
            _ => scenario.push(EXISTING_ROLE),
        }
        let r = rendering(&scenario);
        for (name, resource) in t["Resources"].as_object().unwrap() {
            if resource["Type"] != "AWS::IAM::Role" || !r.included(resource) {
                continue;
            }
            let props = testkit::template::substitute(&resource["Properties"], &r).unwrap();
            assert_eq!(
                props["PermissionsBoundary"], boundary,
                "{mode}: {name} has no boundary"
            );
        }
        let trust = testkit::template::substitute(
            &t["Resources"]["AponoAccountRole"]["Properties"]["AssumeRolePolicyDocument"],
            &r,
        )
        .unwrap();
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
            "apono-7f3a9c"
        );
    }
    let m = testkit::template::Rendering::in_account(
        &member,
        &[
            ("AponoConnectorId", "apono-connector-prod"),
            ("ConnectorRoleArn", EXISTING_ROLE.1),
            ("Permissions", "Read-Only (Discovery)"),
            (
                "EksManagerRoleArn",
                "arn:aws:iam::111111111111:role/eks-function",
            ),
            ("ConnectorExternalId", "apono-7f3a9c"),
            ("PermissionsBoundaryArn", boundary),
        ],
        "222222222222",
    );
    for name in ["AponoCrossAccountRole", "EksAccessEntriesRole"] {
        let props =
            testkit::template::substitute(&member["Resources"][name]["Properties"], &m).unwrap();
        assert_eq!(
            props["PermissionsBoundary"], boundary,
            "member {name} has no boundary"
        );
    }
    let trust = testkit::template::substitute(
        &member["Resources"]["AponoCrossAccountRole"]["Properties"]["AssumeRolePolicyDocument"],
        &m,
    )
    .unwrap();
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        "apono-7f3a9c"
    );
    // Without an external ID the trust has no condition (Apono's own connector needs none).
    let r = rendering(&[
        ("Scope", "Organization"),
        ("ConnectorMode", "Existing"),
        EXISTING_ROLE,
    ]);
    let trust = testkit::template::substitute(
        &t["Resources"]["AponoAccountRole"]["Properties"]["AssumeRolePolicyDocument"],
        &r,
    )
    .unwrap();
    assert!(trust["Statement"][0].get("Condition").is_none(), "{trust}");
}

/// `sam publish` takes the application's listing from this metadata: its version must be the
/// release's and the files it names must exist (the upload fails otherwise).
#[test]
fn the_serverless_repository_listing_names_this_release_and_files_that_exist() {
    let raw = testkit::template::template_json("template.yaml");
    let app = &raw["Metadata"]["AWS::ServerlessRepo::Application"];
    let cargo = std::fs::read_to_string(testkit::workspace_root().join("Cargo.toml")).unwrap();
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(app["SemanticVersion"], version);
    assert!(cargo.contains(&format!(
        "license = \"{}\"",
        app["SpdxLicenseId"].as_str().unwrap()
    )));
    for key in ["LicenseUrl", "ReadmeUrl"] {
        let file = testkit::workspace_root().join(app[key].as_str().unwrap());
        assert!(file.is_file(), "{key}: {} is missing", file.display());
    }
    // The listing's limits (AWS::ServerlessRepo::Application): name 1-140, description 1-256,
    // at most 10 labels of 1-127 characters.
    assert!((1..=140).contains(&app["Name"].as_str().unwrap().len()));
    assert!((1..=256).contains(&app["Description"].as_str().unwrap().len()));
    let labels = app["Labels"].as_array().unwrap();
    assert!(labels.len() <= 10);
    assert!(labels
        .iter()
        .all(|l| (1..=127).contains(&l.as_str().unwrap().len())));
}

/// Every `arn:` in a string, with the partition it names.
fn arn_partitions(value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => {
            for (at, _) in s.match_indices("arn:") {
                let partition = s[at + 4..].split(':').next().unwrap_or_default();
                out.push((partition.to_string(), s.clone()));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| arn_partitions(v, out)),
        // A StackSet's template is a member stack's, checked as one.
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| *k != "TemplateBody")
            .for_each(|(_, v)| arn_partitions(v, out)),
        _ => {}
    }
}

/// In aws-cn and aws-us-gov every ARN the stack and its member stacks make names that
/// partition: none is written as `arn:aws:` (the user's own ARNs given in that partition).
#[test]
fn every_arn_the_stack_makes_is_in_the_partition_it_is_deployed_in() {
    use org_info::api::regions::Partition;
    let member = testkit::template::template_json("templates/member-account.yaml");
    for region in ["us-east-1", "cn-northwest-1", "us-gov-west-1"] {
        let t = &testkit::cfn::transformed_template_in("template.yaml", region);
        let partition = Partition::of_region(region);
        let mut checked = 0;
        for scenario in scenarios() {
            let scenario: Vec<(&str, String)> = scenario
                .iter()
                .map(|(k, v)| {
                    (
                        *k,
                        v.replace("arn:aws:", &format!("arn:{}:", partition.name())),
                    )
                })
                .collect();
            let overrides: Vec<(&str, &str)> =
                scenario.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = Rendering::new(t, &overrides).in_region(region);
            let mut arns = Vec::new();
            for resource in t["Resources"].as_object().unwrap().values() {
                if r.included(resource) {
                    let props = testkit::template::substitute(&resource["Properties"], &r);
                    arn_partitions(&props.unwrap_or(Value::Null), &mut arns);
                }
            }
            let parameters: Vec<(&str, String)> = vec![
                ("AponoConnectorId", "apono-connector-prod".into()),
                (
                    "ConnectorRoleArn",
                    partition.arn("iam::111111111111:role/connector"),
                ),
                ("Permissions", "Full-Access (Manage IAM)".into()),
                (
                    "EksManagerRoleArn",
                    partition.arn("iam::111111111111:role/eks"),
                ),
            ];
            let parameters: Vec<(&str, &str)> =
                parameters.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let m = Rendering::in_account(&member, &parameters, "222222222222").in_region(region);
            for resource in member["Resources"].as_object().unwrap().values() {
                if m.included(resource) {
                    let props = testkit::template::substitute(&resource["Properties"], &m);
                    arn_partitions(&props.unwrap_or(Value::Null), &mut arns);
                }
            }
            for (named, text) in &arns {
                assert_eq!(named, partition.name(), "in {region}: {text}");
            }
            checked += arns.len();
        }
        assert!(checked > 100, "{region}: only {checked} ARNs seen");
    }
}

/// Where a template refers to a parameter: `Ref`, or `${Name}` in a `Fn::Sub` string.
fn references_to(value: &Value, name: &str, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let here = format!("{at}/{key}");
                if key == "Ref" && v == name {
                    out.push(here.clone());
                }
                if key == "Fn::Sub" {
                    let text = v.as_str().or(v[0].as_str()).unwrap_or_default();
                    if text.contains(&format!("${{{name}}}")) {
                        out.push(here.clone());
                    }
                }
                references_to(v, name, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                references_to(v, name, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A token given as a NoEcho parameter goes into the stack's own secret and nowhere else: no
/// other resource property (which CloudFormation would show and pass on, as in a custom
/// resource's event), no output, no metadata.
#[test]
fn a_token_parameter_reaches_only_its_secret() {
    let t = template();
    for (parameter, secret) in [
        ("AponoApiToken", "AponoApiTokenSecret"),
        ("ConnectorToken", "ConnectorTokenSecret"),
    ] {
        assert_eq!(t["Parameters"][parameter]["NoEcho"], true, "{parameter}");
        let mut found = Vec::new();
        for section in ["Resources", "Outputs", "Metadata"] {
            references_to(&t[section], parameter, section, &mut found);
        }
        assert_eq!(
            found,
            [format!(
                "Resources/{secret}/Properties/SecretString/{}",
                match parameter {
                    "AponoApiToken" => "Ref",
                    _ => "Fn::Sub",
                }
            )],
            "{parameter}"
        );
        assert_eq!(
            t["Resources"][secret]["Type"],
            "AWS::SecretsManager::Secret"
        );
    }
}
