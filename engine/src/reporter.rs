//! The one place that prints what the executor does.
//!
//! It runs on its own thread and drains the event channel. Three renderings of the same events:
//! - **tty**: one live line per running stage (name, elapsed, the stage's own progress bar when
//!   it reports any), finished stages scroll above them;
//! - **plain**: one line per state change, for logs and CI (progress at most every few seconds);
//! - **json**: every event as one JSON object per line, for machines.
//!
//! Fresh stages are counted, and listed only with `-v`: a no-op run over 1,000 stages should say
//! one line, not a thousand. The summary line is printed when the channel closes.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::Event;
use crate::fingerprint::DirtyReason;

/// How events are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tty,
    Plain,
    Json,
}

impl Mode {
    /// Progress bars when stderr is a terminal, plain lines otherwise.
    pub fn detect() -> Mode {
        if std::io::stderr().is_terminal() {
            Mode::Tty
        } else {
            Mode::Plain
        }
    }
}

/// Counts of what happened, returned when the reporter finishes.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub ran: usize,
    pub restored: usize,
    pub fresh: usize,
    pub frozen: usize,
    pub failed: usize,
    pub skipped: usize,
    pub interrupted: usize,
    pub would_run: usize,
    /// A plan arrived: the run got as far as choosing its stages.
    pub planned: bool,
}

/// Starts the reporter thread; it ends when every sender is dropped.
pub fn spawn(mode: Mode, verbose: bool, rx: Receiver<Event>) -> JoinHandle<Summary> {
    std::thread::spawn(move || {
        let mut r = Renderer::new(mode, verbose);
        let started = Instant::now();
        for event in rx {
            r.handle(event);
        }
        r.finish(started.elapsed());
        r.summary
    })
}

struct Renderer {
    mode: Mode,
    verbose: bool,
    summary: Summary,
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    last_plain_progress: HashMap<String, Instant>,
}

/// `1.5 GiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The columns of the terminal `fd` is (stderr for the progress bars, stdout for a table),
/// if it is one.
pub fn terminal_width(fd: impl std::os::fd::AsFd) -> Option<usize> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: TIOCGWINSZ fills the winsize we pass, and nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// The template of a stage's progress bar for a terminal `width` columns wide: the fixed parts
/// (name, counts, elapsed, eta) and the bar must fit on one line, or the terminal wraps it and
/// every redraw scrolls. The bar takes what is left after the fixed parts and a little room for
/// the message, up to 30 columns; on a narrow terminal it goes (then the eta), and the message
/// (`wide_msg`, which indicatif truncates) gets whatever remains.
pub(crate) fn bar_template(width: usize, prefix: usize, total: u64) -> String {
    let digits = total.to_string().len();
    // "{prefix} " + "{pos}/{len} " + "{elapsed:>4}" (may grow to 7: "59m 59s" is shown as "59m")
    let fixed = prefix + 1 + 2 * digits + 2 + 5;
    const ETA: usize = 9; // " eta 1h 5m" at its usual
    const MSG: usize = 12;
    let room = width.saturating_sub(fixed + ETA + MSG + 4);
    if room >= 10 {
        let bar = room.min(30);
        format!("{{prefix:.bold}} [{{bar:{bar}}}] {{pos}}/{{len}} {{elapsed:>4}} eta {{eta}} {{wide_msg}}")
    } else if width > fixed + ETA {
        "{prefix:.bold} {pos}/{len} {elapsed:>4} eta {eta} {wide_msg}".to_string()
    } else {
        "{prefix:.bold} {pos}/{len} {wide_msg}".to_string()
    }
}

fn reasons_text(reasons: &[DirtyReason]) -> String {
    if reasons.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = reasons.iter().take(3).map(ToString::to_string).collect();
    let more = if reasons.len() > 3 {
        format!(", +{} more", reasons.len() - 3)
    } else {
        String::new()
    };
    format!(" ({}{more})", shown.join(", "))
}

impl Renderer {
    fn new(mode: Mode, verbose: bool) -> Renderer {
        let multi = (mode == Mode::Tty)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Renderer {
            mode,
            verbose,
            summary: Summary::default(),
            multi,
            bars: HashMap::new(),
            last_plain_progress: HashMap::new(),
        }
    }

    fn line(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }

