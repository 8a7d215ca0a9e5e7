//! Background jobs and the rules of the one kind there is today, the online move of an
//! organization's data to another placement. A job is recorded in the master database,
//! run by whichever process holds its lease, and resumed from its checkpoint by another
//! one when that process dies; the rules here decide what a job may do next, whoever runs
//! it and whatever the store.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::placement::{Placement, PlacementKind};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Moves an organization's data to another placement while its applications use it.
    Move,
    /// Applies pending tenant migrations to every organization that lacks them.
    TenantMigration,
    /// Reverts one tenant migration (its `down` part) on every organization that has it.
    TenantRollback,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 3] = [Self::Move, Self::TenantMigration, Self::TenantRollback];

    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Move => "move",
            Self::TenantMigration => "tenant_migration",
            Self::TenantRollback => "tenant_rollback",
        }
    }

    /// Whether at most one job of this kind (and of the other kinds it excludes) may run at
    /// a time: tenant migrations and their rollbacks hold one lock between them.
    pub fn is_exclusive(self) -> bool {
        matches!(self, Self::TenantMigration | Self::TenantRollback)
    }

    /// What its progress counts.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Move => "documents",
            Self::TenantMigration | Self::TenantRollback => "organizations",
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Recorded, waiting for a runner.
    Pending,
    /// A runner holds its lease (or held it, and another will take it over once it expires).
    Running,
    /// Done as asked.
    Completed,
    /// Undone: everything is as before it started (after a failure, or cancelled).
    RolledBack,
    /// Stopped on an error it could not undo automatically; an operator must look.
    Failed,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 5] = [Self::Pending, Self::Running, Self::Completed, Self::RolledBack, Self::Failed];

    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
        }
    }

    /// Whether the job has ended: nothing runs it any more.
    ///
    /// ```
    /// use domain::JobState;
    /// assert!(!JobState::Running.is_finished() && JobState::RolledBack.is_finished());
    /// ```
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::RolledBack | Self::Failed)
    }
}

/// A stored job state or kind that this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state or kind")]
pub struct JobFieldError;

impl FromStr for JobState {
    type Err = JobFieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|state| state.as_str() == s).ok_or(JobFieldError)
    }
}

impl FromStr for JobKind {
    type Err = JobFieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s).ok_or(JobFieldError)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The steps of a move, in order. Everything before [`MovePhase::Switched`] leaves the source
/// as the organization's one true location, so a failure there rolls back; from the switch
/// on the target is, so the job can only go forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MovePhase {
    /// Copying the source's documents to the target in `_id` order, in bounded batches.
    Copying,
    /// Applying the writes made during the copy, from the change stream opened before it.
    CatchingUp,
    /// The source refuses writes; the last changes are drained and both sides verified.
    Fenced,
    /// The organization's location is the target. The fenced source is kept (its deletes
    /// still reach the target) until the grace period ends, then removed.
    Switched,
    /// The grace period is over and the source is being removed. Its deletes from here on
    /// are the removal's own, so they are no longer passed on to the target.
    RemovingSource,
    /// The source is gone.
    Done,
    /// Undoing everything: the target removed, the source unfenced.
    RollingBack,
}

