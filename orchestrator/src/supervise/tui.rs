//! The operator TUI, `bot-bottle supervise` on a terminal (ratatui over
//! crossterm).
//!
//! The top pane lists pending proposals of every bottle, newest first, the
//! bottle's label in its colour; the bottom pane shows the selected one:
//! the agent's justification and the diff it would make (the findings, for
//! `gitleaks-allow`). Keys: `↑`/`↓` (or `k`/`j`) select, `a` approve,
//! `m` modify in `$VISUAL`/`$EDITOR` then approve, `r` reject with a
//! reason, `PgUp`/`PgDn` scroll the diff, `q` quit. Approving
//! `gitleaks-allow` asks for a reason; approving a proposal made against a
//! routes.yaml that has changed since asks for confirmation.
//!
//! The queues are read again every second (files only, never the engine),
//! so new proposals appear as they arrive and a dead bottle never holds the
//! screen; only applying an approval to a running bottle talks to it.
//! Everything the agent wrote is shown with control characters escaped.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bb_supervise::queue::{ProposalId, Tool};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::{DefaultTerminal, Frame};

use super::{Item, Listing, Verdict, one_line, printable};
use crate::backend::Backend;
use crate::paths::Paths;

/// How often the queues are read again.
const REFRESH: Duration = Duration::from_secs(1);

/// Runs the TUI until the operator quits.
pub fn run(paths: &Paths, backend: &dyn Backend) -> anyhow::Result<()> {
    let mut terminal = ratatui::init();
    let result = App::new(paths, backend).run(&mut terminal);
    ratatui::restore();
    result
}

/// What the keyboard is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Browse,
    /// Typing a reason.
    Reason {
        purpose: Purpose,
        input: String,
    },
    /// y/n: approve a proposal whose live file changed since.
    ConfirmStale {
        file: Option<String>,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Reject,
    Approve,
}

struct App<'a> {
    paths: &'a Paths,
    backend: &'a dyn Backend,
    listing: Listing,
    state: ListState,
    selected: Option<ProposalId>,
    mode: Mode,
    status: String,
    scroll: u16,
    last_refresh: Instant,
    quit: bool,
}

impl<'a> App<'a> {
    fn new(paths: &'a Paths, backend: &'a dyn Backend) -> Self {
        let mut app = Self {
            paths,
            backend,
            listing: Listing::default(),
            state: ListState::default(),
            selected: None,
            mode: Mode::Browse,
            status: String::new(),
            scroll: 0,
            last_refresh: Instant::now(),
            quit: false,
        };
        app.refresh();
        app
    }

    fn run(mut self, terminal: &mut DefaultTerminal) -> anyhow::Result<()> {
        while !self.quit {
            terminal.draw(|f| self.draw(f))?;
            let wait = REFRESH.saturating_sub(self.last_refresh.elapsed());
            if event::poll(wait)?
                && let Event::Key(key) = event::read()?
                && key.kind == KeyEventKind::Press
            {
                self.key(key.code, key.modifiers, terminal)?;
            }
            if self.last_refresh.elapsed() >= REFRESH {
                self.refresh();
            }
        }
        Ok(())
    }

    /// Reads the queues again, keeping the selection on the same proposal.
    fn refresh(&mut self) {
        self.listing = super::pending(self.paths);
        self.last_refresh = Instant::now();
        let index = self
            .selected
            .as_ref()
            .and_then(|id| self.listing.items.iter().position(|i| &i.proposal.id == id))
            .or_else(|| {
                // The selected one was decided: stay at its place.
                let n = self.listing.items.len();
                (n > 0).then(|| self.state.selected().unwrap_or(0).min(n - 1))
            });
        self.state.select(index);
        let new = index.map(|i| self.listing.items[i].proposal.id.clone());
        if new != self.selected {
            self.scroll = 0;
        }
        self.selected = new;
    }

    fn current(&self) -> Option<&Item> {
        self.state
            .selected()
            .and_then(|i| self.listing.items.get(i))
    }

    fn select(&mut self, delta: isize) {
        let n = self.listing.items.len();
        if n == 0 {
            return;
        }
        let i = self
            .state
            .selected()
            .unwrap_or(0)
            .saturating_add_signed(delta);
        let i = i.min(n - 1);
        self.state.select(Some(i));
        self.selected = Some(self.listing.items[i].proposal.id.clone());
        self.scroll = 0;
    }

