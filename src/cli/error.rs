//! How an error ends the process: the one place that maps the engine's typed errors (found
//! anywhere in an `anyhow` chain) to the exit-code table in `repro_engine::exit_code`.

use repro_engine::builtin::StageError;
use repro_engine::exec;
use repro_engine::exit_code;
use repro_engine::metrics::MetricsError;
use repro_engine::spec;
use repro_engine::workspace::WorkspaceError;

/// Maps an error to its exit code: spec and graph errors are usage errors, a busy lock has its
/// own code, state and I/O errors theirs.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        // A builtin's own error comes before its sources (an I/O error there is the stage's
        // failure, not repro's state).
        if let Some(e) = cause.downcast_ref::<StageError>() {
            return if e.is_params() {
                exit_code::USAGE
            } else {
                exit_code::FAILED
            };
        }
        if cause.is::<spec::SpecError>()
            || cause.is::<repro_engine::dag::DagError>()
            || cause.is::<repro_engine::experiments::ExpError>()
            || cause.is::<UsageError>()
        {
            return exit_code::USAGE;
        }
        if let Some(w) = cause.downcast_ref::<WorkspaceError>() {
            return match w {
                WorkspaceError::Busy { .. } => exit_code::LOCK_BUSY,
                WorkspaceError::NotFound { .. } => exit_code::USAGE,
                WorkspaceError::Io(_) => exit_code::STATE,
            };
        }
        if let Some(e) = cause.downcast_ref::<repro_engine::remote::RemoteError>() {
            return match e {
                e if e.is_usage() => exit_code::USAGE,
                repro_engine::remote::RemoteError::Cache(_)
                | repro_engine::remote::RemoteError::Io(_) => exit_code::STATE,
                _ => exit_code::REMOTE,
            };
        }
        if let Some(e) = cause.downcast_ref::<MetricsError>() {
            match e {
                MetricsError::UnknownRevision { .. } => return exit_code::USAGE,
                MetricsError::Git { .. } => return exit_code::STATE,
                // A metric file's own error: its I/O source (if any) decides below.
                _ => {}
            }
        }
        if let Some(e) = cause.downcast_ref::<exec::ExecError>() {
            return match e {
                exec::ExecError::NotEnoughGpus { .. } => exit_code::USAGE,
                _ => exit_code::STATE,
            };
        }
        if cause.is::<repro_engine::lockfile::LockFileError>()
            || cause.is::<repro_engine::hash::HashError>()
            || cause.is::<repro_engine::cache::CacheError>()
            || cause.is::<std::io::Error>()
        {
            return exit_code::STATE;
        }
    }
    exit_code::FAILED
}

/// An error in how the command was used (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
