//! Named steps of the multi-step operations, and hooks for tests: a crash point makes an
//! operation stop dead at a step as if the process had been killed (nothing after the step
//! runs, no undo), and a pause point holds it there until the test lets it go, so that a
//! test can run another operation at exactly that moment. Production code never arms
//! either; the crash-injection tests arm each step in turn.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The steps of create, after each of which a crash can happen.
pub const CREATE_STEPS: &[&str] =
    &["create:after_insert_organization", "create:after_insert_metadata", "create:after_create_collection"];
/// The steps of an update (rename and admin changes).
pub const UPDATE_STEPS: &[&str] = &[
    "update:after_reserve",
    "update:before_collection_schema",
    "update:after_rename_collection",
    "update:after_update_admin",
];
/// The steps of delete.
pub const DELETE_STEPS: &[&str] = &["delete:after_mark", "delete:after_drop_collection", "delete:after_delete_admins"];
/// The step after each batch of a `shared` organization's documents is deleted: a delete
/// (or the rollback of a create) stopped there resumes with the next batch.
pub const SHARED_DELETE_STEP: &str = "delete:after_shared_batch";
/// The step of a reconciliation pass after it listed the organizations and before it drops
/// the orphans it found: the moment another instance's create can race it.
pub const RECONCILE_AFTER_LISTING: &str = "reconcile:after_listing_organizations";

#[derive(Debug, Default)]
struct Armed {
    crash: Option<&'static str>,
    /// A crash at the nth pass through a step, counting down.
    crash_at_pass: Option<(&'static str, usize)>,
    pause: Option<(&'static str, Arc<Pause>)>,
}

/// The armed crash and pause points, if any.
#[derive(Debug, Clone, Default)]
pub struct FailPoints(Arc<Mutex<Armed>>);

/// An operation stopped by an armed failpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected crash at {0}")]
pub struct Crash(pub &'static str);

/// An operation held at a step: the test waits until it is reached, does what it wants to
/// race, and then resumes it.
#[derive(Debug, Default)]
pub struct Pause {
    reached: Notify,
    resume: Notify,
}

impl Pause {
    /// Waits until the operation reaches the step.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the operation go on.
    pub fn resume(&self) {
        self.resume.notify_one();
    }
}

impl FailPoints {
    fn armed(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the next operation that reaches `step` stop there (once).
    pub fn arm(&self, step: &'static str) {
        self.armed().crash = Some(step);
    }

    /// Makes the next operation that reaches `step` wait there (once) until resumed.
    pub fn pause_at(&self, step: &'static str) -> Arc<Pause> {
        let pause = Arc::new(Pause::default());
        self.armed().pause = Some((step, pause.clone()));
        pause
    }

    /// Disarms.
    pub fn clear(&self) {
        *self.armed() = Armed::default();
    }

    /// Makes the `n`th operation (from 1) that reaches `step` stop there.
    pub fn arm_at_pass(&self, step: &'static str, n: usize) {
        self.armed().crash_at_pass = Some((step, n));
    }

    /// Passes a named step: waits there while paused, and stops with an error where a
    /// crash is armed.
    pub(crate) async fn step(&self, step: &'static str) -> Result<(), domain::StoreError> {
        self.pass(step).await;
        self.check(step).map_err(crate::errors::unknown)
    }

    pub(crate) fn check(&self, step: &'static str) -> Result<(), Crash> {
        let mut armed = self.armed();
        if let Some((at, remaining)) = armed.crash_at_pass
            && at == step
        {
            if remaining <= 1 {
                armed.crash_at_pass = None;
                return Err(Crash(step));
            }
            armed.crash_at_pass = Some((at, remaining - 1));
        }
        if armed.crash == Some(step) {
            armed.crash = None;
            return Err(Crash(step));
        }
        Ok(())
    }

    pub(crate) async fn pass(&self, step: &'static str) {
        let pause = {
            let mut armed = self.armed();
            match armed.pause.take() {
                Some((at, pause)) if at == step => Some(pause),
                other => {
                    armed.pause = other;
                    None
                }
            }
        };
        if let Some(pause) = pause {
            // notify_one stores a permit, so neither side can miss the other's signal.
            pause.reached.notify_one();
            pause.resume.notified().await;
        }
    }
}
