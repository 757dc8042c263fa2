//! The notification webhook (`[platform] notify_webhook`): a short JSON message when a
//! scheduled run fails (after its retries), is stopped by a safeguard, or finds the export
//! stale. The message carries the report's one-line reason, which never holds secrets;
//! the webhook URL itself often does (Slack-style tokens in the path), so logs name its
//! host only.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::report::{Report, RunOutcome};

/// How long one POST may take; a slow hook must not hold anything up.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why we are notifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    Failed,
    Stopped,
    Stale,
    /// A connector whose last run was notified (failed, stopped, stale) synced again.
    Recovered,
    /// A run that synced but found what a person must look at: its state lost and rebuilt
    /// from the platform, or accounts it could not place (possibly leavers left active).
    Attention,
}

/// The JSON body posted. `text` makes it readable as-is by Slack/Teams-style hooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub text: String,
    pub event: Event,
    pub connector: String,
    pub customer: String,
    pub run_id: String,
    pub outcome: &'static str,
    pub exit: i32,
    pub attempts: u32,
    pub message: String,
    pub stopped_by: Option<String>,
    /// A stopped run whose plan was kept: the command that applies exactly that plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve_with: Option<String>,
    pub host: String,
    pub at: String,
}

impl Notification {
    /// The notification a finished run calls for, if any.
    pub fn for_run(report: &Report, customer: &str, exit: i32, attempts: u32, at: chrono::DateTime<chrono::Utc>) -> Option<Notification> {
        let event = match report.outcome {
            RunOutcome::Ok | RunOutcome::NoNewFile if report.state_lost || report.unplaced > 0 || report.held > 0 => Event::Attention,
            RunOutcome::Ok | RunOutcome::NoNewFile => return None,
            // The stop was notified when it happened; the slots that wait for its approval
            // are the same problem, not a new one.
            RunOutcome::Stopped if report.failure == Some(crate::report::FailureKind::AwaitingApproval) => return None,
            RunOutcome::Stopped => Event::Stopped,
            RunOutcome::Failed if report.stale => Event::Stale,
            RunOutcome::Failed => Event::Failed,
        };
        let what = match event {
            Event::Failed if attempts > 1 => format!("failed after {attempts} attempts"),
            Event::Failed => "failed".to_string(),
            Event::Stopped => format!(
                "stopped by a safeguard ({})",
                report.stopped_by.as_deref().map(crate::plan::Safeguard::shown_rule).unwrap_or_else(|| "safeguard".into())
            ),
            Event::Stale => "the export is stale".to_string(),
            Event::Recovered => return None,
            Event::Attention => match (report.state_lost, report.unplaced) {
                (false, 0) => format!(
                    "synced, but {} people absent from the file are held (not deactivated): rows of the file have no readable id or share one; fix them in the export",
                    report.held
                ),
                (true, 0) => "synced, but its state was lost and was rebuilt from the platform".to_string(),
                (lost, n) => format!(
                    "synced, but {n} platform account(s) could not be placed (possibly leavers left active{})",
                    if lost { "; its state was lost and was rebuilt from the platform" } else { "" }
                ),
            },
        };
        Some(Notification::new(report, customer, event, what, exit, attempts, at))
    }

    /// The notice that a connector whose last run was notified synced again.
    pub fn recovered(report: &Report, customer: &str, attempts: u32, at: chrono::DateTime<chrono::Utc>) -> Notification {
        Notification::new(report, customer, Event::Recovered, "synced again".to_string(), 0, attempts, at)
    }

