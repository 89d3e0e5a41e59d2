//! Placeholder so the shared flags compile; the real server example lands with the runner.
mod common;
use clap::Parser;
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: common::Endpoint,
}
fn main() {
    let args = Args::parse();
    println!("{:?} {}", args.endpoint.framing(), args.endpoint.tcp_addr());
}
