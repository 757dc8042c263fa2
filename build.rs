// `sqlx::migrate!` embeds migrations/ at build time: rebuild when a migration is added or
// changed, not only when src/state/sqlite.rs is touched.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
