//! camstream viewer (placeholder until its issue lands).

use clap::Parser;

/// camstream viewer.
#[derive(Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _ = Args::parse();
}
