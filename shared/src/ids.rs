//! AWS identifier formats (AWS Organizations API reference), checked before any API call so that a typo fails with a
//! message that shows the expected shape.

fn all(s: &str, f: impl Fn(char) -> bool) -> bool {
    s.chars().all(f)
}

fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn len_in(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
}

/// `^o-[a-z0-9]{10,32}$`
pub fn organization_id(s: &str) -> Result<(), String> {
    match s.strip_prefix("o-") {
        Some(rest) if len_in(rest, 10, 32) && all(rest, lower_alnum) => Ok(()),
        _ => Err(format!(
            "{s:?} is not an organization ID (expected o- followed by 10-32 lowercase letters or digits, e.g. o-k012345a67)"
        )),
    }
}

/// `^r-[0-9a-z]{4,32}$`
pub fn root_id(s: &str) -> Result<(), String> {
    match s.strip_prefix("r-") {
        Some(rest) if len_in(rest, 4, 32) && all(rest, lower_alnum) => Ok(()),
        _ => Err(format!(
            "{s:?} is not a root ID (expected r- followed by 4-32 lowercase letters or digits, e.g. r-1a2b)"
        )),
    }
}

/// `^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$`
pub fn organizational_unit_id(s: &str) -> Result<(), String> {
    let ok = s.strip_prefix("ou-").and_then(|rest| {
        let (a, b) = rest.split_once('-')?;
        Some(len_in(a, 4, 32) && all(a, lower_alnum) && len_in(b, 8, 32) && all(b, lower_alnum))
    });
    match ok {
        Some(true) => Ok(()),
        _ => Err(format!(
            "{s:?} is not an organizational unit ID (expected ou-<4-32 chars>-<8-32 chars>, e.g. ou-ab12-cd34ef56)"
        )),
    }
}

/// `^\d{12}$`
pub fn account_id(s: &str) -> Result<(), String> {
    if s.len() == 12 && all(s, |c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an AWS account ID (expected 12 digits)"
        ))
    }
}

/// A region name such as `eu-west-1` or `us-gov-west-1`.
pub fn region(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && all(p, lower_alnum))
        && parts.last().is_some_and(|p| all(p, |c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not an AWS region name (e.g. eu-west-1)"))
    }
}

/// `arn:<partition>:iam::<account>:role/<path/>name`.
pub fn iam_role_arn(s: &str) -> Result<(), String> {
    let err =
        || format!("{s:?} is not an IAM role ARN (expected arn:aws:iam::123456789012:role/name)");
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") || parts[2] != "iam" {
        return Err(err());
    }
    if !parts[3].is_empty() || account_id(parts[4]).is_err() {
        return Err(err());
    }
    let name = parts[5].strip_prefix("role/").ok_or_else(err)?;
    let valid = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c);
    if name.is_empty() || name.ends_with('/') || !all(name, valid) || name.len() > 512 {
        return Err(err());
    }
    Ok(())
}

/// The account ID inside an IAM ARN, if it has one.
pub fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| account_id(a).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_shapes() {
        organization_id("o-k012345a67").unwrap();
        root_id("r-1a2b").unwrap();
        organizational_unit_id("ou-ab12-cd34ef56").unwrap();
        account_id("123456789012").unwrap();
        region("us-gov-west-1").unwrap();
        iam_role_arn("arn:aws:iam::123456789012:role/path/apono-connector").unwrap();
        assert_eq!(
            arn_account("arn:aws:iam::123456789012:role/x"),
            Some("123456789012")
        );
    }

    #[test]
    fn rejects_near_misses_with_the_expected_shape() {
        assert!(organization_id("o-SHORT")
            .unwrap_err()
            .contains("o-k012345a67"));
        assert!(organization_id("o-ABCDEFGHIJK").is_err());
        assert!(root_id("r-12").is_err());
        assert!(root_id("ou-1234").is_err());
        assert!(organizational_unit_id("ou-ab12-short").is_err());
        assert!(account_id("12345678901").is_err());
        assert!(region("eu_west_1").is_err());
        assert!(region("eu-west").is_err());
        assert!(iam_role_arn("arn:aws:iam::123:role/x").is_err());
        assert!(iam_role_arn("arn:aws:iam::123456789012:user/x").is_err());
        assert!(iam_role_arn("arn:aws:iam::123456789012:role/").is_err());
    }
}
