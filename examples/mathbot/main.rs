//! MathBot: a bot in a system conversation that answers arithmetic, like
//! LeanCloud's demo. Clients write `1+2*3` to the conversation; Tidings
//! POSTs their messages to this bot's webhook (`[system] webhook_url`) as
//! `_SysMessage` rows; the bot answers each sender alone through the admin
//! API's send-to-users endpoint. See the README's "MathBot" section.
//!
//! ```sh
//! TIDINGS_SYSTEM_WEBHOOK_URL=http://127.0.0.1:3000/webhook cargo run --release -- serve
//! cargo run --release --example mathbot -- --subscribe Tom
//! cargo run --release -- chat --as Tom --conv <the id it prints>
//! ```

mod bot;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "A system-conversation bot that answers arithmetic")]
struct Args {
    /// Where the server's webhook reaches the bot: set the server's
    /// [system] webhook_url to http://<this address>/webhook.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// The server's data dir: the admin API's address and the credentials
    /// are read there unless given.
    #[arg(long, default_value = "./tidings-data")]
    data_dir: PathBuf,
    /// The admin API's base URL. Default: from <data-dir>/admin.addr.
    #[arg(long, value_name = "URL")]
    admin_url: Option<String>,
    /// Default: from <data-dir>/credentials.json.
    #[arg(long)]
    app_id: Option<String>,
    /// Default: from <data-dir>/credentials.json.
    #[arg(long)]
    master_key: Option<String>,
    /// The bot's client id, and the name of its system conversation (found,
    /// or created).
    #[arg(long, default_value = "MathBot")]
    name: String,
    /// Subscribe these clients, so they can write to the bot.
    #[arg(long, value_name = "CLIENT_ID", value_delimiter = ',')]
    subscribe: Vec<String>,
    /// Refuse webhook calls without this X-LC-Hook-Key (the server's
    /// hooks.hook_key).
    #[arg(long)]
    hook_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = match args.admin_url {
        Some(u) => u,
        None => {
            let file = args.data_dir.join(tidings::admin::ADDR_FILE);
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "reading {} (is the server running? else pass --admin-url)",
                    file.display()
                )
            })?;
            let mut addr: SocketAddr = text
                .trim()
                .parse()
                .with_context(|| format!("{} does not hold an address", file.display()))?;
            if addr.ip().is_unspecified() {
                addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            format!("http://{addr}")
        }
    };
    let (app_id, master_key) = match (args.app_id, args.master_key) {
        (Some(a), Some(k)) => (a, k),
        (a, k) => {
            let c = tidings::auth::Credentials::load(&args.data_dir).with_context(|| {
                format!(
                    "reading the credentials in {} (or pass --app-id and --master-key)",
                    args.data_dir.display()
                )
            })?;
            (a.unwrap_or(c.app_id), k.unwrap_or(c.master_key))
        }
    };
    let bot = Arc::new(bot::Bot::new(
        &admin,
        &app_id,
        &master_key,
        &args.name,
        args.hook_key,
    )?);
    let conv = bot.conversation().await?;
    for c in &args.subscribe {
        bot.subscribe(&conv, c)
            .await
            .with_context(|| format!("subscribing {c}"))?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    println!(
        "{} answers in system conversation {conv}; its webhook is http://{}/webhook",
        bot.name,
        listener.local_addr()?
    );
    axum::serve(listener, bot::router(bot))
        .await
        .context("serving the webhook")?;
    Ok(())
}
