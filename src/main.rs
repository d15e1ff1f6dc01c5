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
    // Only where the kernels run, and still before any thread starts: the other commands would
    // pass the variable on to every stage command they start.
    if args.command.uses_kernels() {
        kernels::threads::leave_cores_to_rayon();
    }
    let code = match cli::commands::dispatch(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            cli::error::exit_code_for(&err)
        }
    };
    std::process::exit(code);
}