    fn key(
        &mut self,
        code: KeyCode,
        mods: KeyModifiers,
        terminal: &mut DefaultTerminal,
    ) -> anyhow::Result<()> {
        if code == KeyCode::Char('c') && mods.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return Ok(());
        }
        match std::mem::replace(&mut self.mode, Mode::Browse) {
            Mode::Browse => self.browse_key(code, terminal)?,
            Mode::Reason { purpose, mut input } => match code {
                KeyCode::Esc => self.status = "cancelled".into(),
                KeyCode::Enter if input.trim().is_empty() => {
                    self.status = "a reason is required".into();
                    self.mode = Mode::Reason { purpose, input };
                }
                KeyCode::Enter => match purpose {
                    Purpose::Reject => self.decide(terminal, Verdict::Reject { reason: input }),
                    Purpose::Approve => self.approve(terminal, None, input),
                },
                KeyCode::Backspace => {
                    input.pop();
                    self.mode = Mode::Reason { purpose, input };
                }
                KeyCode::Char(c) => {
                    input.push(c);
                    self.mode = Mode::Reason { purpose, input };
                }
                _ => self.mode = Mode::Reason { purpose, input },
            },
            Mode::ConfirmStale { file, reason } => {
                if matches!(code, KeyCode::Char('y' | 'Y')) {
                    self.decide(
                        terminal,
                        Verdict::Approve {
                            file,
                            reason,
                            force: true,
                        },
                    );
                } else {
                    self.status = "not approved".into();
                }
            }
        }
        Ok(())
    }

    fn browse_key(&mut self, code: KeyCode, terminal: &mut DefaultTerminal) -> anyhow::Result<()> {
        match code {
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Down | KeyCode::Char('j') => self.select(1),
            KeyCode::Up | KeyCode::Char('k') => self.select(-1),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_add(10),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Char('a') => {
                let Some(item) = self.current() else {
                    return Ok(());
                };
                if item.proposal.tool.approval_needs_reason() {
                    self.mode = Mode::Reason {
                        purpose: Purpose::Approve,
                        input: String::new(),
                    };
                } else {
                    self.approve(terminal, None, String::new());
                }
            }
            KeyCode::Char('r') if self.current().is_some() => {
                self.mode = Mode::Reason {
                    purpose: Purpose::Reject,
                    input: String::new(),
                };
            }
            KeyCode::Char('m') => self.modify(terminal)?,
            _ => {}
        }
        Ok(())
    }

    /// Approves, asking first when the proposal is stale.
    fn approve(&mut self, terminal: &mut DefaultTerminal, file: Option<String>, reason: String) {
        if self.current().is_some_and(|i| i.stale) {
            self.mode = Mode::ConfirmStale { file, reason };
            return;
        }
        self.decide(
            terminal,
            Verdict::Approve {
                file,
                reason,
                force: false,
            },
        );
    }

    /// Opens the proposed file in the editor, then approves what was saved.
    fn modify(&mut self, terminal: &mut DefaultTerminal) -> anyhow::Result<()> {
        let Some(item) = self.current() else {
            return Ok(());
        };
        if !item.proposal.tool.can_modify() {
            self.status = format!("{} proposals cannot be modified", item.proposal.tool);
            return Ok(());
        }
        let suffix = if item.proposal.tool == Tool::CapabilityBlock {
            ".Dockerfile"
        } else {
            ".yaml"
        };
        let mut tmp = tempfile::Builder::new()
            .prefix("bb-proposal-")
            .suffix(suffix)
            .tempfile()
            .context("creating a file to edit")?;
        std::io::Write::write_all(&mut tmp, item.proposal.proposed_file.as_bytes())?;
        ratatui::restore();
        let edited = run_editor(tmp.path());
        *terminal = ratatui::init();
        terminal.clear()?;
        match edited
            .and_then(|()| std::fs::read_to_string(tmp.path()).context("reading the edited file"))
        {
            Ok(text) => self.approve(terminal, Some(text), String::new()),
            Err(e) => self.status = format!("not approved: {e:#}"),
        }
        Ok(())
    }

    fn decide(&mut self, terminal: &mut DefaultTerminal, verdict: Verdict) {
        let Some(item) = self.current().cloned() else {
            return;
        };
        self.status = format!("applying {}…", item.proposal.id);
        let _ = terminal.draw(|f| self.draw(f));
        let who = super::operator_name();
        self.status = match super::decide(
            self.paths,
            self.backend,
            &item.bottle,
            &item.proposal,
            verdict,
            &who,
        ) {
            Ok(o) => format!(
                "{} {}: {}",
                o.response.status,
                short(&o.response.id),
                one_line(&o.response.notes.replace('\n', " · "), 200)
            ),
            Err(e) => format!(
                "nothing changed for {}: {}",
                short(&item.proposal.id),
                one_line(&format!("{e:#}"), 300)
            ),
        };
        self.refresh();
    }

    fn draw(&mut self, f: &mut Frame<'_>) {
        let [header, list, detail, status, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Percentage(35),
            Constraint::Min(5),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(f.area());
        f.render_widget(
            Paragraph::new(format!(
                "bot-bottle supervise · {} pending",
                self.listing.items.len()
            ))
            .style(Style::new().add_modifier(Modifier::BOLD)),
            header,
        );
        let rows: Vec<ListItem<'_>> = self
            .listing
            .items
            .iter()
            .map(|item| {
                let p = &item.proposal;
                let colour = item.bottle.color.parse().unwrap_or(Color::Blue);
                ListItem::new(Line::from(vec![
                    Span::styled(
                        format!("● {:<16} ", one_line(&item.bottle.label, 16)),
                        Style::new().fg(colour),
                    ),
                    Span::raw(format!("{:<16} ", p.tool.as_str())),
                    Span::raw(format!("{} ", p.arrival_timestamp)),
                    Span::styled(
                        if item.stale { "[stale] " } else { "" },
                        Style::new().fg(Color::Yellow),
                    ),
                    Span::raw(one_line(&p.justification, 60)),
                ]))
            })
            .collect();
        let empty = rows.is_empty();
        f.render_stateful_widget(
            List::new(rows)
                .block(Block::new().borders(Borders::ALL).title(if empty {
                    " no pending proposals: waiting for bottles to ask "
                } else {
                    " proposals (newest first) "
                }))
                .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
                .highlight_symbol("> "),
            list,
            &mut self.state,
        );
        let (title, body) = match self.current() {
            Some(item) => detail_view(item),
            None => (String::from(" proposal "), Vec::new()),
        };
        f.render_widget(
            Paragraph::new(body)
                .block(Block::new().borders(Borders::ALL).title(title))
                .wrap(Wrap { trim: false })
                .scroll((self.scroll, 0)),
            detail,
        );
        f.render_widget(
            Paragraph::new(self.status.as_str()).style(Style::new().fg(Color::Cyan)),
            status,
        );
        let help = match &self.mode {
            Mode::Browse => String::from(
                "↑/↓ select  a approve  m modify ($EDITOR)  r reject  PgUp/PgDn scroll  q quit",
            ),
            Mode::Reason {
                purpose: Purpose::Reject,
                input,
            } => format!("reason for rejecting: {input}_   (Enter submit, Esc cancel)"),
            Mode::Reason {
                purpose: Purpose::Approve,
                input,
            } => format!("reason for approving (required): {input}_   (Enter submit, Esc cancel)"),
            Mode::ConfirmStale { .. } => String::from(
                "the live routes.yaml changed since this proposal was made: approve anyway? y/n",
            ),
        };
        f.render_widget(
            Paragraph::new(help).style(Style::new().add_modifier(Modifier::BOLD)),
            footer,
        );
    }
}

