//! Where the tables go: the terminal's width, and whether to colour. Chosen once per run
//! (`--color`, `NO_COLOR`, the terminal behind standard output) and read by every table.

use std::io::IsTerminal;
use std::sync::OnceLock;

use clap::ValueEnum;

/// `--color`: `auto` colours only a terminal, and not when `NO_COLOR` is set (no-color.org).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(super) enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// How tables are laid out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Term {
    /// Columns to wrap at: the terminal's, or `COLUMNS`; `usize::MAX` (no wrapping) when
    /// the output is a pipe or file, so each line stays whole for grep.
    pub width: usize,
    pub color: bool,
}

static TERM: OnceLock<Term> = OnceLock::new();

/// Decides the layout from the environment; later calls keep the first answer.
pub(super) fn configure(choice: ColorChoice) {
    let tty = std::io::stdout().is_terminal();
    let color = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    };
    let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
    let width = match (tty.then(tty_width).flatten(), columns) {
        (Some(w), _) | (None, Some(w)) => w,
        (None, None) if tty => 80,
        (None, None) => usize::MAX,
    };
    let _ = TERM.set(Term {
        width: width.max(40),
        color,
    });
}

/// The layout chosen by [`configure`] (a pipe, no colour, if it was never called).
pub(super) fn get() -> Term {
    *TERM.get_or_init(|| Term {
        width: usize::MAX,
        color: false,
    })
}

/// The width of the terminal on standard output (TIOCGWINSZ), if it says one.
fn tty_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one winsize into the struct passed; fd 1 is only queried.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// Columns `text` takes on a terminal: its characters, colour codes aside.
fn visible_width(text: &str) -> usize {
    let mut n = 0;
    let mut in_code = false;
    for c in text.chars() {
        match (in_code, c) {
            (false, '\x1b') => in_code = true,
            (true, 'm') => in_code = false,
            (false, _) => n += 1,
            (true, _) => {}
        }
    }
    n
}

/// Colours of the tables' words (SGR codes).
#[derive(Clone, Copy)]
pub(super) enum Paint {
    /// Bypass, high severity.
    Red,
    /// Partial, medium severity.
    Yellow,
    /// Unknown.
    Magenta,
    /// Captured.
    Green,
    /// Headings.
    Bold,
    /// Low severity, the proxy, citations.
    Dim,
}

impl Term {
    /// `text` in `paint` when colouring; as is otherwise. Apply after wrapping: the codes
    /// take no columns.
    pub(super) fn paint(&self, text: &str, paint: Paint) -> String {
        if !self.color || text.is_empty() {
            return text.to_string();
        }
        let code = match paint {
            Paint::Red => "1;31",
            Paint::Yellow => "33",
            Paint::Magenta => "35",
            Paint::Green => "32",
            Paint::Bold => "1",
            Paint::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// `text` after `head`, wrapped to the width, continuation lines indented by
    /// `indent`; a word longer than a line keeps a line alone.
    pub(super) fn lines(&self, head: &str, indent: usize, text: &str) -> Vec<String> {
        let room = |used: usize| self.width.saturating_sub(used).max(20);
        super::text::wrap(text, room(visible_width(head)), room(indent))
            .into_iter()
            .enumerate()
            .map(|(i, line)| {
                if i == 0 {
                    format!("{head}{line}")
                } else {
                    format!("{}{line}", " ".repeat(indent))
                }
            })
            .collect()
    }
}
