//! `tidings store check` and `tidings store repair`: offline tools for a
//! damaged store (`store::check`). They run with the server stopped, on the
//! data dir the config names, and never change the store they read.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tidings::config::Config;
use tidings::server::STORE_DIR;
use tidings::store::check;

#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Read and decode every record of every tree; print a JSON report and
    /// exit 0 when the store is whole, 3 when it is damaged. Works on a
    /// copy of the store (made next to it, removed after); the server must
    /// be stopped.
    Check,
    /// Salvage every record that reads and decodes into a new data dir
    /// NEWDIR (its credentials and certificate copied too), leaving the
    /// damaged one untouched; print a JSON report. Then stop the server,
    /// swap the dirs and start it (README, "Damaged store files").
    Repair {
        /// The new data dir; must not exist yet.
        #[arg(long, value_name = "NEWDIR")]
        into: PathBuf,
    },
}

/// What the command found: `Damaged` maps to the binary's store exit code.
pub enum Outcome {
    Clean,
    Damaged,
}

pub fn run(cmd: StoreCommand, config: &Config) -> anyhow::Result<Outcome> {
    let data = &config.server.data_dir;
    let store = data.join(STORE_DIR);
    let scratch = data.join(format!("store.check-{}", std::process::id()));
    match cmd {
        StoreCommand::Check => {
            let report = check::check(&store, &scratch)
                .with_context(|| format!("checking {}", store.display()))?;
            print_json(&report)?;
            Ok(summarize(&report))
        }
        StoreCommand::Repair { into } => {
            if into.exists() {
                anyhow::bail!(
                    "{} already exists; repair writes a new data dir",
                    into.display()
                );
            }
            std::fs::create_dir_all(&into)
                .with_context(|| format!("creating {}", into.display()))?;
            let result = repair(data, &store, &into, &scratch);
            if result.is_err() {
                let _ = std::fs::remove_dir_all(&into);
            }
            result
        }
    }
}

fn repair(data: &Path, store: &Path, into: &Path, scratch: &Path) -> anyhow::Result<Outcome> {
    let report = check::repair(store, &into.join(STORE_DIR), scratch)
        .with_context(|| format!("repairing {}", store.display()))?;
    if report.check.unreadable.is_some() {
        print_json(&report)?;
        let _ = std::fs::remove_dir_all(into);
        anyhow::bail!(
            "nothing salvaged: sled cannot open {} at all; restore it from a backup",
            store.display()
        );
    }
    copy_besides_store(data, into).context("copying the data dir's other files")?;
    print_json(&report)?;
    eprintln!(
        "tidings: {} records salvaged into {}; the damaged store is unchanged. \
         Stop the server, move {} aside, move {} in its place, start the server.",
        report.salvaged,
        into.display(),
        data.display(),
        into.display()
    );
    Ok(summarize(&report.check))
}

/// Credentials, the certificate and anything else the data dir holds,
/// except the store and the files a running server rewrites.
fn copy_besides_store(data: &Path, into: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(data)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str == STORE_DIR
            || name_str.starts_with("store.check-")
            || name_str.ends_with(".addr")
        {
            continue;
        }
        let dest = into.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

fn summarize(report: &check::Report) -> Outcome {
    if report.is_clean() {
        eprintln!("tidings: store {} is whole", report.store.display());
        return Outcome::Clean;
    }
    match &report.unreadable {
        Some(why) => eprintln!(
            "tidings: store {} is damaged: {why}",
            report.store.display()
        ),
        None => eprintln!(
            "tidings: store {} is damaged: {} damaged record(s), {} tree(s) with an unreadable stretch, {} damaged conversation(s)",
            report.store.display(),
            report.trees.iter().map(|t| t.damaged).sum::<u64>(),
            report.trees.iter().filter(|t| t.unread.is_some()).count(),
            report.damaged_conversations.len()
        ),
    }
    Outcome::Damaged
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string(value)?;
    println!("{text}");
    Ok(())
}
