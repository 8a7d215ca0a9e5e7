//! Named steps of the multi-step operations, and a hook that makes an operation stop dead
//! at one of them as if the process had been killed: nothing after the step runs, no undo.
//! Production code never arms it; the crash-injection tests arm each step in turn.

use std::sync::{Arc, Mutex};

/// The steps of create, after each of which a crash can happen.
pub const CREATE_STEPS: &[&str] =
    &["create:after_insert_organization", "create:after_insert_metadata", "create:after_create_collection"];
/// The steps of an update (rename and admin changes).
pub const UPDATE_STEPS: &[&str] =
    &["update:after_reserve", "update:after_rename_collection", "update:after_update_admin"];
/// The steps of delete.
pub const DELETE_STEPS: &[&str] = &["delete:after_mark", "delete:after_drop_collection", "delete:after_delete_admins"];

/// The armed crash point, if any.
#[derive(Debug, Clone, Default)]
pub struct FailPoints(Arc<Mutex<Option<&'static str>>>);

/// An operation stopped by an armed failpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected crash at {0}")]
pub struct Crash(pub &'static str);

impl FailPoints {
    /// Makes the next operation that reaches `step` stop there (once).
    pub fn arm(&self, step: &'static str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(step);
    }

    /// Disarms.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn check(&self, step: &'static str) -> Result<(), Crash> {
        let mut armed = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if *armed == Some(step) {
            *armed = None;
            return Err(Crash(step));
        }
        Ok(())
    }
}
