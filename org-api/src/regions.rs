//! Which regions the functions work in.

/// Regions where Amazon EKS is offered (commercial partition). Intersected with an account's
/// enabled regions (the `Regions` output of `Custom::OrganizationInfo`); the EKS function takes a `Regions` property
/// to override it should AWS add a region before this list is updated.
pub const EKS_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
];

/// `enabled` restricted to EKS regions, in [`EKS_REGIONS`] order.
pub fn eks_regions_among(enabled: &[String]) -> Vec<String> {
    EKS_REGIONS
        .iter()
        .filter(|r| enabled.iter().any(|e| e == *r))
        .map(|r| r.to_string())
        .collect()
}
