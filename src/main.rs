//! The `repro` binary: parses the command line, runs one command, maps the outcome to an exit
//! code from the one table in `repro::exit_code`. All engine logic lives in the library.

mod cli;

use clap::Parser;

fn main() {
    // Training and feature extraction free and reallocate their tensors every step.
    stages::nn::kernels::heap::keep_freed_memory();
    let args = cli::args::Cli::parse();
    let code = match cli::commands::dispatch(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            cli::commands::exit_code_for(&err)
        }
    };
    std::process::exit(code);
}
