//! What is sent follows the schemas the server defines (`/Schemas`), end to end against the
//! real scim2-server serving the test schemas (the custom extension defines hire_date,
//! location and badge): a mapped attribute its schema lacks is not sent, and the run says
//! so once, naming it; the attributes it defines arrive as before.

use crate::support;

use serde_json::Value;
use support::fault_proxy::{Fault, FaultProxy};
use support::project::{Project, rows};
use support::scim::ScimServer;

const CUSTOM: &str = "urn:ietf:params:scim:schemas:extension:rostersync:2.0:User";

/// A project sending to `base_url` with the custom schema, whose mapping adds `desk_line`
/// (an attribute of the custom extension, which the test schemas do not define).
fn with_desk(base_url: &str, token: &str, desk_line: &str) -> Project {
    let p = Project::at(&format!("{base_url}/"), token, "", "");
    let edit = |file: &str, from: &str, to: &str| {
        let path = p.path().join(file);
        std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace(from, to)).unwrap();
    };
    edit("mappings/demo.toml", "location    = \"Location\"", &format!("location    = \"Location\"\n{desk_line}"));
    edit("connectors.toml", "bulk = \"off\"", &format!("bulk = \"off\"\ncustom_schema = \"{CUSTOM}\""));
    p
}

#[test]
fn an_attribute_the_schemas_do_not_define_is_left_out_and_named_once() {
    let scim = ScimServer::start_with_custom_schema(&[]);
    let proxy = FaultProxy::start(scim.port, |_, _, _| Fault::Pass);
    // `desk` goes to the custom extension, which does not define it.
    let p = with_desk(&proxy.base_url, &scim.token, "desk = \"Location\"");
    p.export("employees_2026-01-01.csv", &rows(3));

    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["counts"]["created"], 3, "{r}");
    let notes: Vec<&str> =
        r["notes"].as_array().into_iter().flatten().filter_map(Value::as_str).filter(|n| n.contains("/Schemas")).collect();
    assert_eq!(notes.len(), 1, "said once: {r}");
    assert!(
        notes[0].contains("desk") && !notes[0].contains("location") && !notes[0].contains("hire_date"),
        "names only desk: {}",
        notes[0]
    );

    let posts: Vec<String> = proxy
        .seen()
        .iter()
        .filter(|s| s.method == "POST" && s.path.ends_with("/Users"))
        .map(|s| String::from_utf8_lossy(&s.body).to_string())
        .collect();
    assert_eq!(posts.len(), 3);
    assert!(posts.iter().all(|b| !b.contains("\"desk\"")), "never sent: {posts:?}");
    for u in scim.users() {
        assert_eq!(u[CUSTOM]["location"], "Paris", "a defined custom attribute arrives: {u}");
        assert!(u[CUSTOM].get("desk").is_none(), "{u}");
    }
}

/// A value of an attribute the platform's /Schemas leaves out never refuses its row: it is not
/// sent, so a date in another format than the mapping's is no reason to keep the person out.
#[test]
fn a_bad_date_in_an_attribute_the_schemas_do_not_define_invalidates_nobody() {
    let scim = ScimServer::start_with_custom_schema(&[]);
    // `desk` goes to the custom extension, which does not define it; "Engineer" is no date.
    let p = with_desk(&scim.base_url, &scim.token, "desk = { column = \"Job Title\", date = \"%d.%m.%Y\" }");
    p.export("employees_2026-01-01.csv", &rows(4));

    let (code, r) = p.sync_json(&[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!((r["counts"]["created"].as_u64(), r["counts"]["invalid"].as_u64()), (Some(4), Some(0)), "{r}");
    assert_eq!(scim.users().len(), 4);
    for u in scim.users() {
        assert!(u[CUSTOM].get("desk").is_none(), "{u}");
    }
}
