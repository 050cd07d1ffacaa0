//! The one way tests wait for something: [`eventually`] (plain threads) and
//! [`eventually_async`] (inside a tokio runtime) retry a check until it holds, sleeping between
//! tries with a capped backoff, and fail the test after a deadline with a message naming what
//! was waited for. Both share the deadline and backoff of [`Patience`]; neither asserts anything
//! about how long the wait took.

use crate::Backoff;
use std::future::Future;
use std::time::{Duration, Instant};

/// First pause between two tries; it doubles up to [`MAX_PAUSE`]. Short, since most waits in
/// tests end within a few milliseconds.
const FIRST_PAUSE: Duration = Duration::from_millis(2);

/// Longest pause between two tries: keeps a wait's end within this of its event.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// What a check returns: `true`/`false`, or `Some(value)` once it holds.
pub trait Outcome {
    /// What a successful check gives.
    type Value;
    /// `Some` once the check holds.
    fn held(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn held(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn held(self) -> Option<T> {
        self
    }
}

/// The deadline and backoff of one wait.
struct Patience<'a> {
    what: &'a str,
    within: Duration,
    deadline: Instant,
    backoff: Backoff,
}

impl<'a> Patience<'a> {
    fn new(what: &'a str, within: Duration) -> Patience<'a> {
        Patience {
            what,
            within,
            deadline: Instant::now() + within,
            backoff: Backoff::new(FIRST_PAUSE, MAX_PAUSE),
        }
    }

    /// How long to pause before the next try; fails the test once the deadline has passed.
    fn pause(&mut self) -> Duration {
        let now = Instant::now();
        assert!(
            now < self.deadline,
            "timed out after {:?} waiting for: {}",
            self.within,
            self.what
        );
        self.backoff.fail().min(self.deadline - now)
    }
}

/// Retries `check` until it holds, failing the test after `within` with a message naming
/// `what`; returns what the check gave.
pub fn eventually<O: Outcome>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> O,
) -> O::Value {
    let mut patience = Patience::new(what, within);
    loop {
        if let Some(value) = check().held() {
            return value;
        }
        std::thread::sleep(patience.pause());
    }
}

/// [`eventually`] for async checks, sleeping on the tokio timer.
pub async fn eventually_async<O, F, Fut>(what: &str, within: Duration, mut check: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let mut patience = Patience::new(what, within);
    loop {
        if let Some(value) = check().await.held() {
            return value;
        }
        tokio::time::sleep(patience.pause()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn returns_what_the_check_gave_once_it_holds() {
        let tries = Cell::new(0);
        let got = eventually("the third try", Duration::from_secs(5), || {
            tries.set(tries.get() + 1);
            (tries.get() == 3).then_some("third")
        });
        assert_eq!((got, tries.get()), ("third", 3));
    }

    #[test]
    #[should_panic(expected = "waiting for: never")]
    fn fails_after_its_deadline_naming_what_it_waited_for() {
        eventually("never", Duration::from_millis(30), || false);
    }

    #[tokio::test]
    async fn the_async_form_waits_the_same_way() {
        let mut tries = 0;
        eventually_async("the second try", Duration::from_secs(5), || {
            tries += 1;
            let done = tries == 2;
            async move { done }
        })
        .await;
        assert_eq!(tries, 2);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for: never")]
    async fn the_async_form_fails_after_its_deadline() {
        eventually_async("never", Duration::from_millis(30), || async { false }).await;
    }
}