    fn count(&mut self, event: &Event) {
        let s = &mut self.summary;
        match event {
            Event::Fresh { .. } => s.fresh += 1,
            Event::Frozen { .. } => s.frozen += 1,
            Event::Finished { .. } => s.ran += 1,
            Event::Restored { .. } => s.restored += 1,
            Event::Failed { .. } => s.failed += 1,
            Event::Skipped { .. } | Event::NotStarted { .. } => s.skipped += 1,
            Event::Interrupted { .. } => s.interrupted += 1,
            Event::WouldRun { .. } => s.would_run += 1,
            Event::Plan { .. } => s.planned = true,
            _ => {}
        }
    }

    fn handle(&mut self, event: Event) {
        self.count(&event);
        if self.mode == Mode::Json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(&event).expect("events serialize")
            );
            return;
        }
        match event {
            Event::Plan { .. } => {}
            Event::WaitingForLock { holder } => {
                self.line(&format!("waiting  for the project lock, held by {holder}"))
            }
            Event::Fresh { stage } => {
                if self.verbose {
                    self.line(&format!("fresh    {stage}"));
                }
            }
            Event::Frozen { stage } => {
                if self.verbose {
                    self.line(&format!("frozen   {stage}"));
                }
            }
            Event::Started {
                stage,
                reasons,
                gpus,
            } => {
                let gpu = if gpus.is_empty() {
                    String::new()
                } else {
                    format!(
                        " [gpu {}]",
                        gpus.iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                };
                self.line(&format!("running  {stage}{gpu}{}", reasons_text(&reasons)));
                if let Some(m) = &self.multi {
                    let bar = m.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}",
                        )
                        .expect("valid template"),
                    );
                    bar.set_prefix(stage.clone());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bars.insert(stage, bar);
                }
            }
            Event::Progress {
                stage,
                step,
                total,
                message,
            } => {
                if let Some(bar) = self.bars.get(&stage) {
                    if total > 0 {
                        if bar.length() != Some(total) {
                            bar.set_length(total);
                            let width = terminal_width(std::io::stderr()).unwrap_or(80);
                            bar.set_style(
                                ProgressStyle::with_template(&bar_template(
                                    width,
                                    stage.chars().count(),
                                    total,
                                ))
                                .expect("valid template")
                                .progress_chars("=> "),
                            );
                        }
                        bar.set_position(step);
                    }
                    bar.set_message(message);
                } else if self.mode == Mode::Plain {
                    let now = Instant::now();
                    let due = self
                        .last_plain_progress
                        .get(&stage)
                        .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(5));
                    if due {
                        self.last_plain_progress.insert(stage.clone(), now);
                        let of = if total > 0 {
                            format!("{step}/{total}")
                        } else {
                            step.to_string()
                        };
                        self.line(&format!("progress {stage} {of} {message}"));
                    }
                }
            }
            Event::Restored {
                stage,
                reasons,
                deterministic,
            } => {
                let note = if deterministic {
                    ""
                } else {
                    ", non-deterministic stage: not re-verified"
                };
                self.line(&format!(
                    "restored {stage} from the run cache{note}{}",
                    reasons_text(&reasons)
                ));
            }
            Event::Finished { stage, elapsed } => {
                self.clear_bar(&stage);
                self.line(&format!(
                    "done     {stage} in {:.2}s",
                    elapsed.as_secs_f64()
                ));
            }
            Event::Failed { stage, error, log } => {
                self.clear_bar(&stage);
                // The error often ends with the last lines of the stage's log: the log's path
                // goes on a line of its own, not glued onto the stage's last output.
                let log = log
                    .map(|l| format!("\n         log: {}", l.display()))
                    .unwrap_or_default();
                self.line(&format!("failed   {stage}: {}{log}", error.trim_end()));
            }
            Event::Skipped { stage, upstream } => {
                self.line(&format!("skipped  {stage} (upstream {upstream} failed)"));
            }
            Event::NotStarted { stage, failed } => {
                self.line(&format!(
                    "skipped  {stage} (not started after {failed} failed; `-k` runs what does not depend on it)"
                ));
            }
            Event::Interrupted { stage } => {
                self.clear_bar(&stage);
                self.line(&format!("stopped  {stage} (interrupted)"));
            }
            Event::WouldRun {
                stage,
                reasons,
                restore,
            } => {
                let verb = if restore { "restore " } else { "would run" };
                self.line(&format!("{verb} {stage}{}", reasons_text(&reasons)));
            }
            Event::Hashing {
                bytes,
                elapsed,
                done,
            } => self.hashing(bytes, elapsed, done),
            Event::Warning { message } => self.line(&format!("warning: {message}")),
            Event::Transfer {
                remote,
                direction,
                objects,
                total,
                bytes,
                done,
            } => self.transfer(&remote, direction, objects, total, bytes, done),
        }
    }

    fn transfer(
        &mut self,
        remote: &str,
        direction: crate::events::Direction,
        objects: u64,
        total: u64,
        bytes: u64,
        done: bool,
    ) {
        const KEY: &str = "\0transfer";
        let verb = match direction {
            crate::events::Direction::Push => "pushed",
            crate::events::Direction::Pull => "pulled",
        };
        let text = format!(
            "{objects}/{total} objects ({} copied) {} `{remote}`",
            human_bytes(bytes),
            if direction == crate::events::Direction::Push {
                "to"
            } else {
                "from"
            }
        );
        if done {
            self.clear_bar(KEY);
            self.line(&format!("{verb}   {text}"));
        } else if let Some(m) = &self.multi {
            let bar = self.bars.entry(KEY.to_string()).or_insert_with(|| {
                let bar = m.add(ProgressBar::new(total));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            bar.set_length(total);
            bar.set_position(objects);
            bar.set_message(text);
        }
    }

    fn hashing(&mut self, bytes: u64, elapsed: Duration, done: bool) {
        const KEY: &str = "\0hashing";
        let text = format!(
            "{} of inputs in {:.1}s",
            human_bytes(bytes),
            elapsed.as_secs_f64()
        );
        if done {
            self.clear_bar(KEY);
            self.line(&format!("hashed   {text}"));
        } else if let Some(m) = &self.multi {
            let bar = self.bars.entry(KEY.to_string()).or_insert_with(|| {
                let bar = m.add(ProgressBar::new_spinner());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            bar.set_message(format!("hashing {text}"));
        }
    }

    fn clear_bar(&mut self, stage: &str) {
        if let Some(bar) = self.bars.remove(stage) {
            bar.finish_and_clear();
        }
    }

    fn finish(&mut self, elapsed: Duration) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
        // No plan: the run never started (the lock was busy, `repro.lock` unreadable); the
        // error says why, and a summary line would claim there was nothing to do.
        if self.mode == Mode::Json || !self.summary.planned {
            return;
        }
        let s = &self.summary;
        let mut parts = Vec::new();
        for (n, what) in [
            (s.ran, "ran"),
            (s.restored, "restored"),
            (s.would_run, "to run"),
            (s.fresh, "fresh"),
            (s.frozen, "frozen"),
            (s.failed, "failed"),
            (s.skipped, "skipped"),
            (s.interrupted, "interrupted"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if parts.is_empty() {
            parts.push("nothing to do".into());
        }
        self.line(&format!(
            "{} in {:.2}s",
            parts.join(", "),
            elapsed.as_secs_f64()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::bar_template;

    /// The width of the fixed parts of a rendered template at its widest usual values.
    fn fixed_width(template: &str, prefix: usize, total: u64) -> usize {
        let digits = total.to_string().len();
        let bar: usize = template
            .split("{bar:")
            .nth(1)
            .map(|rest| rest.split('}').next().unwrap().parse::<usize>().unwrap() + 3)
            .unwrap_or(0);
        let mut w = prefix + bar + 2 * digits + 2;
        if template.contains("{elapsed") {
            w += 5;
        }
        if template.contains("{eta}") {
            w += 9;
        }
        w
    }

    #[test]
    fn the_bar_fits_the_terminal() {
        for width in [30usize, 40, 50, 60, 80, 120, 200] {
            for prefix in [5usize, 15, 25] {
                let t = bar_template(width, prefix, 6000);
                assert!(
                    fixed_width(&t, prefix, 6000) <= width || !t.contains("{elapsed"),
                    "{width} {prefix}: {t}"
                );
            }
        }
        assert!(bar_template(200, 10, 100).contains("{bar:30}"));
        assert!(!bar_template(50, 15, 6000).contains("{bar:3"));
    }
}
