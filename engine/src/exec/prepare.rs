//! What a run does once, before the scheduler checks its first stage.
//!
//! - [`warm_source_deps`] hashes the sources (deps no stage makes) in parallel, so the
//!   sequential freshness checks find their digests in the hash cache;
//! - [`sweep_leftover_temps`] removes what a killed `repro` left half-written.
//!
//! Both only report through warnings and `Hashing` events; neither decides anything about a
//! stage. The sweep must run under the project lock and before any stage is checked (never in a
//! dry run, which takes no lock): a leftover temp file must never be hashed or read by a stage.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cache::Store;
use crate::dag::{Dag, StageId};
use crate::events::{emit, Event, Sender};
use crate::hash::Hasher;

use super::job;

/// Removes what a killed `repro` left half-written: temp files beside the lock and beside every
/// out (a restore or publish in flight), and in the store. Runs under the project lock, before
/// any stage is checked, so no stage can read a leftover and nothing hashes one.
pub fn sweep_leftover_temps(dag: &Dag, root: &Path, store: &Store, events: &Sender) {
    let mut dirs: BTreeSet<PathBuf> = dag
        .stages
        .iter()
        .flat_map(|s| s.outs.iter())
        .filter_map(|o| root.join(&o.path).parent().map(Path::to_path_buf))
        .collect();
    dirs.insert(root.to_path_buf());
    dirs.insert(store.tmp_dir());
    for dir in dirs {
        match crate::fsutil::sweep_temps(&dir) {
            Ok(removed) => {
                for path in removed {
                    emit(
                        events,
                        Event::Warning {
                            message: format!(
                                "removed `{}`, left half-written by an interrupted run",
                                job::relative(root, &path)
                            ),
                        },
                    );
                }
            }
            Err(e) => {
                emit(
                    events,
                    Event::Warning {
                        message: format!(
                            "cannot clean leftover temp files in `{}`: {e}",
                            job::relative(root, &dir)
                        ),
                    },
                );
            }
        }
    }
}

/// Hashes, in parallel and up front, every dep that no stage makes (the sources), so the
/// sequential freshness checks find their digests in the hash cache. Reports the bytes it reads
/// when that takes long enough to be worth a line (a first run over a large dataset).
pub fn warm_source_deps(
    dag: &Dag,
    order: &[StageId],
    root: &Path,
    hasher: &Hasher,
    hashed: &AtomicU64,
    events: &Sender,
) {
    let producers: BTreeSet<&str> = dag
        .stages
        .iter()
        .flat_map(|s| s.outs.iter().map(|o| o.path.as_str()))
        .collect();
    let made_by_a_stage = |dep: &str| {
        producers
            .range(..=dep)
            .next_back()
            .is_some_and(|o| crate::dag::is_within(dep, o))
            || producers
                .range(dep..)
                .next()
                .is_some_and(|o| crate::dag::is_within(o, dep))
    };
    let mut paths: Vec<PathBuf> = order
        .iter()
        .flat_map(|&id| dag.stages[id].deps.iter())
        .filter(|d| !made_by_a_stage(&d.path))
        .map(|d| root.join(&d.path))
        .collect();
    paths.sort();
    paths.dedup();
    let started = Instant::now();
    let report_after = Duration::from_millis(500);
    // Progress only for a hash that takes a while: a quick one says nothing.
    let report = |done: bool| {
        if started.elapsed() >= report_after {
            let event = Event::Hashing {
                bytes: hashed.load(Ordering::Relaxed),
                elapsed: started.elapsed(),
                done,
            };
            emit(events, event);
        }
    };
    std::thread::scope(|scope| {
        let work = scope.spawn(|| hasher.digest_many(&paths));
        while !work.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            report(false);
        }
    });
    report(true);
}
