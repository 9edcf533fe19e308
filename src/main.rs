//! The `latchkey` binary: parses its arguments; everything it does is in the
//! library (`cli.rs`).

use std::process::ExitCode;

use clap::Parser;
use latchkey::cli::{self, Cli};

fn main() -> ExitCode {
    cli::main(Cli::parse())
}
