//! One module per subcommand. Each turns its raw arguments into validated settings and runs.

pub mod completions;
pub mod coordinator;
pub mod demo;
pub mod inspect;
pub mod peer;
pub mod seed;
pub mod status;

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Seed(a) => seed::run(a, &g),
        Command::Peer(a) => peer::run(a, &g),
        Command::Coordinator(a) => coordinator::run(a, &g),
        Command::Status(a) => status::run(a, &g),
        Command::Inspect(a) => inspect::run(a, &g),
        Command::Demo(a) => demo::run(a, &g),
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => completions::man(a),
    }
}

/// The error for a subcommand that this build does not implement yet.
pub(crate) fn not_built(what: &str) -> anyhow::Error {
    crate::exit::coded(
        crate::exit::Exit::Usage,
        format!("`dfpull {what}` is not available in this build yet"),
    )
}
