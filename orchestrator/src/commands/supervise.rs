//! `supervise`: the operator answers the bottles' proposals.
//!
//! Without a subcommand on a terminal it is the TUI
//! ([`crate::supervise::tui`]); `list`, `show`, `approve`, `reject` and
//! `verify` do the same without one, each with `--json`.

use std::process::ExitCode;

use anyhow::Context as _;
use bb_supervise::queue::Tool;
use serde_json::json;

use crate::paths::Paths;
use crate::supervise::{self, Item, Verdict, one_line, printable};

/// `supervise` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do; the TUI when none is given.
    #[command(subcommand)]
    command: Option<Sub>,
    /// Container backend (used to reload a running bottle's egress).
    #[arg(long, global = true)]
    backend: Option<String>,
}

/// `supervise` subcommands.
#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Pending proposals of every bottle, newest first.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// One proposal: its justification and the diff it makes.
    Show {
        /// The proposal id (or a prefix naming one pending proposal).
        id: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Approve a proposal and apply it.
    Approve {
        /// The proposal id (or a prefix naming one pending proposal).
        id: String,
        /// Why (required for gitleaks-allow).
        #[arg(long, default_value = "")]
        reason: String,
        /// Approve this file instead of the proposed one (an edited
        /// routes.yaml or Dockerfile).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Approve even though the live file changed since the proposal.
        #[arg(long)]
        force: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Reject a proposal; nothing changes in the bottle.
    Reject {
        /// The proposal id (or a prefix naming one pending proposal).
        id: String,
        /// Why (required; the agent reads it).
        #[arg(long)]
        reason: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Check the audit log's hash chain.
    Verify {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(paths: &Paths, args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        None => {
            if !crate::tty::interactive() || !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(super::usage(
                    "the supervise TUI needs a terminal: use `bot-bottle supervise list`, `show`, `approve`, `reject` or `verify`",
                ));
            }
            let backend = super::select_backend(args.backend.as_deref(), paths)?;
            supervise::tui::run(paths, &*backend)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Sub::List { json }) => Ok(list(paths, json)),
        Some(Sub::Show { id, json }) => show(paths, &id, json),
        Some(Sub::Approve {
            id,
            reason,
            file,
            force,
            json,
        }) => {
            let file = file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))
                        .map_err(|e| super::usage(format!("{e:#}")))
                })
                .transpose()?;
            decide(
                paths,
                args.backend.as_deref(),
                &id,
                Verdict::Approve {
                    file,
                    reason,
                    force,
                },
                json,
            )
        }
        Some(Sub::Reject { id, reason, json }) => decide(
            paths,
            args.backend.as_deref(),
            &id,
            Verdict::Reject { reason },
            json,
        ),
        Some(Sub::Verify { json }) => Ok(verify(paths, json)),
    }
}

fn item_json(item: &Item) -> serde_json::Value {
    let p = &item.proposal;
    json!({
        "id": p.id.as_str(),
        "bottle_slug": item.bottle.slug,
        "label": item.bottle.label,
        "color": item.bottle.color,
        "tool": p.tool.as_str(),
        "arrival_timestamp": p.arrival_timestamp,
        "justification": p.justification,
        "stale": item.stale,
    })
}

fn list(paths: &Paths, json: bool) -> ExitCode {
    let listing = supervise::pending(paths);
    for problem in &listing.problems {
        eprintln!("warning: {problem}");
    }
    if json {
        let items: Vec<_> = listing.items.iter().map(item_json).collect();
        println!("{}", serde_json::Value::Array(items));
        return ExitCode::SUCCESS;
    }
    if listing.items.is_empty() {
        println!("no pending proposals");
        return ExitCode::SUCCESS;
    }
    for item in &listing.items {
        let p = &item.proposal;
        println!(
            "{}  {:<20} {:<16} {}{}  {}",
            p.id,
            item.bottle.label,
            p.tool.as_str(),
            p.arrival_timestamp,
            if item.stale { "  [stale]" } else { "" },
            one_line(&p.justification, 60),
        );
    }
    ExitCode::SUCCESS
}

fn show(paths: &Paths, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let (bottle, proposal) = supervise::find(paths, id)?;
    let response = bottle.queue.response(&proposal.id)?;
    let diff = supervise::diff_for(&bottle, proposal.tool, &proposal.proposed_file);
    let stale = supervise::pending(paths)
        .items
        .iter()
        .any(|i| i.proposal.id == proposal.id && i.stale);
    if json {
        println!(
            "{}",
            json!({
                "proposal": proposal,
                "label": bottle.label,
                "color": bottle.color,
                "stale": stale,
                "diff": diff,
                "response": response,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("proposal  {}", proposal.id);
    println!("bottle    {} ({})", bottle.label, bottle.slug);
    println!("tool      {}", proposal.tool);
    println!("arrived   {}", proposal.arrival_timestamp);
    match &response {
        Some(r) => println!(
            "answer    {} by {} at {}: {}",
            r.status,
            r.decided_by,
            r.decided_at,
            printable(&r.notes)
        ),
        None => println!("answer    (pending)"),
    }
    if stale {
        println!("stale     the live routes.yaml changed since this proposal was made");
    }
    println!(
        "\njustification (the agent's words):\n{}",
        printable(&proposal.justification)
    );
    if proposal.tool == Tool::GitleaksAllow {
        println!("\nfindings:\n{}", printable(&proposal.proposed_file));
    } else if diff.is_empty() {
        println!("\nno change against the live file");
    } else {
        println!("\n{}", printable(&diff));
    }
    Ok(ExitCode::SUCCESS)
}

fn decide(
    paths: &Paths,
    backend: Option<&str>,
    id: &str,
    verdict: Verdict,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let backend = super::select_backend(backend, paths)?;
    let (bottle, proposal) = supervise::find(paths, id)?;
    let who = supervise::operator_name();
    let outcome = supervise::decide(paths, &*backend, &bottle, &proposal, verdict, &who)?;
    let r = &outcome.response;
    if json {
        println!(
            "{}",
            json!({
                "id": r.id.as_str(),
                "bottle_slug": bottle.slug,
                "status": r.status.as_str(),
                "notes": r.notes,
                "audit_seq": outcome.entry.seq,
            })
        );
    } else {
        println!(
            "proposal {} ({}, bottle {}): {}\n{}",
            r.id,
            proposal.tool,
            bottle.label,
            r.status,
            printable(&r.notes)
        );
    }
    Ok(if r.status == bb_supervise::Status::Failed {
        ExitCode::from(super::exit::RUNTIME)
    } else {
        ExitCode::SUCCESS
    })
}

fn verify(paths: &Paths, json: bool) -> ExitCode {
    let log = supervise::audit_log(paths);
    match log.verify() {
        Ok(v) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": true, "entries": v.entries.len(), "head": v.head_hash, "log": log.log_path()})
                );
            } else {
                println!(
                    "audit log verifies: {} decisions, head {} ({})",
                    v.entries.len(),
                    v.head_hash,
                    log.log_path().display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!("{}", json!({"ok": false, "error": e.to_string()}));
            } else {
                eprintln!("bot-bottle: the audit log does not verify: {e}");
            }
            ExitCode::from(super::exit::RUNTIME)
        }
    }
}
