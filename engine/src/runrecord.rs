//! Run records: one JSON file (and one log) per stage run under `.repro/runs/<run>/`.
//!
//! Every run of a stage, successful or not, leaves a record: start and end time, wall time, peak
//! RSS of the stage's processes, exit status, whether it was a cache hit, and the path of its
//! stdout/stderr log. They cost nothing to keep and answer the questions a researcher asks
//! afterwards ("how long did the SR runs take?", "why did it fail?"); the report reads them.
//! Host names and times appear here, as provenance, and never in fingerprints.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How a stage run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Restored,
    Failed,
    Interrupted,
}

impl Outcome {
    /// The name records and tables use (`succeeded`, `restored`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Restored => "restored",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// One stage run: a file in `.repro/runs/<run>/`, and an element of `repro runs --json`
/// (which a domain's report reads back into this same type).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub stage: String,
    pub run: String,
    pub outcome: Outcome,
    pub started: String,
    pub ended: String,
    pub wall_seconds: f64,
    /// Peak resident set size of the stage's processes, KiB (0 when not measured).
    pub peak_rss_kib: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cache_hit: bool,
    pub fingerprint: String,
    pub host: String,
    pub gpus: Vec<u32>,
    /// The stage's stdout+stderr, workspace-relative.
    pub log: Option<String>,
    pub error: Option<String>,
}

/// A new run id: UTC time plus pid, sortable and unique per process.
pub fn new_run_id() -> String {
    let (date, time) = utc_parts(SystemTime::now());
    format!(
        "{}T{}Z-{}",
        date.replace('-', ""),
        time.replace(':', ""),
        std::process::id()
    )
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    let (date, time) = utc_parts(SystemTime::now());
    format!("{date}T{time}Z")
}

fn utc_parts(t: SystemTime) -> (String, String) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (proleptic Gregorian), valid for any date after 1970.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Where the records of one `repro` invocation go.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub id: String,
    pub dir: PathBuf,
}

impl RunDir {
    pub fn new(runs_dir: &Path) -> RunDir {
        let id = new_run_id();
        RunDir {
            dir: runs_dir.join(&id),
            id,
        }
    }

    /// A file name that is safe for any stage name (`train@sn-64` stays readable).
    pub fn stage_file(&self, stage: &str, ext: &str) -> PathBuf {
        self.dir
            .join(format!("{}.{ext}", crate::fsutil::safe_file_name(stage)))
    }

    pub fn write(&self, record: &RunRecord) -> std::io::Result<()> {
        let path = self.stage_file(&record.stage, "json");
        let text = serde_json::to_vec_pretty(record).expect("run records serialize");
        crate::fsutil::write_atomic(&path, &text)
    }
}

/// Every record under `.repro/runs`, oldest run first.
pub fn load_all(runs_dir: &Path) -> Vec<RunRecord> {
    let mut runs: Vec<PathBuf> = match std::fs::read_dir(runs_dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => return Vec::new(),
    };
    runs.sort();
    let mut records = Vec::new();
    for run in runs {
        let Ok(rd) = std::fs::read_dir(&run) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            if let Ok(text) = std::fs::read(&f) {
                if let Ok(r) = serde_json::from_slice::<RunRecord>(&text) {
                    records.push(r);
                }
            }
        }
    }
    records
}

/// A table of run records (`repro runs`).
pub fn render(records: &[&RunRecord], format: crate::metrics::Format) -> String {
    let cells = |r: &&RunRecord| {
        vec![
            r.stage.clone(),
            r.outcome.as_str().to_string(),
            format!("{:.2}", r.wall_seconds),
            format!("{:.1}", r.peak_rss_kib as f64 / 1024.0),
            if r.cache_hit { "yes" } else { "no" }.to_string(),
            r.run.clone(),
        ]
    };
    let header = [
        "stage",
        "outcome",
        "wall_s",
        "peak_rss_mib",
        "cache_hit",
        "run",
    ];
    crate::metrics::render_rows(records, &header, cells, format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_formatting() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        // python3 -c 'import datetime; print(datetime.datetime.utcfromtimestamp(1795000000))'
        assert_eq!(
            utc_parts(t),
            ("2026-11-18".to_string(), "11:06:40".to_string())
        );
        assert_eq!(
            utc_parts(UNIX_EPOCH),
            ("1970-01-01".to_string(), "00:00:00".to_string())
        );
    }
}
