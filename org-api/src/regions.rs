//! Which partition and regions the functions work in.

/// An AWS partition: ARNs start `arn:<partition>:`, and each has its own regions and its own
/// home region for the global services (Organizations, Account Management).
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html>
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Aws,
    AwsCn,
    AwsUsGov,
}

impl Partition {
    pub const ALL: [Partition; 3] = [Partition::Aws, Partition::AwsCn, Partition::AwsUsGov];

    /// The partition a region belongs to (Lambda tells a function its region in `AWS_REGION`).
    pub fn of_region(region: &str) -> Partition {
        if region.starts_with("cn-") {
            Partition::AwsCn
        } else if region.starts_with("us-gov-") {
            Partition::AwsUsGov
        } else {
            Partition::Aws
        }
    }

    /// The partition an ARN names; `None` for anything else.
    pub fn of_arn(arn: &str) -> Option<Partition> {
        let mut parts = arn.split(':');
        if parts.next() != Some("arn") {
            return None;
        }
        let name = parts.next()?;
        Partition::ALL.into_iter().find(|p| p.name() == name)
    }

    /// As in ARNs (`AWS::Partition`).
    pub fn name(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::AwsCn => "aws-cn",
            Partition::AwsUsGov => "aws-us-gov",
        }
    }

    /// Where Organizations (and Account Management) serve the partition from.
    /// <https://docs.aws.amazon.com/general/latest/gr/ao.html>
    pub fn home_region(self) -> &'static str {
        match self {
            Partition::Aws => "us-east-1",
            Partition::AwsCn => "cn-northwest-1",
            Partition::AwsUsGov => "us-gov-west-1",
        }
    }

    /// Regions where Amazon EKS is offered in the partition. Intersected with an account's
    /// enabled regions (the `Regions` output of `Custom::OrganizationInfo`); the EKS function
    /// takes a `Regions` property to override it should AWS add a region before this list is
    /// updated. <https://docs.aws.amazon.com/general/latest/gr/eks.html>
    pub fn eks_regions(self) -> &'static [&'static str] {
        match self {
            Partition::Aws => EKS_REGIONS,
            Partition::AwsCn => &["cn-north-1", "cn-northwest-1"],
            Partition::AwsUsGov => &["us-gov-east-1", "us-gov-west-1"],
        }
    }

    /// An ARN in this partition: `arn:<partition>:<rest>`.
    pub fn arn(self, rest: &str) -> String {
        format!("arn:{}:{rest}", self.name())
    }
}

/// Regions where Amazon EKS is offered in the commercial partition.
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

/// `enabled` restricted to the partition's EKS regions, in that list's order.
pub fn eks_regions_among(partition: Partition, enabled: &[String]) -> Vec<String> {
    partition
        .eks_regions()
        .iter()
        .filter(|r| enabled.iter().any(|e| e == *r))
        .map(|r| r.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_partition_is_known_by_its_regions_and_arns_and_has_its_own_home_and_eks_regions() {
        for (region, arn, partition, home) in [
            (
                "eu-west-1",
                "arn:aws:iam::123456789012:role/x",
                Partition::Aws,
                "us-east-1",
            ),
            (
                "cn-north-1",
                "arn:aws-cn:iam::123456789012:role/x",
                Partition::AwsCn,
                "cn-northwest-1",
            ),
            (
                "us-gov-east-1",
                "arn:aws-us-gov:iam::123456789012:role/x",
                Partition::AwsUsGov,
                "us-gov-west-1",
            ),
        ] {
            assert_eq!(Partition::of_region(region), partition);
            assert_eq!(Partition::of_arn(arn), Some(partition));
            assert_eq!(partition.home_region(), home);
            assert!(partition.eks_regions().contains(&region));
            assert_eq!(partition.arn("iam::123456789012:role/x"), arn);
            // No partition's list holds another's regions.
            for other in Partition::ALL.into_iter().filter(|p| *p != partition) {
                assert!(!other.eks_regions().contains(&region));
            }
        }
        assert_eq!(Partition::of_arn("arn:aws-iso:iam::1:role/x"), None);
        assert_eq!(Partition::of_arn("aws:iam"), None);
    }

    #[test]
    fn enabled_regions_are_kept_only_where_the_partition_offers_eks() {
        let enabled: Vec<String> = ["cn-north-1", "cn-northwest-1", "us-east-1"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            eks_regions_among(Partition::AwsCn, &enabled),
            ["cn-north-1", "cn-northwest-1"]
        );
        assert_eq!(eks_regions_among(Partition::Aws, &enabled), ["us-east-1"]);
        assert!(eks_regions_among(Partition::AwsUsGov, &enabled).is_empty());
    }
}
