//! Progress bars on a terminal (stderr); nothing when stderr is piped or with --json.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};

use crate::sync::{Progress, Stage};

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

/// A progress display when a human is watching, else None.
pub fn for_terminal(json: bool) -> Option<Arc<dyn Progress>> {
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    Some(Arc::new(Bars { bar: Mutex::new(None) }))
}

impl Progress for Bars {
    fn stage(&self, stage: Stage, total: Option<u64>) {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        let (template, name) = match stage {
            Stage::Download(file) => {
                ("{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}", format!("download {}", super::term::shown(&file)))
            }
            Stage::Push => ("{msg:30} [{bar:30}] {pos}/{len} ops eta {eta}", "push".to_string()),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name);
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }
    fn advance(&self, done: u64) {
        if let Ok(b) = self.bar.lock()
            && let Some(bar) = b.as_ref()
        {
            bar.set_position(done);
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock()
            && let Some(bar) = b.take()
        {
            bar.finish_and_clear();
        }
    }
}
