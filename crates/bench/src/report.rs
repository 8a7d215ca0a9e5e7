//! The results table and the verdicts on the targets.

use std::time::Instant;

use crate::load::Stats;

/// One line of the results table.
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) storage: String,
    pub(crate) concurrency: usize,
    pub(crate) stats: Stats,
}

/// A target of issue 6 and whether it was met.
pub(crate) struct Verdict {
    pub(crate) target: String,
    pub(crate) measured: String,
    pub(crate) met: bool,
}

pub(crate) struct Report {
    pub(crate) started: Instant,
    pub(crate) rows: Vec<Row>,
    pub(crate) verdicts: Vec<Verdict>,
    pub(crate) notes: Vec<String>,
}

impl Report {
    pub(crate) fn new() -> Self {
        Self { started: Instant::now(), rows: Vec::new(), verdicts: Vec::new(), notes: Vec::new() }
    }

    /// Records a row, and shows progress on stderr: a full run takes minutes.
    pub(crate) fn row(
        &mut self,
        scenario: impl Into<String>,
        storage: impl Into<String>,
        concurrency: usize,
        stats: &Stats,
    ) {
        let (scenario, storage) = (scenario.into(), storage.into());
        eprintln!(
            "[{:>4.0} s] {scenario} ({storage}): {:.0} req/s, p50 {:.2} ms",
            self.started.elapsed().as_secs_f64(),
            stats.rps(),
            stats.percentile_ms(50.0)
        );
        self.rows.push(Row { scenario, storage, concurrency, stats: stats.clone() });
    }

    pub(crate) fn verdict(&mut self, target: impl Into<String>, measured: impl Into<String>, met: bool) {
        let verdict = Verdict { target: target.into(), measured: measured.into(), met };
        eprintln!("[{:>4.0} s] {}: {}", self.started.elapsed().as_secs_f64(), verdict.target, verdict.measured);
        self.verdicts.push(verdict);
    }

    pub(crate) fn print(&self) {
        println!();
        println!(
            "{:<44} {:<20} {:>5} {:>10} {:>9} {:>9} {:>9} {:>7}",
            "scenario", "storage", "conc", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
        );
        println!("{}", "-".repeat(120));
        for r in &self.rows {
            println!(
                "{:<44} {:<20} {:>5} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
                r.scenario,
                r.storage,
                r.concurrency,
                r.stats.rps(),
                r.stats.percentile_ms(50.0),
                r.stats.percentile_ms(99.0),
                r.stats.percentile_ms(99.9),
                r.stats.errors
            );
        }
        println!();
        println!("{:<6} {:<70} measured", "target", "");
        for v in &self.verdicts {
            println!("{:<6} {:<70} {}", if v.met { "MET" } else { "NOT MET" }, v.target, v.measured);
        }
        for note in &self.notes {
            println!("note: {note}");
        }
    }
}
