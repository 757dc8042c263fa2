//! An attribute the platform will not take refuses no row (issue 26): a custom attribute
//! (`hire_date` of the demo mapping, a date) on a real scim2-server without the custom
//! schema is dropped, so a date in another format in its column invalidates nobody and the
//! run says once that it is not sent. The same file on a server that offers the schema
//! refuses those rows, as the values would be sent.

use crate::support;

use support::fault_proxy::{Fault, FaultProxy};
use support::project::{Project, row};
use support::scim::ScimServer;

/// 20 people, every fourth with its hire date in a format the mapping does not read.
fn people() -> Vec<String> {
    (1..=20)
        .map(|i| {
            let r = row(i, &format!("ann{i}@example.com"), true, "Engineering");
            if i % 4 == 0 { r.replace("2021-03-04", "04/03/2021") } else { r }
        })
        .collect()
}

fn sync(scim: &ScimServer) -> (i32, serde_json::Value) {
    let p = Project::new(scim, "");
    p.export("employees_2026-01-01.csv", &people());
    p.sync_json(&[])
}

#[test]
fn a_bad_date_in_a_column_the_platform_drops_invalidates_nobody() {
    let scim = ScimServer::start();
    // Counted: the platform is asked once per run, and not by a run that finds no new file.
    let proxy = FaultProxy::start(scim.port, |_, _, _| Fault::Pass);
    let p = Project::at(&proxy.base_url, &scim.token, "", "");
    p.export("employees_2026-01-01.csv", &people());
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!((r["counts"]["invalid"].as_u64(), r["counts"]["created"].as_u64()), (Some(0), Some(20)), "{r:#}");
    assert!(r["errors"].as_array().is_none_or(Vec::is_empty), "{r:#}");
    let notes: Vec<&str> = r["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
    let dropped: Vec<&&str> = notes.iter().filter(|n| n.contains("does not offer the custom schema")).collect();
    assert_eq!(dropped.len(), 1, "said once: {notes:#?}");
    assert!(dropped[0].contains("hire_date"), "{}", dropped[0]);
    // Everyone is on the platform, and nobody carries the attribute.
    let users = scim.get("/Users?count=100");
    assert_eq!(users["totalResults"], 20, "{users:#}");
    assert!(!users.to_string().contains("hire_date"), "{users:#}");
    let discovered = proxy.seen().iter().filter(|s| s.path.ends_with("/ServiceProviderConfig")).count();
    assert_eq!(discovered, 1, "one discovery serves the run: {:?}", proxy.seen().iter().map(|s| &s.path).collect::<Vec<_>>());
    let before = proxy.seen().len();
    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(proxy.seen().len(), before, "a run that finds no new file asks the platform nothing");
}

#[test]
fn the_same_bad_date_on_a_platform_that_takes_the_attribute_invalidates_its_rows() {
    let scim = ScimServer::start_with_custom_schema(&[]);
    let (code, r) = sync(&scim);
    assert_eq!(r["counts"]["invalid"].as_u64(), Some(5), "exit {code}: {r:#}");
    assert_eq!(r["counts"]["created"].as_u64(), Some(15), "{r:#}");
    let errors = r["errors"].as_array().unwrap();
    assert!(errors.iter().all(|e| e["message"].as_str().unwrap_or_default().contains("04/03/2021")), "{errors:#?}");
}
