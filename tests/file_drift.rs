//! A file compared with the last good one before anything is planned (issue 24): a column
//! that was filled for nearly everyone and arrives empty, or a date column whose every date
//! changed, stops the run naming the column in the customer's terms; and rows at the end of
//! the file that are a footer ("Total: 99"), not people, are skipped so leavers proceed.
//! Each case runs after a clean baseline of 100 people against the real scim2-server, under
//! the default limits.

use crate::support;

use std::collections::BTreeMap;

use support::project::{Project, row, rows};
use support::scim::ScimServer;

const PEOPLE: u32 = 100;

/// Per externalId: userName, email, active.
fn platform(scim: &ScimServer) -> BTreeMap<String, (String, String, bool)> {
    scim.users()
        .into_iter()
        .map(|u| {
            let email = u["emails"][0]["value"].as_str().unwrap_or_default().to_string();
            let ext = u["externalId"].as_str().unwrap_or_default().to_string();
            (ext, (u["userName"].as_str().unwrap_or_default().to_string(), email, u["active"] == true))
        })
        .collect()
}

fn baseline(scim: &ScimServer) -> Project {
    let p = Project::new(scim, "");
    p.export("employees_2026-01-01.csv", &rows(PEOPLE));
    let (code, r) = p.sync_json(&[]);
    assert_eq!((code, &r["counts"]["created"]), (0, &serde_json::json!(PEOPLE)), "{r}");
    p
}

/// Syncs `lines` as the newest export: it must stop as `column_drift`, exit 5, nothing
/// pushed, the message saying each of `said`; returns the stopped run's id.
fn stops_on_column_drift(scim: &ScimServer, p: &Project, name: &str, lines: &[String], said: &[&str]) -> String {
    let before = platform(scim);
    p.export(name, lines);
    let (code, r) = p.sync_json(&[]);
    assert_eq!((code, r["stopped_by"].as_str()), (5, Some("column_drift")), "{r}");
    let message = r["message"].as_str().unwrap_or_default();
    for s in said {
        assert!(message.contains(s), "missing «{s}» in: {message}");
    }
    assert!(message.contains("--allow-mass-change"), "{message}");
    assert_eq!(platform(scim), before, "nothing was pushed");
    let run = r["run_id"].as_str().unwrap().to_string();
    let shown = p.run(&["plan", "show", &run]);
    assert!(shown.status.success(), "the stopped plan is kept: {}", String::from_utf8_lossy(&shown.stderr));
    run
}