impl MovePhase {
    /// Every phase.
    pub const ALL: [MovePhase; 7] = [
        Self::Copying,
        Self::CatchingUp,
        Self::Fenced,
        Self::Switched,
        Self::RemovingSource,
        Self::Done,
        Self::RollingBack,
    ];

    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Copying => "copying",
            Self::CatchingUp => "catching_up",
            Self::Fenced => "fenced",
            Self::Switched => "switched",
            Self::RemovingSource => "removing_source",
            Self::Done => "done",
            Self::RollingBack => "rolling_back",
        }
    }

    /// What a runner does with a move found in this phase after a failure, a crash or a
    /// cancellation: roll it back while the source is still the organization's location,
    /// finish it once the target is.
    ///
    /// ```
    /// use domain::{MovePhase, Recovery};
    /// assert_eq!(MovePhase::Fenced.recovery(), Recovery::RollBack);
    /// assert_eq!(MovePhase::Switched.recovery(), Recovery::Finish);
    /// ```
    pub fn recovery(self) -> Recovery {
        match self {
            Self::Copying | Self::CatchingUp | Self::Fenced | Self::RollingBack => Recovery::RollBack,
            Self::Switched | Self::RemovingSource | Self::Done => Recovery::Finish,
        }
    }

    /// Whether the organization's location is already the target: the switch is behind.
    ///
    /// ```
    /// use domain::MovePhase;
    /// assert!(MovePhase::RemovingSource.has_switched());
    /// assert!(!MovePhase::RollingBack.has_switched());
    /// ```
    pub fn has_switched(self) -> bool {
        matches!(self, Self::Switched | Self::RemovingSource | Self::Done)
    }

    /// Whether the source refuses writes in this phase (in a move that fences only for the
    /// cut-over). A move without a change stream fences from its first copy on.
    pub fn source_fenced(self, mode: MoveMode) -> bool {
        match self {
            Self::Fenced | Self::Switched | Self::RemovingSource => true,
            Self::Copying | Self::CatchingUp => mode == MoveMode::FencedCopy,
            Self::Done | Self::RollingBack => false,
        }
    }
}

impl FromStr for MovePhase {
    type Err = JobFieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|phase| phase.as_str() == s).ok_or(JobFieldError)
    }
}

impl fmt::Display for MovePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way an interrupted move goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Undo it: the source stays the organization's location.
    RollBack,
    /// Finish it: the target already is.
    Finish,
}

/// How a move keeps up with the writes made while it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveMode {
    /// A change stream opened before the copy; the source refuses writes only for the
    /// cut-over.
    ChangeStream,
    /// The deployment has no change streams (a standalone server): the source refuses
    /// writes for the whole copy.
    FencedCopy,
}

impl MoveMode {
    /// The stored and displayed form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChangeStream => "change_stream",
            Self::FencedCopy => "fenced_copy",
        }
    }
}

impl FromStr for MoveMode {
    type Err = JobFieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::ChangeStream, Self::FencedCopy].into_iter().find(|m| m.as_str() == s).ok_or(JobFieldError)
    }
}

crate::operation_error!(
    /// Why a move could not start.
    MoveError {
        /// No active organization has this name.
        NotFound => "organization not found",
        /// The organization is already where it would move to.
        SamePlacement => "the organization is already placed there",
        /// Another move of it, or another change that moves its data (a rename, a delete),
        /// is in progress.
        Busy => "another move or change of this organization is in progress",
        /// The target cluster is not one of the configured clusters.
        UnknownCluster {
            /// The name asked for.
            cluster: String,
        } => "no cluster named {cluster} is configured",
    }
);

/// A move asked for: from where the organization is to where it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovePlan {
    from: Placement,
    to: Placement,
}

impl MovePlan {
    /// A move from `from` to `to`; refused when they are the same placement, since there
    /// would be nothing to do.
    ///
    /// ```
    /// use domain::{ClusterName, MovePlan, Placement, PlacementKind};
    /// let here = Placement::default();
    /// assert!(MovePlan::new(here.clone(), here.clone()).is_err());
    /// let there = Placement { kind: PlacementKind::Collection, cluster: ClusterName::parse("eu").unwrap() };
    /// assert!(MovePlan::new(here, there).is_ok());
    /// ```
    pub fn new(from: Placement, to: Placement) -> Result<Self, MoveError> {
        if from == to {
            return Err(MoveError::SamePlacement);
        }
        Ok(Self { from, to })
    }

    /// Where the data is now.
    pub fn from(&self) -> &Placement {
        &self.from
    }

    /// Where it goes.
    pub fn to(&self) -> &Placement {
        &self.to
    }
}