    fn new(
        report: &Report,
        customer: &str,
        event: Event,
        what: String,
        exit: i32,
        attempts: u32,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Notification {
        // A kept plan's message names the approving command already (`approve_with` has it
        // alone, for hooks that act on it).
        let message = report.message.clone().unwrap_or_default();
        let text = if message.is_empty() {
            format!("rostersync: {} ({}) {what}", report.connector, customer)
        } else {
            format!("rostersync: {} ({}) {what}: {message}", report.connector, customer)
        };
        Notification {
            text,
            event,
            connector: report.connector.clone(),
            customer: customer.to_string(),
            run_id: report.run_id.clone(),
            outcome: crate::daemon::metrics::outcome_label(report.outcome),
            exit,
            attempts,
            message,
            stopped_by: report.stopped_by.clone(),
            approve_with: report.approve_with.clone(),
            host: crate::sync::hostname(),
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// Where notifications go.
pub trait Notify: Send + Sync + 'static {
    /// Hands the notification over; never blocks the scheduler.
    fn notify(&self, n: Notification);
}

/// Posts to the configured webhook (or nowhere), in the background.
pub struct Webhook {
    url: RwLock<Option<url::Url>>,
    client: reqwest::Client,
}

impl Webhook {
    pub fn new(url: Option<url::Url>) -> Result<Arc<Webhook>, String> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("rostersync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the notification webhook client: {e}"))?;
        Ok(Arc::new(Webhook { url: RwLock::new(url), client }))
    }

    /// A reload may add, change or remove the webhook.
    pub fn set_url(&self, url: Option<url::Url>) {
        *self.url.write().unwrap_or_else(|e| e.into_inner()) = url;
    }

    /// Posts one notification and waits for the answer.
    pub async fn send(&self, n: &Notification) -> Result<(), String> {
        let url = self.url.read().unwrap_or_else(|e| e.into_inner()).clone();
        match url {
            Some(url) => post(&self.client, url, n).await,
            None => Ok(()),
        }
    }
}

async fn post(client: &reqwest::Client, url: url::Url, n: &Notification) -> Result<(), String> {
    let host = url.host_str().unwrap_or("?").to_string();
    let event = serde_json::to_value(n.event).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    match client.post(url).json(n).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "the notification webhook on {host} answered HTTP {} to the {event} notice of {}; check [platform] notify_webhook",
            r.status().as_u16(),
            n.connector
        )),
        // Without the URL: reqwest's error text includes it, and it may hold a token.
        Err(e) => Err(format!(
            "cannot reach the notification webhook on {host} ({}) with the {event} notice of {}; check [platform] notify_webhook",
            if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            },
            n.connector
        )),
    }
}

