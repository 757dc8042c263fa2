//! `check --online` and `test --all`: reach everything a run would reach, change nothing.
//! Each connector's source is connected (the host key verified, the credentials tried),
//! its folder listed and the file it would take chosen; that file's header is read and the
//! mapping's columns looked for in it; the platform is discovered and its credentials tried
//! once (one read of /Users). A connector whose mapping is not written yet (or refused) is
//! reached too: its source and platform are what a new customer's set-up checks first, and
//! the header is what its mapping is written from. One [`Reached`] per connector, with the
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
    /// The mapping's columns against the header of the file the source would take; None
    /// when there is no file to read.
    pub columns: Option<Step>,
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

/// Every connector the configuration lets run, and those refused only for their mapping:
/// sources in parallel (each on a blocking thread: libssh2 blocks), the platform once.
/// Connectors refused for anything else are not reached: `check` names them.
pub async fn reach(cfg: &Config) -> Vec<Reached> {
    let mut sources = tokio::task::JoinSet::new();
    for (c, mapped) in cfg.connectors.values().map(|c| (c.as_ref(), true)).chain(cfg.unmapped.values().map(|c| (c, false))) {
        let c = c.clone();
        sources.spawn(async move {
            let conn = c.clone();
            let source = tokio::task::spawn_blocking(move || source(&conn))
                .await
                .unwrap_or_else(|_| Step::failed(Exit::Other, "the check of the source did not finish".into()));
            let columns = if source.ok { Some(columns(&c, mapped).await) } else { None };
            (c.name.clone(), source, columns)
        });
    }
    // Each distinct target once, however many connectors send to it.
    let mut targets = tokio::task::JoinSet::new();
    // The valid connectors' targets, and those of connectors refused only for their mapping.
    let mut distinct: Vec<std::sync::Arc<crate::config::Target>> = cfg.targets().into_iter().map(|(t, _)| t).collect();
    for t in cfg.unmapped.values().filter_map(|c| c.target.clone()) {
        if !distinct.iter().any(|d| d.key == t.key) {
            distinct.push(t);
        }
    }
    for t in distinct {
        targets.spawn(async move { (t.key.clone(), platform(&t).await) });
    }
    let reached: Vec<(String, Step)> = targets.join_all().await;
    let mut by_name = std::collections::BTreeMap::new();
    while let Some(done) = sources.join_next().await {
        if let Ok((name, source, columns)) = done {
            by_name.insert(name, (source, columns));
        }
    }
    cfg.connectors
        .keys()
        .chain(cfg.unmapped.keys())
        .map(|name| {
            let (source, columns) =
                by_name.remove(name).unwrap_or_else(|| (Step::failed(Exit::Other, "the check of the source did not finish".into()), None));
            let conn = cfg.connectors.get(name).map(|c| c.as_ref()).or_else(|| cfg.unmapped.get(name));
            let target = conn.and_then(|c| c.target.clone());
            let platform = match target.and_then(|t| reached.iter().find(|(k, _)| *k == t.key)) {
                Some((_, step)) => step.clone(),
                None => match conn.map(|c| cfg.target(c)) {
                    Some(Err(e)) => Step::failed(e.exit(), e.to_string()),
                    _ => Step::failed(Exit::Other, "the check of the platform did not finish".into()),
                },
            };
            let exit = worst([source.exit, platform.exit].into_iter().chain(columns.as_ref().map(|c| c.exit)));
            Reached { connector: name.clone(), exit, source, columns, platform }
        })
        .collect()
}

/// The file the source would take, its header read and the mapping's columns looked for
/// in it: a mapping whose columns are not in the real export is caught here, before the
/// first run refuses the file.
async fn columns(c: &Connector, mapped: bool) -> Step {
    let got = match crate::sync::download(c).await {
        Ok(Some(d)) => d,
        // Too young, or nothing new: the source step has said which.
        Ok(None) => return Step::ok("no file to read the header of right now".into()),
        Err(e) => return Step::failed(e.exit(), crate::redact::redacted(e.to_string())),
    };
    let (conn, path, name) = (c.clone(), got.path.clone(), got.name.clone());
    let read = tokio::task::spawn_blocking(move || {
        let format = match conn.file.format {
            Some(f) => f,
            None => crate::format::detect(&path, &name)?,
        };
        // The bounds of a run: `[file] max_size` also bounds what a compressed export inflates to.
        let mut opts = conn.mapping.source.clone();
        opts.limits.max_size = conn.file.max_size;
        if mapped {
            crate::format::open(&path, &name, format, &opts, &conn.mapping.columns()).map(|_| None)
        } else {
            crate::format::headers(&path, &name, format, &opts).map(Some)
        }
    })
    .await;
    drop(got);
    match read {
        Ok(Ok(None)) => Step::ok(format!("the mapping's {} column(s) are in its header", c.mapping.columns().len())),
        Ok(Ok(Some(header))) => Step::failed(
            Exit::Config,
            format!(
                "no mapping to read it with yet ({}): its header has {} column(s); `rostersync mapping suggest` drafts a mapping from a sample (`rostersync fetch {}`)",
                c.mapping_path.display(),
                header.len(),
                c.name
            ),
        ),
        Ok(Err(e)) => Step::failed(e.exit(), crate::redact::redacted(e.to_string())),
        Err(_) => Step::failed(Exit::Other, "the check of the header did not finish".into()),
    }
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
