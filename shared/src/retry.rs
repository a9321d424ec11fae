//! The one retry schedule of the HTTP calls made outside the SDK (the response PUT, the Apono
//! API): exponential backoff with jitter, or the server's `Retry-After`, never past a deadline.
//! (The SDK's own calls use the SDK's retry configuration: `aws.rs`.)

use std::time::Duration;
use tokio::time::Instant;

pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
}

impl Backoff {
    /// Waits start at about `initial` and double up to `max`.
    pub fn new(initial: Duration, max: Duration, deadline: Instant) -> Self {
        Backoff {
            next: initial,
            max,
            deadline,
        }
    }

    /// The wait before the next attempt: `retry_after` when the server asked for one, else
    /// the next backoff with jitter. `None` when the attempt after it would start at or past
    /// the deadline: give up now, with the time left for answering.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let delay = retry_after.unwrap_or_else(|| jitter(self.next));
        self.next = (self.next * 2).min(self.max);
        Instant::now()
            .checked_add(delay)
            .filter(|at| *at < self.deadline)
            .map(|_| delay)
    }
}

/// Somewhere in [backoff/2, backoff]: spreads retries without ever waiting zero.
fn jitter(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_double_with_jitter_and_stop_before_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut backoff =
            Backoff::new(Duration::from_millis(200), Duration::from_secs(1), deadline);
        let waits: Vec<Duration> = (0..5).map(|_| backoff.next_delay(None).unwrap()).collect();
        let bounds = [(100, 200), (200, 400), (400, 800), (500, 1000), (500, 1000)];
        for (wait, (low, high)) in waits.iter().zip(bounds) {
            let ms = wait.as_millis();
            assert!((low..=high).contains(&ms), "{ms} ms not in {low}-{high}");
        }
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3)),
            "the server's Retry-After wins"
        );
        assert_eq!(backoff.next_delay(Some(Duration::from_secs(11))), None);
        assert_eq!(backoff.next_delay(Some(Duration::MAX)), None, "no overflow");
    }
}
