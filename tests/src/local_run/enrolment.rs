//! Clusters that appear after the stack: one whose CloudTrail event EventBridge never delivers
//! gets its entry from the schedule; one created through the EKS API gets it from its event,
//! and the time from ACTIVE to its access (entry and policy) is measured; one in an account the stack does not
//! target gets nothing, and nobody outside the forwarding roles may put events on the bus.

use super::scenario::Steps;
use super::*;
use serde_json::json;
use std::time::Duration;

/// How long a check waits for what should happen within a few seconds, before it fails:
/// generous, so that a loaded machine only makes it slower.
const PATIENCE: Duration = Duration::from_secs(300);

impl Steps<'_> {
    /// A cluster created after the stack, whose event EventBridge lost (it is added behind
    /// the API's back): a scheduled run that began after it appeared gives it its entry. The
    /// wait is for such a run to end, not for a fixed time.
    pub(super) async fn enrolled_by_the_schedule(&mut self, principal: &str, account: &str) {
        let (w, cloud) = (self.w, self.cloud);
        let region = w.regions[0].clone();
        w.eks
            .add_cluster(account, &region, "created-later", "ACTIVE", "API");
        w.added_later.set(w.added_later.get() + 1);
        let appeared = tokio::time::Instant::now();
        let before = cloud.fired();
        let entry = || {
            w.eks
                .entries(account, &region, "created-later")
                .contains_key(principal)
        };
        // A run handed over after the cluster appeared has ended, and nothing it handed on
        // is left: the schedule had its chance.
        let schedule_had_its_chance = || {
            let fired = cloud.fired.lock().unwrap();
            fired[before..]
                .iter()
                .any(|(id, f)| f.has_ended(id) && f.is_idle())
        };
        while !entry() && !schedule_had_its_chance() && appeared.elapsed() < PATIENCE {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let enrolled = entry();
        let runs = cloud.fired() - before;
        let count = self.entries_for(principal);
        let eligible = w.eligible_clusters(self.reached.len());
        self.report.check(
            &format!(
                "{}: a cluster created after the stack gets its entry from the schedule",
                self.tag
            ),
            enrolled && count == eligible,
            match enrolled {
                true => format!(
                    "entry {} ms after the cluster appeared, {runs} scheduled run(s) fired",
                    appeared.elapsed().as_millis()
                ),
                false => format!(
                    "no entry after {runs} scheduled run(s) in {} s",
                    appeared.elapsed().as_secs()
                ),
            },
        );
    }

    /// Clusters created through the EKS API after the stack, with the schedule held off: each
    /// gets its entry from its own CloudTrail event once it is ACTIVE. Prints the time from
    /// ACTIVE to the entry, in simulated time.
    pub(super) async fn enrolled_by_their_events(&mut self, principal: &str) {
        let w = self.w;
        let own = self.cloud.account().to_string();
        // In another account and region (forwarded by the StackSet's rule), and in the stack's
        // own account and region (its own rule).
        let mut places = vec![(own.clone(), w.regions[0].clone())];
        if let Some(member) = self.reached.iter().find(|a| **a != own) {
            places.push((member.clone(), w.regions[1 % w.regions.len()].clone()));
        }
        self.hold_schedules().await;
        let mut made = Vec::new();
        for (n, (account, region)) in places.iter().enumerate() {
            let name = format!("new-by-event-{n}");
            self.create_cluster(account, region, &name).await;
            w.added_later.set(w.added_later.get() + 1);
            made.push((account.clone(), region.clone(), name));
        }
        for (account, region, name) in made {
            let principal = self.principal_in(&account, principal);
            let measured = self
                .wait_for_entry(&account, &region, &name, &principal)
                .await;
            let log = self.cloud.events.log();
            let deliveries: Vec<_> = log.iter().filter(|d| d.cluster == name).collect();
            for delivery in &deliveries {
                println!("         {}", delivery.line());
            }
            let delivered = deliveries
                .iter()
                .any(|d| d.to.contains(":lambda:") && d.outcome.is_ok());
            self.report.check(
                &format!(
                    "{}: a cluster created in {} gets its entry from its event",
                    self.tag,
                    match account == own {
                        true => "this account",
                        false => "a member account, another region,",
                    }
                ),
                measured.is_some_and(|l| l.simulated < LATENCY_GOAL) && delivered,
                match &measured {
                    Some(latency) => latency.describe(),
                    None => format!("no entry within {} s", PATIENCE.as_secs()),
                },
            );
            if let Some(latency) = measured {
                self.report.latencies.push(latency.simulated);
            }
        }
        self.release_schedules();
    }

    /// What must not happen: a cluster in an account the stack leaves out gets no entry (no
    /// rule there forwards its event), and nobody but the organization's forwarding roles
    /// may put events on the stack's bus.
    pub(super) async fn events_stay_inside_the_targets(&mut self, principal: &str) {
        let w = self.w;
        let Some(outside) = self.excluded_account() else {
            return;
        };
        self.hold_schedules().await;
        let region = w.regions[0].clone();
        self.create_cluster(&outside, &region, "outside-targets")
            .await;
        // Longer than any creation and delivery takes here.
        let long_enough = scaled(CLUSTER_CREATING).end + scaled(CLOUDTRAIL_DELAY).end * 2;
        tokio::time::sleep(long_enough).await;
        let principal = self.principal_in(&outside, principal);
        let entry = w
            .eks
            .entries(&outside, &region, "outside-targets")
            .contains_key(&principal);
        let deliveries = self
            .cloud
            .events
            .log()
            .iter()
            .filter(|d| d.cluster == "outside-targets")
            .count();
        self.release_schedules();

        let bus = format!(
            "arn:aws:events:us-east-1:{}:event-bus/apono-eks-events-{}",
            self.cloud.account(),
            self.connector_id()
        );
        let forged = json!({"source": "apono.test", "detail-type": "AWS API Call via CloudTrail",
            "account": "x", "region": "us-east-1",
            "detail": {"eventName": "CreateCluster", "requestParameters": {"name": "forged"}}});
        let member = self
            .reached
            .iter()
            .find(|a| **a != w.org.management_account_id);
        let senders = [
            (
                role(
                    MANAGED_CONNECTOR_ACCOUNT,
                    &format!("apono-eks-events-{CONNECTOR_ID}"),
                ),
                MANAGED_CONNECTOR_ACCOUNT.to_string(),
            ),
            (
                role(member.map_or("", String::as_str), "team-admin"),
                member.cloned().unwrap_or_default(),
            ),
        ];
        for (sender, account) in &senders {
            self.cloud
                .events
                .put_events_as(sender, account, &bus, forged.clone())
                .await;
        }
        let refused = self
            .cloud
            .events
            .log()
            .iter()
            .filter(|d| d.cluster == "forged")
            .filter(|d| {
                d.outcome
                    .as_ref()
                    .is_err_and(|e| e.contains("does not admit"))
            })
            .count();
        self.report.check(
            &format!(
                "{}: no entry outside the targets; only forwarding roles of the organization may put events",
                self.tag
            ),
            !entry && deliveries == 0 && refused == senders.len(),
            format!(
                "excluded account: {} entry, {deliveries} deliveries; {refused} of {} foreign puts refused",
                usize::from(entry),
                senders.len()
            ),
        );
    }

    /// The account the scenario's targeting leaves out, if any.
    fn excluded_account(&self) -> Option<String> {
        self.targets
            .iter()
            .find(|(k, _)| k == "ExcludedAccountIds")
            .map(|(_, v)| v.clone())
    }

    /// Holds the schedule off (an hour is long) and lets a run already under way finish.
    async fn hold_schedules(&self) {
        let cloud = self.cloud;
        cloud
            .schedules_held
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let busy = || {
            cloud
                .fired
                .lock()
                .unwrap()
                .iter()
                .any(|(_, f)| !f.is_idle())
        };
        while busy() && started.elapsed() < PATIENCE {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every function of the stack has nothing queued or running.
    fn functions_idle(&self) -> bool {
        let functions = self.cloud.functions.lock().unwrap();
        functions.values().all(|f| f.is_idle())
    }

    fn release_schedules(&self) {
        self.cloud
            .schedules_held
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// A cluster created through the EKS API by someone in `account` (an administrator).
    async fn create_cluster(&self, account: &str, region: &str, name: &str) {
        let admin = self.w.moto.sdk_config();
        let config = match *account == self.w.org.management_account_id {
            true => admin,
            false => crate::org::assume_member(&self.w.moto, &admin, account).await,
        };
        self.w
            .eks
            .create_cluster_as(&config, region, name, &role(account, "eks-cluster"))
            .await;
    }

    /// Waits until `principal` has access to the cluster (its entry and an access policy), and
    /// until the functions have nothing left to do (a run still finishing would act in the next
    /// step); how long after ACTIVE the access came.
    async fn wait_for_entry(
        &self,
        account: &str,
        region: &str,
        name: &str,
        principal: &str,
    ) -> Option<Latency> {
        let started = tokio::time::Instant::now();
        loop {
            let history = self.w.eks.history(account, region, name);
            if let (Some(active), Some(granted)) =
                (history.active_since, history.granted.get(principal))
            {
                let latency = Latency::of(active, *granted, &history.described);
                while !self.functions_idle() && started.elapsed() < PATIENCE {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return Some(latency);
            }
            if started.elapsed() > PATIENCE {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The time from a cluster becoming ACTIVE to its principal's access (entry and policy).
#[derive(Debug, Clone, Copy)]
pub(super) struct Latency {
    /// As measured here.
    pub(super) real: Duration,
    /// In AWS's time: the wait until the function's first read after ACTIVE (a wait, run
    /// here at 1/TIME_SCALE, so multiplied back), then the work from that read to the entry
    /// (not a wait: it took as long here as it takes, so as measured).
    pub(super) simulated: Duration,
    /// DescribeCluster reads between ACTIVE and the entry.
    pub(super) polls: usize,
}

impl Latency {
    fn of(active: Instant, entry: Instant, described: &[Instant]) -> Latency {
        let read = described
            .iter()
            .copied()
            .filter(|d| *d >= active && *d <= entry)
            .min()
            .unwrap_or(active);
        Latency {
            real: entry.saturating_duration_since(active),
            simulated: read.saturating_duration_since(active) * TIME_SCALE
                + entry.saturating_duration_since(read),
            polls: described
                .iter()
                .filter(|d| **d >= active && **d <= entry)
                .count(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "access (entry and policy) {:.1} s after ACTIVE in simulated time ({} ms here, {} read(s) after ACTIVE; goal under 300 s)",
            self.simulated.as_secs_f64(),
            self.real.as_millis(),
            self.polls
        )
    }
}

/// The goal for the time from ACTIVE to the access.
pub(super) const LATENCY_GOAL: Duration = Duration::from_secs(300);
