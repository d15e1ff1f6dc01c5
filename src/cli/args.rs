//! The command line as clap sees it. Only parsing and validation here; `commands` resolves it
//! into engine calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "repro",
    version,
    about = "Reproduce research as a declarative, content-hashed pipeline",
    long_about = "Reproduce research as a declarative, content-hashed pipeline.\n\n\
        repro reads pipeline.yaml, hashes what every stage reads, and runs only the stages whose \
        inputs changed, in parallel, in staging directories, restoring earlier results from its \
        cache when their inputs come back.",
    after_help = "Exit codes: 0 ok, 1 a stage failed or (status) something is stale, 2 usage or \
        pipeline.yaml error, 3 project locked (--no-wait), 4 state or I/O error, 130 interrupted."
)]
pub struct Cli {
    /// The pipeline file [default: the nearest pipeline.yaml from the current directory up].
    #[arg(short = 'f', long, global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Say more (fresh stages, all reasons). Repeat for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a project here: a commented starter `pipeline.yaml` (a small example to edit) and
    /// `.gitignore` entries for repro's local state. Never overwrites a file.
    Init,
    /// Print a shell completion script: `repro completions bash > ~/.local/share/bash-completion/completions/repro`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Bring every stage up to date: run or restore what is stale, skip what is fresh.
    All(RunArgs),
    /// Bring the given stages (and, by default, their upstream) up to date.
    Run {
        /// Stage or group names (`train` selects every `train@...` member).
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
        /// Also everything downstream of the targets.
        #[arg(long, conflicts_with = "single")]
        downstream: bool,
        /// Only the targets, not their upstream stages.
        #[arg(short, long)]
        single: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// List stale stages and why; exit 1 when something is stale.
    Status {
        /// Only these stages (and their upstream).
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Instead: which recorded outputs are missing locally and which on a remote (exit 1
        /// when something is to push or pull) (`--remote=NAME`: that remote; plain: the default).
        #[arg(long, value_name = "NAME", num_args = 0..=1, require_equals = true, default_missing_value = "")]
        remote: Option<String>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Show the stage graph.
    Dag {
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
        /// Mermaid flowchart.
        #[arg(long, conflicts_with_all = ["dot", "json"])]
        mermaid: bool,
        /// Graphviz dot.
        #[arg(long, conflicts_with = "json")]
        dot: bool,
        /// JSON: every stage with its deps, outs and upstream stages.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Delete cached objects that `repro.lock` does not refer to.
    Gc {
        /// Say what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Fail at once if another repro holds the project lock.
        #[arg(long)]
        no_wait: bool,
    },
    /// The latest run record of every stage: outcome, wall time, peak memory, cache hit.
    Runs {
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Re-hash every cached object; move corrupt ones to quarantine (exit 4 if any).
    Fsck {
        #[arg(long)]
        no_wait: bool,
    },
    /// Rerun stages in a scratch directory and compare their outputs with `repro.lock`.
    Verify {
        /// Stage or group names (`train` verifies every `train@...` member).
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Configure remotes: shared caches in a directory or S3 (`repro.toml`, or your own config).
    Remote {
        #[command(subcommand)]
        command: RemoteCommand,
    },
    /// Copy the cached outputs (and run records) of stages to a remote.
    Push(TransferArgs),
    /// Fetch the outputs `repro.lock` records from a remote, verified, into the cache and the
    /// workspace.
    Pull(TransferArgs),
    /// Show or compare the values of the stages' metric files.
    Metrics {
        #[command(subcommand)]
        command: MetricsCommand,
    },
    /// The experiment table: a row per stage, the params that vary, the metrics.
    Exp {
        #[command(subcommand)]
        command: super::exp::ExpCommand,
    },
    /// Compare the stages' params with those of a git revision.
    Params {
        #[command(subcommand)]
        command: super::exp::ParamsCommand,
    },
    /// The singular values of every weight matrix (rank-2 or rank-4 float tensor) in a
    /// safetensors file, with the spectral-collapse summaries.
    Spectrum {
        /// A safetensors file (a repro checkpoint or one saved by PyTorch).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Machine-readable output, every singular value included.
        #[arg(long)]
        json: bool,
    },
    /// The FID between two image sets, like `python -m pytorch_fid A B`.
    Fid {
        /// A folder of PNG images, a prepared dataset (safetensors), or an `.npz` with `mu` and
        /// `sigma`.
        #[arg(value_name = "A")]
        a: PathBuf,
        #[arg(value_name = "B")]
        b: PathBuf,
        /// The FID Inception weights: repro's safetensors, a pytorch-fid `.pth` or the
        /// fid-helper TorchScript `.pt`.
        #[arg(long, value_name = "FILE", env = "REPRO_FID_WEIGHTS")]
        weights: Option<PathBuf>,
        /// Images per forward pass [default: 4 on the CPU, where larger batches page-fault]
        #[arg(long, value_name = "N")]
        batch: Option<usize>,
        /// Print `{"fid": <number>}`.
        #[arg(long)]
        json: bool,
    },
    /// Run a stage's command under a supervisor (the engine runs every local stage this way).
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The pid of the repro that started it.
        #[arg(long)]
        parent: i32,
        /// The stage's program and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Run one builtin stage kind in the current directory (the engine runs builtins this way).
    Builtin {
        /// The kind (`repro builtin --list` shows them).
        #[arg(value_name = "KIND", required_unless_present = "list")]
        kind: Option<String>,
        /// The `with:` params as a JSON object.
        #[arg(long, value_name = "JSON", conflicts_with = "with_file")]
        with: Option<String>,
        /// Read the `with:` params from a JSON file.
        #[arg(long, value_name = "FILE")]
        with_file: Option<PathBuf>,
        /// List the known kinds.
        #[arg(long)]
        list: bool,
    },
}

impl Command {
    /// Whether the command computes with the CPU kernels (tensors, convolutions): a builtin
    /// stage kind, `fid`, `spectrum`.
    pub fn uses_kernels(&self) -> bool {
        matches!(
            self,
            Command::Builtin { .. } | Command::Fid { .. } | Command::Spectrum { .. }
        )
    }
}

#[derive(Subcommand, Debug)]
pub enum MetricsCommand {
    /// The current values of every metric file.
    Show {
        #[command(flatten)]
        format: FormatArgs,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Compare the metrics in the workspace with those recorded in `repro.lock` (or in the
    /// `repro.lock` of a git revision).
    Diff {
        /// A git revision whose `repro.lock` holds the old values [default: the current lock].
        #[arg(value_name = "REV")]
        rev: Option<String>,
        /// Show unchanged metrics too.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        format: FormatArgs,
        #[command(flatten)]
        spec: SpecArgs,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct FormatArgs {
    /// Markdown table.
    #[arg(long, group = "fmt")]
    pub md: bool,
    /// CSV.
    #[arg(long, group = "fmt")]
    pub csv: bool,
    /// JSON.
    #[arg(long, group = "fmt")]
    pub json: bool,
}

/// How `pipeline.yaml` is read.
#[derive(Args, Debug, Clone, Default)]
pub struct SpecArgs {
    /// Apply a named overlay of params from `profiles:`. Inside a stage it defaults to the
    /// profile of the run (`REPRO_PROFILE`), so `repro dag` there shows that run's pipeline.
    #[arg(long, value_name = "NAME", env = repro_engine::spec::PROFILE_ENV)]
    pub profile: Option<String>,
    /// Override one param (after the profile); repeatable. Inside a stage it defaults to the
    /// run's overrides (`REPRO_SET`, one per line).
    #[arg(long = "set", value_name = "KEY=VALUE", env = repro_engine::spec::SET_ENV, value_delimiter = '\n')]
    pub set: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Run up to N stages at once [default: the number of CPUs]. On this machine each stage
    /// also takes its `resources.cpus` (at least 1) of the CPUs, so an N above the number of
    /// CPUs runs no more stages at once (a warning says so); with `--executor slurm` the
    /// cluster grants CPUs and N only bounds the jobs in flight.
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Say what would run and why; run nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Rerun the selected stages even when fresh (bypasses the run cache).
    #[arg(long)]
    pub force: bool,
    /// After a failure, keep running what does not depend on it.
    #[arg(short, long)]
    pub keep_going: bool,
    /// Never restore from the run cache: rerun every stale stage.
    #[arg(long)]
    pub no_run_cache: bool,
    /// GPU ids to hand out to stages with `resources.gpus` [default: $CUDA_VISIBLE_DEVICES].
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub gpus: Option<Vec<u32>>,
    /// Fail at once if another repro holds the project lock, instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Print events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Fetch a stale stage's outputs from a remote instead of running it, when the remote holds
    /// a run with the same fingerprint (`--pull=NAME`: that remote; plain `--pull`: the default).
    #[arg(long, value_name = "NAME", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub pull: Option<String>,
    #[command(flatten)]
    pub executor: ExecutorArgs,
}

/// `repro push` / `repro pull`.
#[derive(Args, Debug, Clone)]
pub struct TransferArgs {
    /// Stage or group names [default: every stage in `repro.lock`].
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// The remote [default: `core.remote`, else the only one configured].
    #[arg(short, long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Objects moved at once.
    #[arg(short, long, value_name = "N", default_value_t = 8)]
    pub jobs: usize,
    /// Fail at once if another repro holds the project lock (`pull`), instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Print events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// `repro remote ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum RemoteCommand {
    /// Add (or replace) a remote: a directory path, `file://` URL or `s3://bucket/prefix`.
    /// S3 credentials and endpoint come from the AWS environment variables, never from a file.
    Add {
        name: String,
        url: String,
        /// Also make it the default remote.
        #[arg(short, long)]
        default: bool,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// List the remotes, with the file that set each.
    List,
    /// Remove a remote from a config file.
    Remove {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Make a remote the default.
    Default {
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
}

/// Which config file a `repro remote` change goes to [default: the project's `repro.toml`].
#[derive(Args, Debug, Clone, Copy)]
pub struct ScopeArgs {
    /// `.repro/config.toml`: this clone only, not committed.
    #[arg(long, conflicts_with = "global")]
    pub local: bool,
    /// Your own `~/.config/repro/config.toml`: every project of yours.
    #[arg(long)]
    pub global: bool,
}

/// Where stages run; each flag overrides the same key of `executor:` in `pipeline.yaml`.
#[derive(Args, Debug, Clone, Default)]
pub struct ExecutorArgs {
    /// `local` (child processes) or `slurm` (one sbatch job per stage, on a shared filesystem)
    /// [default: `executor:` in pipeline.yaml, else local].
    #[arg(long, value_enum, value_name = "KIND")]
    pub executor: Option<ExecutorChoice>,
    /// SLURM partition (`sbatch --partition`).
    #[arg(long, value_name = "NAME")]
    pub slurm_partition: Option<String>,
    /// SLURM account (`sbatch --account`).
    #[arg(long, value_name = "NAME")]
    pub slurm_account: Option<String>,
    /// Time limit of each job (`sbatch --time`, e.g. `2:00:00`).
    #[arg(long, value_name = "TIME")]
    pub slurm_time: Option<String>,
    /// One more sbatch argument, passed last; repeatable (`--slurm-arg=--qos=high`).
    #[arg(long = "slurm-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub slurm_args: Vec<String>,
    /// Seconds a job that left the SLURM queue may take to show its exit code on the shared
    /// filesystem before it is reported lost.
    #[arg(long, value_name = "SECS", env = "REPRO_SLURM_LOST_GRACE", hide = true)]
    pub slurm_lost_grace: Option<f64>,
}

/// `--executor`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorChoice {
    Local,
    Slurm,
}
