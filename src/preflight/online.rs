//! `check --online` and `test --all`: reach everything a run would reach, change nothing.
//! Each connector's source is connected (the host key verified, the credentials tried),
//! its folder listed and the file it would take chosen; the platform is discovered and
//! its credentials tried once (one read of /Users). One [`Reached`] per connector, with the
//! exit code a run would end with; the command exits by the worst.

use chrono::Utc;

use crate::config::{Config, Connector};
use crate::exit::{Classify, Exit};
use crate::source::select::{self, Selection};

/// What one connector reached.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reached {
    pub connector: String,
    /// The exit code of the worse of the two steps.
    pub exit: Exit,
    /// The source, and the file a run would take (or why not).
    pub source: Step,
    pub platform: Step,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub ok: bool,
    #[serde(skip)]
    pub exit: Exit,
    /// What was found, or what failed and what to do.
    pub message: String,
}

impl Step {
    fn ok(message: String) -> Step {
        Step { ok: true, exit: Exit::Ok, message }
    }
    fn failed(exit: Exit, message: String) -> Step {
        Step { ok: false, exit, message }
    }
}

/// Every valid connector, sources in parallel (each on a blocking thread: libssh2 blocks),
/// the platform once. Connectors refused by the configuration are not reached: `check`
/// names them.
pub async fn reach(cfg: &Config) -> Vec<Reached> {
    let mut sources = tokio::task::JoinSet::new();
    for c in cfg.connectors.values() {
        let c = c.clone();
        sources.spawn_blocking(move || (c.name.clone(), source(&c)));
    }
    // Each distinct target once, however many connectors send to it.
    let mut targets = tokio::task::JoinSet::new();
    for (t, _) in cfg.targets() {
        targets.spawn(async move { (t.key.clone(), platform(&t).await) });
    }
    let reached: Vec<(String, Step)> = targets.join_all().await;
    let mut by_name = std::collections::BTreeMap::new();
    while let Some(done) = sources.join_next().await {
        if let Ok((name, step)) = done {
            by_name.insert(name, step);
        }
    }
    cfg.connectors
        .keys()
        .map(|name| {
            let source = by_name.remove(name).unwrap_or_else(|| Step::failed(Exit::Other, "the check of the source did not finish".into()));
            let target = cfg.connectors.get(name).and_then(|c| c.target.clone());
            let platform = match target.and_then(|t| reached.iter().find(|(k, _)| *k == t.key)) {
                Some((_, step)) => step.clone(),
                None => match cfg.connector(name).map(|c| cfg.target(c)) {
                    Ok(Err(e)) | Err(e) => Step::failed(e.exit(), e.to_string()),
                    Ok(Ok(_)) => Step::failed(Exit::Other, "the check of the platform did not finish".into()),
                },
            };
            let exit = worst([source.exit, platform.exit]);
            Reached { connector: name.clone(), exit, source, platform }
        })
        .collect()
}

/// The worst of some exit codes: any failure over success, then the higher code.
pub fn worst(codes: impl IntoIterator<Item = Exit>) -> Exit {
    codes.into_iter().max_by_key(|e| e.code()).unwrap_or(Exit::Ok)
}

fn source(c: &Connector) -> Step {
    let mut src = match crate::source::connect(&c.source) {
        Ok(s) => s,
        Err(e) => return Step::failed(e.exit(), crate::redact::redacted(e.to_string())),
    };
    let at = src.describe();
    let files = match src.list(&c.file.path) {
        Ok(f) => f,
        Err(e) => return Step::failed(e.exit(), crate::redact::redacted(format!("{at}: listing {}: {e}", c.file.path))),
    };
    let now = Utc::now();
    match select::select(&files, &c.file, now) {
        Selection::Picked(f) => Step::ok(format!(
            "{at}: would take {} ({} bytes{})",
            f.path,
            crate::text::Numbers::for_stdout().count(f.size),
            select::age(&f, now).map(|a| format!(", {} old", whole_seconds(a))).unwrap_or_default()
        )),
        Selection::TooYoung { youngest } => Step::ok(format!(
            "{at}: {} matches but is younger than min_age ({}); a run now would wait for it",
            youngest.path,
            whole_seconds(c.file.min_age)
        )),
        Selection::NoMatch => Step::failed(
            Exit::Data,
            format!(
                "{at}: connected, but no file matches {}; check [connectors.{}.file] path, or wait for the first export",
                c.file.path, c.name
            ),
        ),
    }
}

async fn platform(t: &crate::config::Target) -> Step {
    let p = &t.platform;
    match crate::platform::scim::ScimClient::connect(p).await {
        Ok(client) => {
            let caps = client.capabilities();
            Step::ok(format!(
                "target {} ({}): credentials accepted ({}, {})",
                t.name,
                p.base_url,
                if caps.bulk.is_some() { "Bulk" } else { "no Bulk" },
                if caps.patch { "PATCH" } else { "no PATCH" }
            ))
        }
        Err(e) => Step::failed(e.exit(), crate::redact::redacted(e.to_string())),
    }
}

/// "2h 3m 4s": whole seconds are all a person reads.
fn whole_seconds(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}