/// How far a job is: items done of the total, and the bytes they held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobProgress {
    /// Items done (documents copied, for a move).
    pub done: u64,
    /// Items in all, as counted when the job began (writes during it change the truth).
    pub total: u64,
    /// Bytes of the items done.
    pub bytes: u64,
}

impl JobProgress {
    /// Done as a fraction of the total, at most 1 (an empty job is complete).
    ///
    /// ```
    /// use domain::JobProgress;
    /// assert_eq!(JobProgress { done: 5, total: 10, bytes: 0 }.fraction(), 0.5);
    /// assert_eq!(JobProgress { done: 12, total: 10, bytes: 0 }.fraction(), 1.0);
    /// assert_eq!(JobProgress::default().fraction(), 1.0);
    /// ```
    pub fn fraction(&self) -> f64 {
        if self.total == 0 { 1.0 } else { (self.done as f64 / self.total as f64).min(1.0) }
    }
}

/// The lease that makes one runner the owner of a job: the owner renews it well before it
/// expires, and every write of the job's record is conditional on still holding its token,
/// so a runner that stalled past the expiry and lost the job to another stops at its next
/// step instead of racing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLease {
    length: Duration,
}

impl JobLease {
    /// The shortest lease: below it, a pause of the process (a garbage-collected neighbour,
    /// a slow disk) would hand jobs over for no reason.
    pub const MIN: Duration = Duration::from_secs(2);

    /// A lease of `length`, at least [`JobLease::MIN`].
    pub fn new(length: Duration) -> Self {
        Self { length: length.max(Self::MIN) }
    }

    /// How long a lease lasts.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// When a lease taken or renewed at `now` expires.
    pub fn expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.length).unwrap_or(chrono::Duration::MAX)
    }

    /// How often the owner renews it: a third of its length, so that two renewals can fail
    /// before it is lost.
    ///
    /// ```
    /// use std::time::Duration;
    /// use domain::JobLease;
    /// assert_eq!(JobLease::new(Duration::from_secs(30)).renew_every(), Duration::from_secs(10));
    /// assert_eq!(JobLease::new(Duration::ZERO).length(), JobLease::MIN);
    /// ```
    pub fn renew_every(&self) -> Duration {
        self.length / 3
    }
}

impl Default for JobLease {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

/// Document-count thresholds of automatic tiering: an organization with fewer than
/// `shared_below` documents belongs in the shared collection, one with more than
/// `database_above` in a database of its own, the others in a collection of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieringPolicy {
    shared_below: u64,
    database_above: u64,
}

/// The tiering thresholds contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared threshold ({shared_below}) must be below the database threshold ({database_above})")]
pub struct TieringPolicyError {
    shared_below: u64,
    database_above: u64,
}

impl TieringPolicy {
    /// A policy; the shared threshold must be below the database one.
    pub fn new(shared_below: u64, database_above: u64) -> Result<Self, TieringPolicyError> {
        if shared_below > database_above {
            return Err(TieringPolicyError { shared_below, database_above });
        }
        Ok(Self { shared_below, database_above })
    }

    /// Below this many documents, an organization belongs in `shared`.
    pub fn shared_below(&self) -> u64 {
        self.shared_below
    }

    /// Above this many documents, an organization belongs in a database of its own.
    pub fn database_above(&self) -> u64 {
        self.database_above
    }

    /// The placement kind an organization holding `documents` documents belongs in.
    ///
    /// ```
    /// use domain::{PlacementKind, TieringPolicy};
    /// let policy = TieringPolicy::default();
    /// assert_eq!(policy.kind_for(99), PlacementKind::Shared);
    /// assert_eq!(policy.kind_for(100), PlacementKind::Collection);
    /// assert_eq!(policy.kind_for(10_000), PlacementKind::Collection);
    /// assert_eq!(policy.kind_for(10_001), PlacementKind::Database);
    /// ```
    pub fn kind_for(&self, documents: u64) -> PlacementKind {
        if documents < self.shared_below {
            PlacementKind::Shared
        } else if documents > self.database_above {
            PlacementKind::Database
        } else {
            PlacementKind::Collection
        }
    }
}

