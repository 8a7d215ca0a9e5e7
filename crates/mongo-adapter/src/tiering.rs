//! Automatic tiering: a periodic pass that counts each organization's documents and starts
//! a move for one that crossed a threshold of the [`TieringPolicy`] (the domain's rule,
//! with its margin against moving back and forth). One instance runs a pass at a time,
//! under a lease in the master database (`leases`); the moves are ordinary jobs.

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use domain::{Placement, TieringPolicy};
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};

use crate::MongoStore;
use crate::documents::{OrgDoc, to_bson_time};
use crate::errors::is_duplicate_key;

/// The lease document of the tiering pass.
const LEASE: &str = "tiering";

/// What a tiering pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TieringReport {
    /// Whether this pass ran: false when another instance holds the pass's lease.
    pub ran: bool,
    /// Organizations counted.
    pub checked: u64,
    /// Moves started, as `name: from -> to (documents)`.
    pub started: Vec<String>,
    /// Organizations that should move but could not start (busy, say), with why.
    pub skipped: Vec<String>,
}

impl fmt::Display for TieringReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.ran {
            return writeln!(f, "tiering: another instance is running a pass");
        }
        writeln!(f, "tiering: {} organization(s) checked, {} move(s) started", self.checked, self.started.len())?;
        for started in &self.started {
            writeln!(f, "  moving {started}")?;
        }
        for skipped in &self.skipped {
            writeln!(f, "  not moved: {skipped}")?;
        }
        Ok(())
    }
}

impl MongoStore {
    /// One tiering pass, if no other instance holds its lease. The lease is kept for `lease`
    /// (the pass's interval), so that however many instances there are, one pass runs per
    /// interval. The pass starts a move
    /// (on the organization's cluster) for each active organization, not already moving,
    /// whose document count calls for another placement under `policy`, at most
    /// `max_moves` of them.
    pub async fn tiering_pass(
        &self,
        policy: &TieringPolicy,
        owner: &str,
        lease: Duration,
        max_moves: usize,
    ) -> anyhow::Result<TieringReport> {
        let mut report = TieringReport::default();
        if !self.take_lease(LEASE, owner, lease).await? {
            return Ok(report);
        }
        report.ran = true;
        let mut organizations = self
            .organizations
            .find(doc! {"state": "active", "op": {"$exists": false}, "moving": {"$exists": false}})
            .await
            .context("listing organizations")?;
        while let Some(org) = organizations.try_next().await.context("reading an organization")? {
            if report.started.len() >= max_moves {
                break;
            }
            report.checked += 1;
            if let Err(e) = self.tier(&org, policy, &mut report).await {
                report.skipped.push(format!("{}: {e:#}", org.name));
            }
        }
        if !report.started.is_empty() {
            tracing::info!(%report, "tiering pass started moves");
        }
        Ok(report)
    }

    async fn tier(&self, org: &OrgDoc, policy: &TieringPolicy, report: &mut TieringReport) -> anyhow::Result<()> {
        let placement = org.placement()?;
        let documents = self.documents_of(org).await?;
        let Some(kind) = policy.move_for(placement.kind, documents) else { return Ok(()) };
        let key = domain::OrgKey::from_stored(org.key.clone());
        let to = Placement { kind, cluster: placement.cluster.clone() };
        let id = self.start_move(&key, to.clone()).await?;
        report.started.push(format!("{}: {placement} -> {to} ({documents} documents, job {id})", org.name));
        Ok(())
    }

    fn leases(&self) -> mongodb::Collection<Document> {
        self.master.collection("leases")
    }

    /// Takes (or renews) the lease `name` for `owner` until `length` from now, unless
    /// another owner holds it unexpired; whether it did.
    async fn take_lease(&self, name: &str, owner: &str, length: Duration) -> anyhow::Result<bool> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX);
        let taken = self
            .leases()
            .update_one(
                doc! {"_id": name, "$or": [{"owner": owner}, {"expires_at": {"$lte": to_bson_time(now)}}]},
                doc! {"$set": {"owner": owner, "expires_at": to_bson_time(until)}},
            )
            .upsert(true)
            .await;
        match taken {
            Ok(_) => Ok(true),
            // The filter did not match an existing lease, so the upsert collided with it.
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e).context("taking a lease"),
        }
    }
}
