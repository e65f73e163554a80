//! Leader election through the [`CoordinatorStore`]: one lease-based lock (the Java KCL 3.x
//! `CoordinatorState` item `Leader`), taken and renewed with conditional writes.
//!
//! Like lease expiry, the lock's expiry is observed, never computed from another host's clock: a
//! candidate takes the lock once its `recordVersionNumber` stood still for the lock's
//! `leaseDuration` between the candidate's own reads. The holder writes a fresh version every
//! round and stops calling itself leader once it could not do so for the lease duration, before
//! any candidate can have seen the version standing still that long. A holder that stops resigns
//! by writing a zero lease duration, so a successor takes over at its next round.
//!
//! The holder renews without reading first (its write is conditional on its own last version, so
//! a lost lock shows as a failed condition), and every write carries its latest [`Assignments`]
//! announcement. Followers read the announcement with the lock and query for new leases only when
//! it names them: the lock read they do anyway replaces a per-round index query.

use std::time::Duration;

use tokio::time::Instant;

use super::coordination::{Assignments, CoordinatorStore, LockRecord};
use super::store::LeaseStoreError;

/// The lock's name (the Java KCL's `CoordinatorState` key).
pub const LEADER_LOCK: &str = "Leader";

/// One worker's view of the election.
#[derive(Debug)]
pub(crate) struct LeaderElection {
    worker_id: String,
    lock_duration: Duration,
    /// The version this worker last wrote as holder, and when that write was sent.
    held: Option<(String, Instant)>,
    /// Another holder's version, and when this worker first saw it.
    observed: Option<(String, Instant)>,
    /// The last read found the other holder's version unchanged since the read before: the
    /// holder may be gone, so watch closely.
    suspect: bool,
    /// What this worker announces with its writes as holder.
    assignments: Assignments,
    /// The announcement on the lock at this worker's last read (`None`: no lock, or a holder that
    /// announces nothing).
    announced: Option<Assignments>,
}

impl LeaderElection {
    pub(crate) fn new(worker_id: impl Into<String>, lock_duration: Duration) -> Self {
        Self {
            worker_id: worker_id.into(),
            lock_duration,
            held: None,
            observed: None,
            suspect: false,
            assignments: Assignments::default(),
            announced: None,
        }
    }

    /// The announcement on the lock when this worker last read it as a follower.
    pub(crate) fn announced(&self) -> Option<&Assignments> {
        self.announced.as_ref()
    }

    /// As holder: announce with the next write that leases were just named for `workers`.
    pub(crate) fn announce(&mut self, workers: Vec<String>) {
        if !workers.is_empty() {
            self.assignments = Assignments {
                epoch: self.assignments.epoch + 1,
                workers,
            };
        }
    }

    /// Whether the current holder looked silent at the last read (worth reading every round).
    pub(crate) fn suspects_leader(&self) -> bool {
        self.suspect
    }

    /// Whether this worker holds the lock now.
    pub(crate) fn is_leader(&self, now: Instant) -> bool {
        self.held
            .as_ref()
            .is_some_and(|(_, sent)| now.saturating_duration_since(*sent) < self.lock_duration)
    }

    /// Reads the lock and renews or takes it; returns whether this worker is the leader.
    pub(crate) async fn round(&mut self, store: &dyn CoordinatorStore, now: Instant) -> bool {
        if let Err(err) = self.try_round(store, now).await {
            tracing::warn!(worker_id = %self.worker_id, %err, "leader election round failed; will retry");
        }
        self.is_leader(now)
    }

    async fn try_round(
        &mut self,
        store: &dyn CoordinatorStore,
        now: Instant,
    ) -> Result<(), LeaseStoreError> {
        if let Some((version, _)) = &self.held
            && self.is_leader(now)
        {
            let version = version.clone();
            return self.write(store, now, Some(&version)).await;
        }
        let current = store.read_lock(LEADER_LOCK).await?;
        // Stand-still is timed from when the read came back, never earlier than the holder's
        // write it saw.
        let now = now.max(Instant::now());
        self.announced = current.as_ref().and_then(|l| l.assignments.clone());
        let expected = match &current {
            None => None,
            Some(lock) => {
                let mine = self.held.as_ref().is_some_and(|(v, _)| *v == lock.version);
                if !mine {
                    self.held = None;
                    let since = match &self.observed {
                        Some((version, since)) if *version == lock.version => *since,
                        _ => now,
                    };
                    self.suspect = since != now;
                    self.observed = Some((lock.version.clone(), since));
                    if now.saturating_duration_since(since) < lock.lease_duration {
                        return Ok(());
                    }
                    tracing::info!(
                        worker_id = %self.worker_id,
                        previous = %lock.owner,
                        "leader lock expired or resigned; taking it"
                    );
                }
                Some(lock.version.as_str())
            }
        };
        // A new holder starts one past its predecessor's epoch with nobody named: a follower that
        // saw the predecessor's last announcement has nothing new, and one that missed it sees a
        // jump and looks.
        let epoch = self.announced.as_ref().map_or(0, |a| a.epoch);
        self.assignments = Assignments {
            epoch: self.assignments.epoch.max(epoch) + 1,
            workers: Vec::new(),
        };
        self.write(store, now, expected).await
    }

