//! The `repro` binary: the engine (`repro-engine`) with the GAN domain (`stages`) wired in.
//!
//! It parses the command line, runs one command, and maps the outcome to an exit code from the
//! one table in `repro_engine::exit_code`. The wiring is two lines: `stages::REGISTRY` goes into
//! every pipeline read ([`cli::commands`]) and runs `repro builtin` ([`cli::tools`]).

mod cli;

use clap::Parser;

fn main() {
    // Training and feature extraction free and reallocate their tensors every step.
    kernels::heap::keep_freed_memory();
    let args = cli::args::Cli::parse();
    // Only where the kernels run (the other commands would pass candle's variable on to every
    // stage command they start), before any thread starts, and then on the kernels' pool.
    let outcome = if args.command.uses_kernels() {
        kernels::threads::leave_cores_to_rayon();
        kernels::threads::run_in_pool(|| cli::commands::dispatch(args))
    } else {
        cli::commands::dispatch(args)
    };
    let code = match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            cli::error::exit_code_for(&err)
        }
    };
    std::process::exit(code);
}
