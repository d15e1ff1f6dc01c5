//! The command line: clap definitions, the engine's commands, and the GAN domain's tools.

pub mod args;
pub mod commands;
pub mod cpu;
pub mod error;
pub mod exp;
pub mod remote;
pub mod tools;