impl TieringPolicy {
    /// How far below a threshold an organization must fall before it moves down a tier:
    /// without this margin, a tenant hovering at a threshold would move back and forth.
    pub const DOWN_MARGIN_PERCENT: u64 = 80;

    /// The placement kind an organization placed `current` and holding `documents`
    /// documents should move to, if any. It moves up a tier as soon as it crosses a
    /// threshold, and down only once it is below [`Self::DOWN_MARGIN_PERCENT`] of it.
    ///
    /// ```
    /// use domain::{PlacementKind, TieringPolicy};
    /// let policy = TieringPolicy::default();
    /// assert_eq!(policy.move_for(PlacementKind::Shared, 150), Some(PlacementKind::Collection));
    /// assert_eq!(policy.move_for(PlacementKind::Collection, 90), None);
    /// assert_eq!(policy.move_for(PlacementKind::Collection, 79), Some(PlacementKind::Shared));
    /// assert_eq!(policy.move_for(PlacementKind::Database, 9_000), None);
    /// assert_eq!(policy.move_for(PlacementKind::Database, 7_000), Some(PlacementKind::Collection));
    /// ```
    pub fn move_for(&self, current: PlacementKind, documents: u64) -> Option<PlacementKind> {
        let target = self.kind_for(documents);
        let rank = |kind: PlacementKind| match kind {
            PlacementKind::Shared => 0,
            PlacementKind::Collection => 1,
            PlacementKind::Database => 2,
        };
        if target == current {
            return None;
        }
        if rank(target) > rank(current) {
            return Some(target);
        }
        // Down: judged by the documents with the margin added back.
        let padded = documents.saturating_mul(100) / Self::DOWN_MARGIN_PERCENT;
        let down = self.kind_for(padded);
        (rank(down) < rank(current)).then_some(down)
    }
}

impl Default for TieringPolicy {
    /// The thresholds the design notes suggest: shared under 100 documents, a database above
    /// 10,000.
    fn default() -> Self {
        Self { shared_below: 100, database_above: 10_000 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_forms_read_back() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        for phase in MovePhase::ALL {
            assert_eq!(phase.as_str().parse(), Ok(phase));
        }
        for mode in [MoveMode::ChangeStream, MoveMode::FencedCopy] {
            assert_eq!(mode.as_str().parse(), Ok(mode));
        }
        assert_eq!("move".parse(), Ok(JobKind::Move));
        for kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse(), Ok(kind));
        }
        assert_eq!("nope".parse::<JobState>(), Err(JobFieldError));
    }

    #[test]
    fn a_move_rolls_back_until_the_switch_and_goes_forward_after_it() {
        let order = [
            MovePhase::Copying,
            MovePhase::CatchingUp,
            MovePhase::Fenced,
            MovePhase::Switched,
            MovePhase::RemovingSource,
            MovePhase::Done,
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        for phase in MovePhase::ALL {
            let forward = phase >= MovePhase::Switched && phase != MovePhase::RollingBack;
            assert_eq!(phase.recovery() == Recovery::Finish, forward, "{phase}");
        }
    }

    #[test]
    fn the_source_is_fenced_for_the_cut_over_or_for_the_whole_copy() {
        for phase in MovePhase::ALL {
            let cut_over = matches!(phase, MovePhase::Fenced | MovePhase::Switched | MovePhase::RemovingSource);
            assert_eq!(phase.source_fenced(MoveMode::ChangeStream), cut_over, "{phase}");
        }
        assert!(MovePhase::Copying.source_fenced(MoveMode::FencedCopy));
        assert!(!MovePhase::RollingBack.source_fenced(MoveMode::FencedCopy));
    }

    #[test]
    fn tiering_thresholds_must_be_ordered() {
        assert!(TieringPolicy::new(100, 10).is_err());
        assert_eq!(TieringPolicy::new(0, 0).map(|p| p.kind_for(0)), Ok(PlacementKind::Collection));
    }
}
