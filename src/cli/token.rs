//! `pedulicovid token …`: API tokens (only their hashes are kept).

use std::process::ExitCode;

use clap::Subcommand;

use super::{cli_actor, open_store};
use crate::campaign::fmt_wib;
use crate::config::Settings;
use crate::store::NewToken;

#[derive(Debug, Subcommand)]
pub(super) enum TokenCmd {
    /// Create a token and print it once.
    Create {
        /// Unique name (letters, digits, '.', '-', '_', '@'), e.g. chatbot-kominfo.
        #[arg(long)]
        name: String,
        /// What the token may do.
        #[arg(long, value_parser = ["operator", "support", "chatbot", "carrier"])]
        role: String,
    },
    /// All tokens (never the tokens themselves).
    List,
    /// Revoke a token by name or id; it stops working at once.
    Revoke {
        /// The token's name or its numeric id (from `token list`).
        id_or_name: String,
    },
}

pub(super) async fn run(s: &Settings, t: &TokenCmd, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(s).await?;
    match t {
        TokenCmd::Create { name, role } => {
            let role: crate::store::Role = role.parse().map_err(anyhow::Error::msg)?;
            let NewToken { token: tok, secret } = store.create_token(name, role).await?;
            store
                .audit(
                    &cli_actor(),
                    "token.create",
                    &format!("token:{}", tok.id),
                    &format!("{} ({})", tok.name, tok.role),
                )
                .await?;
            eprintln!(
                "token {} {:?} ({}) created; it is shown once, store it now:",
                tok.id, tok.name, tok.role
            );
            if json {
                println!("{}", serde_json::json!({"token": tok, "secret": secret}));
            } else {
                println!("{secret}");
            }
        }
        TokenCmd::List => {
            let all = store.tokens().await?;
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                println!(
                    "{:>4}  {:<24} {:<9} {:<23} {:<23} revoked",
                    "id", "name", "role", "created", "last used"
                );
                for t in all {
                    println!(
                        "{:>4}  {:<24} {:<9} {:<23} {:<23} {}",
                        t.id,
                        t.name,
                        t.role,
                        fmt_wib(t.created_at),
                        t.last_used_at.map(fmt_wib).unwrap_or_else(|| "-".into()),
                        t.revoked_at.map(fmt_wib).unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        TokenCmd::Revoke { id_or_name } => {
            let tok = store.revoke_token(id_or_name).await?;
            store
                .audit(
                    &cli_actor(),
                    "token.revoke",
                    &format!("token:{}", tok.id),
                    &tok.name,
                )
                .await?;
            if json {
                println!("{}", serde_json::json!({ "revoked": tok }));
            } else {
                println!("token {} {:?} revoked", tok.id, tok.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