impl Notify for Webhook {
    fn notify(&self, n: Notification) {
        let Some(url) = self.url.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = post(&client, url, &n).await {
                tracing::warn!(connector = %n.connector, "{e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn report(outcome: RunOutcome, message: &str) -> Report {
        Report {
            outcome,
            stopped_by: (outcome == RunOutcome::Stopped).then(|| "max_deactivations".into()),
            message: Some(message.into()),
            duration_ms: 5,
            ..Report::new("acme", "run-1", false)
        }
    }

    #[test]
    fn picks_the_event_from_the_report() {
        let at = chrono::Utc::now();
        assert!(Notification::for_run(&report(RunOutcome::Ok, ""), "Acme", 0, 1, at).is_none());
        assert!(Notification::for_run(&report(RunOutcome::NoNewFile, ""), "Acme", 0, 1, at).is_none());
        let n = Notification::for_run(&report(RunOutcome::Stopped, "12 deactivations exceed max"), "Acme", 5, 1, at).unwrap();
        assert_eq!(n.event, Event::Stopped);
        assert!(n.text.contains("stopped by a safeguard (max_deactivations)"), "{}", n.text);
        // Stale is the report's typed flag, whatever the message says.
        let stale = Report { stale: true, ..report(RunOutcome::Failed, "no new file for 9days") };
        let n = Notification::for_run(&stale, "Acme", 4, 1, at).unwrap();
        assert_eq!(n.event, Event::Stale);
        let n = Notification::for_run(&report(RunOutcome::Failed, "the export is stale (in words only)"), "Acme", 4, 1, at).unwrap();
        assert_eq!(n.event, Event::Failed);
        let n = Notification::for_run(&report(RunOutcome::Failed, "connection refused"), "Acme", 3, 4, at).unwrap();
        assert_eq!(n.event, Event::Failed);
        assert_eq!(n.text, "rostersync: acme (Acme) failed after 4 attempts: connection refused");
    }

    #[test]
    fn a_lost_state_or_unplaced_accounts_call_for_attention_though_the_run_synced() {
        let at = chrono::Utc::now();
        let lost = Report { state_lost: true, unplaced: 3, ..report(RunOutcome::Ok, "3 accounts left active") };
        let n = Notification::for_run(&lost, "Acme", 0, 1, at).unwrap();
        assert_eq!(n.event, Event::Attention);
        assert_eq!(serde_json::to_value(&n).unwrap()["event"], "attention");
        assert!(n.text.contains("3 platform account(s) could not be placed") && n.text.contains("state was lost"), "{}", n.text);
        let rebuilt = Report { state_lost: true, ..report(RunOutcome::Ok, "") };
        assert!(Notification::for_run(&rebuilt, "Acme", 0, 1, at).unwrap().text.contains("rebuilt from the platform"));
        // Leavers held back by rows that cannot be told apart, run after run.
        let held = Report { held: 4, ..report(RunOutcome::Ok, "") };
        let n = Notification::for_run(&held, "Acme", 0, 1, at).unwrap();
        assert!(n.event == Event::Attention && n.text.contains("4 people absent from the file are held"), "{}", n.text);
        // Typed flags, not words: a message that only says "lost" is a plain ok run.
        assert!(Notification::for_run(&report(RunOutcome::Ok, "state lost"), "Acme", 0, 1, at).is_none());
    }

    #[test]
    fn a_kept_plan_names_its_command_and_a_recovery_is_its_own_event() {
        let at = chrono::Utc::now();
        let stopped = Report { approve_with: Some("rostersync approve run-1 --reason \"…\"".into()), ..report(RunOutcome::Stopped, "x") };
        let n = Notification::for_run(&stopped, "Acme", 5, 1, at).unwrap();
        assert_eq!(n.approve_with.as_deref(), Some("rostersync approve run-1 --reason \"…\""));
        assert_eq!(serde_json::to_value(&n).unwrap()["approve_with"], "rostersync approve run-1 --reason \"…\"");
        let ok = Report { message: None, ..report(RunOutcome::Ok, "") };
        let n = Notification::recovered(&ok, "Acme", 1, at);
        assert_eq!(n.event, Event::Recovered);
        assert_eq!(serde_json::to_value(&n).unwrap()["event"], "recovered");
        assert_eq!(n.text, "rostersync: acme (Acme) synced again");
        assert_eq!(n.exit, 0);
    }

    /// A one-shot HTTP listener: returns the request it got, answers `status`.
    async fn one_request(status: u16) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers, then Content-Length bytes of body.
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf).to_string()
        });
        (format!("http://{addr}/hooks/T0SECRET/B0SECRET"), h)
    }

    #[tokio::test]
    async fn posts_json_to_the_webhook() {
        let (url, server) = one_request(200).await;
        let hook = Webhook::new(Some(url.parse().unwrap())).unwrap();
        let n = Notification::for_run(&report(RunOutcome::Stopped, "too many deactivations"), "Acme", 5, 1, chrono::Utc::now()).unwrap();
        hook.send(&n).await.unwrap();
        let req = server.await.unwrap();
        assert!(req.starts_with("POST /hooks/T0SECRET/B0SECRET HTTP/1.1"), "{req}");
        assert!(req.to_ascii_lowercase().contains("content-type: application/json"), "{req}");
        let body: serde_json::Value = serde_json::from_str(&req[req.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        assert_eq!(body["event"], "stopped");
        assert_eq!(body["connector"], "acme");
        assert_eq!(body["stopped_by"], "max_deactivations");
        assert_eq!(body["exit"], 5);
    }

    #[tokio::test]
    async fn a_failing_webhook_is_reported_without_its_url() {
        let (url, server) = one_request(500).await;
        let hook = Webhook::new(Some(url.parse().unwrap())).unwrap();
        let n = Notification::for_run(&report(RunOutcome::Failed, "boom"), "Acme", 6, 1, chrono::Utc::now()).unwrap();
        let err = hook.send(&n).await.unwrap_err();
        server.await.unwrap();
        assert!(err.contains("HTTP 500"), "{err}");
        assert!(!err.contains("SECRET"), "the webhook path may hold a token: {err}");

        // Nobody listening: a connection error, still without the URL.
        let hook = Webhook::new(Some(format!("http://127.0.0.1:{}/hooks/T0SECRET", free_port()).parse().unwrap())).unwrap();
        let err = hook.send(&n).await.unwrap_err();
        assert!(err.contains("cannot reach the notification webhook"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}
