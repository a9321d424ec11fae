//! The plan of an operation and how far it got: the pairs to work on, a bitmap of those done,
//! and the counts so far. It travels between invocations (a continuation), so it is validated
//! when it comes back.

use crate::eks::Grant;
use custom_resource::ids;
use serde::{Deserialize, Serialize};

/// Accounts x regions and the grant that should (new) or should no longer (old) hold there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub grant: Grant,
    pub member_role: String,
    pub enable_api_mode: bool,
}

impl Target {
    /// Every field within what a plan can produce: account IDs, region names, a role name,
    /// and at most 10,000 accounts x 40 regions.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.accounts.len() > 10_000 || self.regions.len() > 40 {
            return Err("more accounts or regions than an organization has".into());
        }
        for account in &self.accounts {
            ids::account_id(account)?;
        }
        for region in &self.regions {
            ids::region(region)?;
        }
        let role = &self.member_role;
        if role.is_empty()
            || role.len() > 64
            || !role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
            return Err(format!("{role:?} is not an IAM role name"));
        }
        crate::props::principal_arn(&self.grant.principal_arn)?;
        if let Some(own) = &self.grant.own_account_principal_arn {
            ids::iam_role_arn(own)?;
        }
        Ok(())
    }

    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.accounts
            .iter()
            .flat_map(|a| self.regions.iter().map(move |r| (a.as_str(), r.as_str())))
    }

    pub(crate) fn contains(&self, account: &str, region: &str) -> bool {
        self.accounts.iter().any(|a| a == account) && self.regions.iter().any(|r| r == region)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub clusters: usize,
    pub created: usize,
    pub present: usize,
    pub removed: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Account x region pairs that could not be read at all.
    pub unreachable: usize,
    /// A few reasons, for `Data` (the full report is in the log).
    pub samples: Vec<String>,
}

impl Counts {
    pub(crate) fn note(&mut self, text: String) {
        if self.samples.len() < 3 {
            self.samples
                .push(custom_resource::response::truncate_utf8(&text, 200).to_string());
        }
    }

    /// An account or region that could not be read at all is the most actionable reason:
    /// it goes before cluster skips, whatever order the fan-out finished in.
    pub(crate) fn note_first(&mut self, text: String) {
        self.samples.insert(
            0,
            custom_resource::response::truncate_utf8(&text, 200).to_string(),
        );
        self.samples.truncate(3);
    }
}

/// Everything a run needs to go on in a fresh invocation. The work items are the `new` pairs
/// followed by the `old` pairs that are not `new`; `done` is a bitmap over them, so the state
/// stays a few KB even for 1,000 accounts x 17 regions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    pub new: Option<Target>,
    pub old: Option<Target>,
    pub done: String,
    pub counts: Counts,
    pub owner_stack: String,
    pub owner_logical: String,
    pub fail_on_skipped: bool,
    pub max_concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Ensure,
    Remove,
}

impl Progress {
    pub(crate) fn items(&self) -> Vec<(Action, String, String)> {
        let mut items = Vec::new();
        if let Some(new) = &self.new {
            items.extend(
                new.pairs()
                    .map(|(a, r)| (Action::Ensure, a.to_string(), r.to_string())),
            );
        }
        if let Some(old) = &self.old {
            items.extend(
                old.pairs()
                    .filter(|(a, r)| !self.new.as_ref().is_some_and(|n| n.contains(a, r)))
                    .map(|(a, r)| (Action::Remove, a.to_string(), r.to_string())),
            );
        }
        items
    }

    pub(crate) fn is_done(&self, index: usize) -> bool {
        bit(&self.done, index)
    }

    pub(crate) fn mark_done(&mut self, index: usize) {
        self.done = set_bit(&self.done, index);
    }
}

fn bit(hex: &str, index: usize) -> bool {
    hex.as_bytes()
        .get(index / 4)
        .and_then(|c| (*c as char).to_digit(16))
        .is_some_and(|d| d & (1 << (index % 4)) != 0)
}

fn set_bit(hex: &str, index: usize) -> String {
    let mut digits: Vec<u32> = hex.chars().filter_map(|c| c.to_digit(16)).collect();
    if digits.len() <= index / 4 {
        digits.resize(index / 4 + 1, 0);
    }
    digits[index / 4] |= 1 << (index % 4);
    digits
        .iter()
        .map(|d| char::from_digit(*d, 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bitmap_marks_exactly_the_items_done_four_to_a_hex_digit() {
        let marked = [0, 3, 4, 17, 1000];
        let mut hex = String::new();
        for index in marked {
            hex = set_bit(&hex, index);
        }
        assert_eq!(hex.len(), 1000 / 4 + 1, "grows to the highest item only");
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(hex.starts_with("910"), "items 0 and 3, then 4: {hex}");
        for index in 0..1100 {
            assert_eq!(bit(&hex, index), marked.contains(&index), "item {index}");
        }
        assert_eq!(set_bit(&hex, 17), hex, "marking twice changes nothing");
    }

    #[test]
    fn seventeen_thousand_pairs_fit_in_a_few_kilobytes() {
        let mut hex = String::new();
        for index in (0..17_000).step_by(7) {
            hex = set_bit(&hex, index);
        }
        assert!(hex.len() <= 17_000 / 4 + 1);
        assert!(bit(&hex, 16_996) && !bit(&hex, 16_997));
    }
}
