//! camstream agent (placeholder until its issue lands).

use clap::Parser;

/// camstream agent.
#[derive(Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _ = Args::parse();
}