/// The detail pane: title and lines.
fn detail_view(item: &Item) -> (String, Vec<Line<'static>>) {
    let p = &item.proposal;
    let title = format!(
        " {} · {} · bottle {} ({}) ",
        p.id,
        p.tool,
        one_line(&item.bottle.label, 30),
        item.bottle.slug
    );
    let mut lines = vec![Line::styled(
        "justification (the agent's words):",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    lines.extend(
        printable(&p.justification)
            .lines()
            .map(|l| Line::raw(l.to_owned())),
    );
    lines.push(Line::raw(""));
    if p.tool == Tool::GitleaksAllow {
        lines.push(Line::styled(
            "findings:",
            Style::new().add_modifier(Modifier::BOLD),
        ));
        lines.extend(
            printable(&p.proposed_file)
                .lines()
                .map(|l| Line::raw(l.to_owned())),
        );
        return (title, lines);
    }
    let diff = super::diff_for(&item.bottle, p.tool, &p.proposed_file);
    if diff.is_empty() {
        lines.push(Line::raw("no change against the live file"));
    }
    for l in printable(&diff).lines() {
        let style = match l.chars().next() {
            Some('+') => Style::new().fg(Color::Green),
            Some('-') => Style::new().fg(Color::Red),
            Some('@') => Style::new().fg(Color::Cyan),
            _ => Style::new(),
        };
        lines.push(Line::styled(l.to_owned(), style));
    }
    (title, lines)
}

fn short(id: &ProposalId) -> &str {
    id.as_str().get(..8).unwrap_or(id.as_str())
}

/// Runs `$VISUAL`, then `$EDITOR`, then `vi` on `path`, waiting for it.
fn run_editor(path: &std::path::Path) -> anyhow::Result<()> {
    use crate::env_vars::{EDITOR, VISUAL};
    let chosen = [VISUAL, EDITOR]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "vi".into());
    // `$EDITOR` may carry arguments (`code --wait`).
    let mut words = chosen.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let status = std::process::Command::new(program)
        .args(words)
        .arg(path)
        .status()
        .with_context(|| format!("cannot run editor `{program}` (set VISUAL or EDITOR)"))?;
    if !status.success() {
        anyhow::bail!("the editor `{program}` exited with {status}; nothing was approved");
    }
    Ok(())
}