    /// Writes the lock as holder over `expected` (the current version, or none).
    async fn write(
        &mut self,
        store: &dyn CoordinatorStore,
        now: Instant,
        expected: Option<&str>,
    ) -> Result<(), LeaseStoreError> {
        let record = LockRecord {
            owner: self.worker_id.clone(),
            version: uuid::Uuid::new_v4().to_string(),
            lease_duration: self.lock_duration,
            assignments: Some(self.assignments.clone()),
        };
        match store.write_lock(LEADER_LOCK, &record, expected).await {
            Ok(()) => {
                if self.held.is_none() {
                    tracing::info!(worker_id = %self.worker_id, "became leader");
                }
                self.held = Some((record.version, now));
                self.observed = None;
                self.suspect = false;
                Ok(())
            }
            Err(LeaseStoreError::ConditionFailed) => {
                self.held = None;
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Gives the lock up (if held) so another worker takes it at its next round.
    pub(crate) async fn resign(&mut self, store: &dyn CoordinatorStore) {
        let Some((version, _)) = self.held.take() else {
            return;
        };
        let record = LockRecord {
            owner: self.worker_id.clone(),
            version: uuid::Uuid::new_v4().to_string(),
            lease_duration: Duration::ZERO,
            assignments: Some(self.assignments.clone()),
        };
        match store.write_lock(LEADER_LOCK, &record, Some(&version)).await {
            Ok(()) => tracing::info!(worker_id = %self.worker_id, "resigned as leader"),
            Err(err) => tracing::debug!(worker_id = %self.worker_id, %err, "could not resign"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::InMemoryCoordinatorStore;

    const LOCK: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn one_leader_at_a_time_and_a_silent_leader_is_replaced_after_the_lock_duration() {
        let store = InMemoryCoordinatorStore::new();
        let mut a = LeaderElection::new("a", LOCK);
        let mut b = LeaderElection::new("b", LOCK);
        assert!(a.round(&store, Instant::now()).await);
        assert!(!b.round(&store, Instant::now()).await);
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(3)).await;
            assert!(a.round(&store, Instant::now()).await);
            assert!(!b.round(&store, Instant::now()).await, "a renews: b waits");
        }
        // `a` goes silent: `b` waits out the lock duration from when it last saw a change.
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!b.round(&store, Instant::now()).await);
        assert!(!a.is_leader(Instant::now() + Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.round(&store, Instant::now()).await);
        // `a` comes back and finds the lock taken.
        assert!(!a.round(&store, Instant::now()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_resigned_lock_is_taken_at_the_next_round() {
        let store = InMemoryCoordinatorStore::new();
        let mut a = LeaderElection::new("a", LOCK);
        let mut b = LeaderElection::new("b", LOCK);
        assert!(a.round(&store, Instant::now()).await);
        assert!(!b.round(&store, Instant::now()).await);
        a.resign(&store).await;
        assert!(!a.is_leader(Instant::now()));
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(b.round(&store, Instant::now()).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_holder_announces_its_assignments_and_a_successor_continues_the_epoch() {
        let store = InMemoryCoordinatorStore::new();
        let mut a = LeaderElection::new("a", LOCK);
        let mut b = LeaderElection::new("b", LOCK);
        assert!(a.round(&store, Instant::now()).await);
        a.announce(vec!["b".into()]);
        a.announce(Vec::new()); // a round that named nobody keeps the last announcement
        assert!(a.round(&store, Instant::now()).await);
        assert!(!b.round(&store, Instant::now()).await);
        let first = Assignments {
            epoch: 2,
            workers: vec!["b".into()],
        };
        assert_eq!(b.announced(), Some(&first));

        a.resign(&store).await;
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(b.round(&store, Instant::now()).await);
        let taken = store.read_lock(LEADER_LOCK).await.ok().flatten();
        assert_eq!(
            taken.and_then(|l| l.assignments),
            Some(Assignments {
                epoch: 3,
                workers: Vec::new()
            }),
            "a takeover moves the epoch on, so a follower that missed epoch 2 looks"
        );
        b.announce(vec!["a".into()]);
        assert!(b.round(&store, Instant::now()).await);
        assert!(!a.round(&store, Instant::now()).await);
        assert_eq!(
            a.announced().map(|x| (x.epoch, x.workers.clone())),
            Some((4, vec!["a".to_owned()])),
            "the epoch moves forward across leaders"
        );
    }
}
