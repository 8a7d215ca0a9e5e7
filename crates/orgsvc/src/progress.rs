//! Progress of a tenant migration for the operator: a bar with done/total, rate and ETA on
//! a terminal, plain lines (at most one every two seconds, and at the end) otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use mongo_adapter::MigrationProgress;

/// Progress on standard error.
pub enum Progress {
    /// An interactive bar.
    Bar(Option<ProgressBar>),
    /// Plain lines, for logs and pipes.
    Lines {
        /// The migration in progress.
        migration: String,
        /// Collections to do.
        total: u64,
        /// Collections done.
        done: u64,
        /// When the migration started.
        started: Instant,
        /// When the last line was written.
        last: Instant,
    },
}

impl Progress {
    /// A bar if standard error is a terminal, else plain lines.
    pub fn new() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar(None)
        } else {
            let now = Instant::now();
            Self::Lines { migration: String::new(), total: 0, done: 0, started: now, last: now }
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// One plain progress line.
pub fn line(migration: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let rate = if elapsed.as_secs_f64() > 0.0 { done as f64 / elapsed.as_secs_f64() } else { 0.0 };
    let eta = if rate > 0.0 { format!("{:.0}s", (total.saturating_sub(done)) as f64 / rate) } else { "?".to_owned() };
    format!("tenant migration {migration}: {done}/{total} organizations, {rate:.1}/s, ETA {eta}")
}

impl MigrationProgress for Progress {
    fn begin(&mut self, name: &str, count: u64) {
        match self {
            Self::Bar(bar) => {
                let new = ProgressBar::new(count);
                new.set_style(
                    ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} organizations, {per_sec}, ETA {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                new.set_message(format!("tenant migration {name}"));
                *bar = Some(new);
            }
            Self::Lines { migration, total, done, started, last } => {
                (*migration, *total, *done, *started, *last) =
                    (name.to_owned(), count, 0, Instant::now(), Instant::now());
                eprintln!("{}", line(migration, 0, count, Duration::ZERO));
            }
        }
    }

    fn advance(&mut self) {
        match self {
            Self::Bar(bar) => {
                if let Some(bar) = bar {
                    bar.inc(1);
                }
            }
            Self::Lines { migration, total, done, started, last } => {
                *done += 1;
                if last.elapsed() >= Duration::from_secs(2) {
                    *last = Instant::now();
                    eprintln!("{}", line(migration, *done, *total, started.elapsed()));
                }
            }
        }
    }

    fn end(&mut self) {
        match self {
            Self::Bar(bar) => {
                if let Some(bar) = bar.take() {
                    bar.finish();
                }
            }
            Self::Lines { migration, total, done, started, .. } => {
                eprintln!("{} (done)", line(migration, *done, (*total).max(*done), started.elapsed()));
            }
        }
    }
}

/// Follows a job with a bar of its work done (documents copied, organizations migrated;
/// plain lines when standard error is not a terminal) until a move has switched or the job
/// ended (or its runner's lease ran out); returns it as it then is.
pub async fn follow_job(
    store: &mongo_adapter::MongoStore,
    id: domain::JobId,
) -> anyhow::Result<mongo_adapter::JobView> {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {prefix}, {per_sec}, ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last_line = Instant::now() - Duration::from_secs(60);
    loop {
        let job = store.job(id).await?.ok_or_else(|| anyhow::anyhow!("job {id} vanished"))?;
        // A runner whose lease ran out has died: following its job any longer would wait
        // for nothing (another runner takes it up in its own time).
        let orphaned = job.lease_expires_at.is_some_and(|at| at < chrono::Utc::now());
        let ended = job.state.is_finished() || job.phase.is_some_and(domain::MovePhase::has_switched) || orphaned;
        let what = match job.phase {
            Some(phase) => format!("move {phase}"),
            None => format!("{} {}", job.kind.as_str().replace('_', " "), job.state),
        };
        let unit = job.kind.unit();
        match &bar {
            Some(bar) => {
                bar.set_length(job.progress.total.max(job.progress.done));
                bar.set_position(job.progress.done);
                bar.set_prefix(unit);
                bar.set_message(what);
            }
            None if ended || last_line.elapsed() >= Duration::from_secs(2) => {
                last_line = Instant::now();
                eprintln!("{what} {}: {}/{} {unit}", job.id, job.progress.done, job.progress.total);
            }
            None => {}
        }
        if ended {
            if let Some(bar) = bar {
                bar.finish();
            }
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_done_total_rate_and_eta() {
        assert_eq!(
            line("0001_x", 50, 200, Duration::from_secs(10)),
            "tenant migration 0001_x: 50/200 organizations, 5.0/s, ETA 30s"
        );
        assert_eq!(
            line("0001_x", 0, 200, Duration::ZERO),
            "tenant migration 0001_x: 0/200 organizations, 0.0/s, ETA ?"
        );
    }
}
