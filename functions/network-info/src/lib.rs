//! `Custom::ConnectorNetwork`: the connector's VPC, derived from the subnets it runs in, so
//! that nobody has to look it up and type it; and a clear refusal when the subnets do not exist
//! here or span more than one VPC (ECS would fail much later, and less clearly).

use custom_resource::aws::ApiError;
use custom_resource::props::{opt_string, string_list};
use custom_resource::{
    Context, CustomResource, HandlerResult, Outcome, Output, Properties, PropertyError, Request,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The keys of `Data`, for the template contract test.
pub const DATA_KEYS: &[&str] = &["VpcId"];

/// An ECS task in awsvpc mode takes at most 16 subnets.
const MAX_SUBNETS: usize = 16;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NetworkProps {
    #[serde(default, deserialize_with = "string_list")]
    pub subnet_ids: Vec<String>,
    /// Optional: checked against the subnets' VPC.
    #[serde(default, deserialize_with = "opt_string")]
    pub vpc_id: Option<String>,
}

/// `<prefix>-` and 8 to 17 lowercase hex digits (EC2 makes 8 or 17; the template's own
/// patterns accept the range).
fn ec2_id(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            (8..=17).contains(&hex.len())
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

impl Properties for NetworkProps {
    fn validate(&self) -> Result<(), PropertyError> {
        if self.subnet_ids.is_empty() || self.subnet_ids.len() > MAX_SUBNETS {
            return Err(PropertyError::new(
                "SubnetIds",
                format!("1 to {MAX_SUBNETS} subnet IDs, comma-separated"),
            ));
        }
        if let Some(bad) = self.subnet_ids.iter().find(|s| !ec2_id(s, "subnet")) {
            return Err(PropertyError::new(
                "SubnetIds",
                format!("{bad:?} is not a subnet ID (e.g. subnet-0abc1234)"),
            ));
        }
        if let Some(vpc) = self.vpc_id.as_ref().filter(|v| !ec2_id(v, "vpc")) {
            return Err(PropertyError::new(
                "VpcId",
                format!("{vpc:?} is not a VPC ID (e.g. vpc-0abc1234)"),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("a subnet in SubnetIds does not exist in this account and region ({0}): give subnets of the VPC the connector should run in, from this account and region")]
    SubnetNotFound(String),
    #[error("SubnetIds spans more than one VPC ({0}): give subnets of one VPC")]
    DifferentVpcs(String),
    #[error("VpcId {given} is not the subnets' VPC {actual}: leave VpcId empty (it is derived from SubnetIds) or correct it")]
    VpcMismatch { given: String, actual: String },
    #[error(transparent)]
    Api(#[from] ApiError),
}

pub struct NetworkInfo {
    ec2: aws_sdk_ec2::Client,
}

impl NetworkInfo {
    pub fn new(ec2: aws_sdk_ec2::Client) -> Self {
        NetworkInfo { ec2 }
    }

    /// The one VPC all the subnets are in.
    pub async fn vpc_of(&self, props: &NetworkProps) -> Result<String, NetworkError> {
        let out = self
            .ec2
            .describe_subnets()
            .set_subnet_ids(Some(props.subnet_ids.clone()))
            .send()
            .await
            .map_err(|e| {
                let err = ApiError::from_sdk("ec2:DescribeSubnets", e);
                match err.code() {
                    Some("InvalidSubnetID.NotFound" | "InvalidSubnetID.Malformed") => {
                        NetworkError::SubnetNotFound(err.to_string())
                    }
                    _ => NetworkError::Api(err),
                }
            })?;
        let mut by_vpc: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for subnet in out.subnets() {
            if let (Some(id), Some(vpc)) = (subnet.subnet_id(), subnet.vpc_id()) {
                by_vpc
                    .entry(vpc.to_string())
                    .or_default()
                    .push(id.to_string());
            }
        }
        let found: Vec<&String> = by_vpc.values().flatten().collect();
        if let Some(missing) = props.subnet_ids.iter().find(|s| !found.contains(s)) {
            return Err(NetworkError::SubnetNotFound(missing.clone()));
        }
        if by_vpc.len() > 1 {
            let listing = by_vpc
                .iter()
                .map(|(vpc, subnets)| format!("{} in {vpc}", subnets.join(", ")))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(NetworkError::DifferentVpcs(listing));
        }
        let actual = by_vpc.into_keys().next().unwrap_or_default();
        match &props.vpc_id {
            Some(given) if *given != actual => Err(NetworkError::VpcMismatch {
                given: given.clone(),
                actual,
            }),
            _ => Ok(actual),
        }
    }
}

impl CustomResource for NetworkInfo {
    type Properties = NetworkProps;

    async fn create(&self, _: &Context, req: &Request<NetworkProps>) -> HandlerResult<Outcome> {
        let vpc = self.vpc_of(&req.properties).await?;
        tracing::info!(vpc = %vpc, subnets = req.properties.subnet_ids.len(), "connector network resolved");
        Ok(Output::new(vpc.clone()).with("VpcId", &vpc).into())
    }

    // Update: the default, Create again (a new VPC is a new physical ID, and CloudFormation
    // replaces what depends on it). Delete: the default, nothing to undo (this only reads).
}

#[cfg(test)]
mod tests;
