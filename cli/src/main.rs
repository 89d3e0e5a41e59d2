//! `stamp-echo`: the timestamp echo server, its client, a `ping` with clock
//! offsets and a checked load generator, in one command.
//!
//! ```text
//! stamp-echo serve                       # 127.0.0.1:8080, chunk framing, local ctime stamps
//! stamp-echo client                      # the tutorial's client: type lines, an empty line ends
//! stamp-echo ping -S rfc3339 -c 5        # round trips and the server's clock offset
//! stamp-echo load -f line -c 16 -n 20000 # checked load, latency percentiles
//! stamp-echo completions bash            # shell completions; `stamp-echo man` prints the man page
//! ```
#![forbid(unsafe_code)]

mod args;
mod client;
mod load;
mod log;
mod ping;
#[path = "../../examples/common/running.rs"]
mod running;
mod serve;
mod signal;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// The timestamp echo server and its tools: every message is answered with `[STAMP] MESSAGE`.
#[derive(Parser)]
#[command(name = "stamp-echo", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve TCP, a Unix socket or UDP (or a socket from systemd, or one connection on stdin/stdout).
    Serve(serve::Args),
    /// The tutorial's interactive client: each line typed is sent, each reply printed; an empty line ends.
    Client(client::Args),
    /// Probe a server like ping: round trips and the server's clock offset, then a summary.
    Ping(ping::Args),
    /// Drive a server with checked load and report throughput and latency percentiles.
    Load(load::Args),
    /// Print shell completions for SHELL to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    if let Err(e) = args::refuse_meaningless(&matches) {
        e.exit();
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Client(args) => client::run(&args),
        Command::Ping(args) => ping::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "stamp-echo", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => {
            let mut page = Vec::new();
            let rendered = clap_mangen::Man::new(Cli::command()).render(&mut page);
            match rendered.and_then(|()| std::io::stdout().write_all(&page)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("stamp-echo man: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
