//! The one table of exit codes. The README documents it; scripts depend on it: never renumber.
//!
//! | code | name          | meaning                                                              |
//! |------|---------------|----------------------------------------------------------------------|
//! | 0    | `OK`          | success; `status`: everything fresh; `verify`: outputs identical     |
//! | 1    | `FAILED`      | a stage failed; `status`: something is stale; `verify`: outputs differ |
//! | 2    | `USAGE`       | bad command line, bad `pipeline.yaml`, unknown target or builtin     |
//! | 3    | `LOCK_BUSY`   | another `repro` holds the project lock and `--no-wait` was given      |
//! | 4    | `STATE`       | `repro.lock`, the cache or the workspace cannot be read or written   |
//! | 5    | `REMOTE`      | a remote cannot be reached or refused a transfer, or holds a corrupt object |
//! | 130  | `INTERRUPTED` | stopped by Ctrl-C (SIGINT) or SIGTERM                                |

pub const OK: i32 = 0;
pub const FAILED: i32 = 1;
pub const USAGE: i32 = 2;
pub const LOCK_BUSY: i32 = 3;
pub const STATE: i32 = 4;
pub const REMOTE: i32 = 5;
pub const INTERRUPTED: i32 = 130;
