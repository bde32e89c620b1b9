//! Client subcommands. Placeholder until the real client CLI lands.

use tidings::config::Config;

/// Client subcommands, flattened into the top-level `tidings` command.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Print messages as they arrive (not yet implemented).
    Listen,
}

/// Runs one client subcommand.
pub async fn run(cmd: ClientCommand, _config: &Config) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Listen => anyhow::bail!("not yet"),
    }
}