/// The Email column arrives empty (an HRIS field permission): the stop names the column as
/// the customer's header does, with the last good file's figures; once approved, the emptied
/// column is the new normal and the next file syncs.
#[test]
fn an_emptied_email_column_stops_naming_it_and_is_approved_once() {
    let scim = ScimServer::start();
    let p = baseline(&scim);
    let today = chrono::Utc::now().date_naive().to_string();
    let empty: Vec<String> = (1..=PEOPLE).map(|i| row(i, "", true, "Engineering")).collect();
    let said = format!("column \"Email\" was filled for 100 % of 100 rows in the last good file ({today}), 0 % now (0 of 100 rows)");
    let run = stops_on_column_drift(&scim, &p, "employees_2026-01-02.csv", &empty, &[&said]);

    let out = p.run(&["approve", &run, "--reason", "HR removed the work emails on purpose"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(platform(&scim).values().all(|(login, email, _)| login.starts_with('E') && email.is_empty()), "the plan was applied");

    // The next file, still without emails, compares with the approved one: no stop.
    let mut next = empty.clone();
    next[0] = row(1, "", true, "Sales");
    p.export("employees_2026-01-03.csv", &next);
    let (code, r) = p.sync_json(&[]);
    assert_eq!((code, &r["counts"]["updated"]), (0, &serde_json::json!(1)), "{r}");
}

/// A column nearly emptied (3 of 100 left) is a drift too, and `--allow-mass-change
/// --reason` lets it through like any safeguard; a column half emptied is the change
/// budget's (max_blanked), not a drift.
#[test]
fn a_nearly_emptied_column_stops_and_a_half_emptied_one_is_the_budgets() {
    let scim = ScimServer::start();
    let p = baseline(&scim);
    let dept = |keep: u32| -> Vec<String> {
        (1..=PEOPLE).map(|i| row(i, &format!("ann{i}@example.com"), true, if i <= keep { "Engineering" } else { "" })).collect()
    };
    stops_on_column_drift(&scim, &p, "employees_2026-01-02.csv", &dept(3), &["column \"Department\"", "3 % now (3 of 100 rows)"]);

    p.export("employees_2026-01-03.csv", &dept(50));
    let (code, r) = p.sync_json(&[]);
    assert_eq!((code, r["stopped_by"].as_str()), (5, Some("max_blanked")), "{r}");

    let (code, r) = p.sync_json(&["--allow-mass-change", "--reason", "departments are being rebuilt"]);
    assert_eq!((code, &r["counts"]["updated"]), (0, &serde_json::json!(50)), "{r}");
}

/// Every hire date read with day and month exchanged: the stop names the date column and
/// says how every date changed.
#[test]
fn every_date_day_month_swapped_stops_naming_the_date_column() {
    let scim = ScimServer::start();
    let p = baseline(&scim);
    let swapped: Vec<String> = rows(PEOPLE).into_iter().map(|l| l.replacen("2021-03-04", "2021-04-03", 1)).collect();
    stops_on_column_drift(
        &scim,
        &p,
        "employees_2026-01-02.csv",
        &swapped,
        &[
            "every date of column \"Hire Date\" changed at once: 100 of the 100 people who had one",
            "each with day and month exchanged",
            "\"2021-03-04\" → \"2021-04-03\"",
            "attributes.hire_date.date",
        ],
    );
}

/// The last good file's profile, on both state backends: none at first, recorded, replaced,
/// per connector.
async fn profiles_round_trip(state: rostersync::config::State) {
    use rostersync::mapping::fill::ColumnFill;
    use rostersync::state::FileProfile;
    use rostersync::state::prelude::*;
    let store = rostersync::state::open(&state).await.unwrap();
    assert_eq!(store.file_profile("acme").await.unwrap(), None);
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T06:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let profile = |rows: u64, email: u64| FileProfile {
        fill: ColumnFill { rows, filled: [("Email".to_string(), email), ("Personnel \"Number\"".to_string(), rows)].into() },
        synced_at: at,
    };
    store.set_file_profile("acme", &profile(100, 100)).await.unwrap();
    store.set_file_profile("other", &profile(7, 1)).await.unwrap();
    store.set_file_profile("acme", &profile(120, 3)).await.unwrap();
    assert_eq!(store.file_profile("acme").await.unwrap(), Some(profile(120, 3)));
    assert_eq!(store.file_profile("other").await.unwrap(), Some(profile(7, 1)));
}

fn state_at(url: String, password: Option<rostersync::config::StatePassword>) -> rostersync::config::State {
    rostersync::config::State {
        url,
        password,
        ca_file: None,
        lease_ttl: rostersync::config::DEFAULT_LEASE_TTL,
        audit_retention: rostersync::config::DEFAULT_AUDIT_RETENTION,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_kept_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    profiles_round_trip(state_at(format!("sqlite://{}/state.db", dir.path().display()), None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_kept_on_postgres() {
    let pg = support::postgres::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pgpass");
    std::fs::write(&pw, support::postgres::PASSWORD).unwrap();
    profiles_round_trip(state_at(pg.create_db("rostersync"), Some(rostersync::config::StatePassword::File(pw)))).await;
}

/// A report's footer ("Total: 99", a generated-by line) after the rows is no person: it is
/// skipped with a notice, and the leaver of the file is deactivated (a footer read as an
/// unreadable row used to hold every leaver, run after run, while the run said `ok`).
#[test]
fn a_footer_after_the_rows_is_skipped_and_the_leaver_proceeds() {
    let scim = ScimServer::start();
    let p = baseline(&scim);
    let mut lines = rows(PEOPLE - 1);
    lines.push("Total: 99".into());
    lines.push("Generated 2026-12-01 by Workday,".into());
    p.export("employees_2026-01-02.csv", &lines);
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((&r["counts"]["rows"], &r["counts"]["invalid"], &r["counts"]["deactivated"]), (&99.into(), &0.into(), &1.into()), "{r}");
    assert_eq!(r["held"], serde_json::Value::Null, "nobody held: {r}");
    let notes = r["notes"].to_string();
    assert!(notes.contains(r#"line 101: \"Total: 99\" is a footer"#), "{notes}");
    assert!(notes.contains(r#"line 102: \"Generated 2026-12-01 by Workday\" is a footer"#), "{notes}");
    let after = platform(&scim);
    assert!(!after["E0000100"].2, "the leaver is deactivated");
    assert_eq!(after.values().filter(|(_, _, active)| *active).count(), 99);
}

/// A row whose person cannot be told (no id) still holds the leavers, and the run says so:
/// `held` in the report and HELD in the summary, not a plain `ok`.
#[test]
fn leavers_held_by_a_row_without_an_id_are_said_held() {
    let scim = ScimServer::start();
    let p = baseline(&scim);
    let mut lines = rows(PEOPLE - 2);
    // Person 99's row lost its id; 100 left.
    lines.push(row(99, "ann99@example.com", true, "Engineering").replacen("E0000099", "", 1));
    p.export("employees_2026-01-02.csv", &lines);
    let (code, r) = p.sync_json(&["--dry-run"]);
    assert_eq!((code, &r["held"], &r["counts"]["deactivated"]), (0, &2.into(), &0.into()), "{r}");
    let out = p.run(&["sync", "acme"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("acme: ok, 2 absent people HELD (see notes)"), "{stdout}");
    assert!(platform(&scim).values().all(|(_, _, active)| *active), "nobody deactivated");
}

/// A JSON export whose `Email` values arrive as null stops as an emptied column; one whose
/// `Email` key disappeared from every record is refused as a missing column (`missing_column`).
/// Either way nothing is pushed.
#[test]
fn a_json_export_whose_emails_are_null_or_gone_changes_nobody() {
    let scim = ScimServer::start();
    let p = Project::new(&scim, "");
    let cfg = p.path().join("connectors.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("path = \"employees_*.csv\"", "path = \"employees_*.json\"", 1);
    std::fs::write(&cfg, text).unwrap();
    let header: Vec<&str> = support::project::HEADER.split(',').collect();
    // `email`: Some(true) as written, Some(false) null, None the key left out.
    let json = |email: Option<bool>| -> String {
        let records: Vec<serde_json::Value> = rows(PEOPLE)
            .iter()
            .map(|r| {
                let obj: serde_json::Map<String, serde_json::Value> = header
                    .iter()
                    .zip(r.split(','))
                    .filter(|(h, _)| email.is_some() || **h != "Email")
                    .map(|(h, v)| {
                        let v = if *h == "Email" && email == Some(false) { serde_json::Value::Null } else { v.into() };
                        (h.to_string(), v)
                    })
                    .collect();
                serde_json::Value::Object(obj)
            })
            .collect();
        serde_json::to_string(&records).unwrap()
    };
    std::fs::write(p.path().join("exports/employees_2026-01-01.json"), json(Some(true))).unwrap();
    let (code, r) = p.sync_json(&[]);
    assert_eq!((code, &r["counts"]["created"]), (0, &serde_json::json!(PEOPLE)), "{r}");
    let before = platform(&scim);
    for (name, email, exit, rule, said) in [
        ("employees_2026-01-02.json", Some(false), 5, "column_drift", "column \"Email\" was filled for 100 % of 100 rows"),
        ("employees_2026-01-03.json", None, 4, "missing_column", "mapped column(s) \"Email\" not in the header"),
    ] {
        std::fs::write(p.path().join("exports").join(name), json(email)).unwrap();
        let (code, r) = p.sync_json(&[]);
        assert_eq!((code, r["stopped_by"].as_str()), (exit, Some(rule)), "{r}");
        let message = r["message"].as_str().unwrap_or_default();
        assert!(message.contains(said), "{message}");
        assert_eq!(platform(&scim), before, "nothing was pushed");
    }
}
