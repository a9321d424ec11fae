//! A StackSet operation as CloudFormation runs it in one region: accounts in waves, paced by
//! the operation preferences, stopped once failures exceed the tolerance.

use serde_json::Value;

/// How a StackSet operation paces its accounts in a region, as CloudFormation documents
/// `StackSetOperationPreferences`: percentages round down (a concurrency of 0 becomes 1);
/// STRICT_FAILURE_TOLERANCE (the default) runs at most tolerance + 1 accounts at once, less
/// as failures accrue; SOFT_FAILURE_TOLERANCE keeps the full concurrency. Once more accounts
/// than the tolerance have failed, no new account is started and the operation fails.
/// <https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackSetOperationPreferences.html>
#[derive(Debug, Clone, PartialEq)]
pub struct OperationPreferences {
    pub max_concurrent: Share,
    pub failure_tolerance: Share,
    pub soft: bool,
}

/// A count, or a percentage of the accounts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Share {
    Count(usize),
    Percent(usize),
}

impl Share {
    fn of(self, accounts: usize) -> usize {
        match self {
            Share::Count(n) => n,
            Share::Percent(p) => accounts * p / 100,
        }
    }
}

impl OperationPreferences {
    /// From the resource's `OperationPreferences` (absent: one account at a time, none may fail).
    pub fn from_props(prefs: &Value) -> Self {
        let number = |key: &str| {
            prefs[key]
                .as_u64()
                .or_else(|| prefs[key].as_str().and_then(|s| s.parse().ok()))
                .map(|n| n as usize)
        };
        let share = |count: &str, percent: &str, default| match (number(count), number(percent)) {
            (Some(n), _) => Share::Count(n),
            (None, Some(p)) => Share::Percent(p),
            (None, None) => default,
        };
        OperationPreferences {
            max_concurrent: share(
                "MaxConcurrentCount",
                "MaxConcurrentPercentage",
                Share::Count(1),
            ),
            failure_tolerance: share(
                "FailureToleranceCount",
                "FailureTolerancePercentage",
                Share::Count(0),
            ),
            soft: prefs["ConcurrencyMode"] == "SOFT_FAILURE_TOLERANCE",
        }
    }

    pub fn tolerance(&self, accounts: usize) -> usize {
        self.failure_tolerance.of(accounts)
    }

    /// How many accounts the next wave may start, `failed` having failed so far.
    pub fn next_wave(&self, accounts: usize, failed: usize) -> usize {
        let tolerance = self.tolerance(accounts);
        if failed > tolerance {
            return 0;
        }
        let max = self.max_concurrent.of(accounts).max(1);
        match self.soft {
            true => max,
            false => max.min(tolerance + 1 - failed),
        }
    }
}

/// What one StackSet operation did in its region.
#[derive(Debug, Default)]
pub struct OperationReport {
    pub accounts: usize,
    pub waves: usize,
    pub tolerance: usize,
    /// (account, reason), in the order they failed.
    pub failed: Vec<(String, String)>,
    /// Accounts never started because the operation stopped.
    pub not_started: usize,
}

impl OperationReport {
    pub fn succeeded(&self) -> bool {
        self.failed.len() <= self.tolerance && self.not_started == 0
    }

    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} accounts in {} wave(s), {} failed (tolerance {})",
            self.accounts,
            self.waves,
            self.failed.len(),
            self.tolerance
        );
        if self.not_started > 0 {
            line.push_str(&format!(", {} not started", self.not_started));
        }
        for (account, reason) in &self.failed {
            line.push_str(&format!("; {account}: {reason}"));
        }
        line
    }
}

/// Runs `deploy` on every account in waves paced by `prefs`.
pub async fn run_operation<F, Fut>(
    accounts: &[String],
    prefs: &OperationPreferences,
    deploy: F,
) -> OperationReport
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut report = OperationReport {
        accounts: accounts.len(),
        tolerance: prefs.tolerance(accounts.len()),
        ..Default::default()
    };
    let mut next = 0;
    while next < accounts.len() {
        let size = prefs.next_wave(accounts.len(), report.failed.len());
        if size == 0 {
            break;
        }
        let wave = &accounts[next..(next + size).min(accounts.len())];
        next += wave.len();
        report.waves += 1;
        let results = futures::future::join_all(wave.iter().map(|a| deploy(a.clone()))).await;
        for (account, result) in wave.iter().zip(results) {
            if let Err(reason) = result {
                report.failed.push((account.clone(), reason));
            }
        }
    }
    report.not_started = accounts.len() - next;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accounts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:012}")).collect()
    }

    #[test]
    fn percentages_round_down_and_concurrency_is_at_least_one() {
        let prefs = OperationPreferences::from_props(&json!({
            "MaxConcurrentPercentage": 25, "FailureTolerancePercentage": 10,
            "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"}));
        assert_eq!(prefs.tolerance(1000), 100);
        assert_eq!(prefs.next_wave(1000, 0), 250);
        assert_eq!(prefs.tolerance(3), 0);
        assert_eq!(prefs.next_wave(3, 0), 1);
    }

    #[test]
    fn strict_mode_runs_at_most_tolerance_plus_one_and_slows_as_accounts_fail() {
        let prefs = OperationPreferences::from_props(&json!({
            "MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 10}));
        assert_eq!(prefs.next_wave(1000, 0), 101);
        assert_eq!(prefs.next_wave(1000, 60), 41);
        assert_eq!(prefs.next_wave(1000, 101), 0);
    }

    #[tokio::test]
    async fn the_defaults_deploy_a_thousand_accounts_in_one_wave_past_a_handful_of_broken_ones() {
        let prefs = OperationPreferences::from_props(&json!({
            "MaxConcurrentPercentage": "100", "FailureTolerancePercentage": "10",
            "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"}));
        let all = accounts(1000);
        let broken = |a: &str| a.ends_with("7") && a < "000000000100";
        let report = run_operation(&all, &prefs, |a| async move {
            match broken(&a) {
                true => Err("role already exists".to_string()),
                false => Ok(()),
            }
        })
        .await;
        assert_eq!((report.waves, report.failed.len()), (1, 10));
        assert!(report.succeeded(), "{}", report.summary());
        // CloudFormation's own default (strict, 1 at a time, none may fail) stops at the first.
        let strict = OperationPreferences::from_props(&json!({}));
        let report = run_operation(&all, &strict, |a| async move {
            match broken(&a) {
                true => Err("role already exists".to_string()),
                false => Ok(()),
            }
        })
        .await;
        assert_eq!((report.waves, report.failed.len()), (8, 1));
        assert!(!report.succeeded());
        assert_eq!(report.not_started, 992);
    }

    #[tokio::test]
    async fn failures_beyond_the_tolerance_stop_the_operation_and_name_each_account() {
        let prefs = OperationPreferences::from_props(&json!({
            "MaxConcurrentCount": 2, "FailureToleranceCount": 1,
            "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"}));
        let report = run_operation(&accounts(10), &prefs, |a| async move {
            match a.as_str() {
                "000000000000" | "000000000003" => Err(format!("broken {a}")),
                _ => Ok(()),
            }
        })
        .await;
        assert_eq!(report.waves, 2);
        assert_eq!(report.not_started, 6);
        assert!(!report.succeeded());
        assert!(report
            .summary()
            .contains("000000000003: broken 000000000003"));
    }
}
