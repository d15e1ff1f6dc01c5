//! The binary side of the CLI: clap definitions and the commands that drive the engine.

pub mod args;
pub mod commands;
pub mod cpu;
