//! The command line: one file per command. A command returns `cli::Result`: any module
//! error converts into its `Failure` with `?`, classified there by its own `Classify`, so
//! the exit code travels with the error and `main` picks no code by looking inside it.

mod approve;
mod check;
mod completions;
mod daemon;
mod explain;
mod history;
mod inspect;
mod keyscan;
mod mapping_suggest;
mod pgp_key;
mod progress;
mod sync;
pub(crate) mod term;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::exit::{Classify, Exit};

#[derive(Parser, Debug)]
#[command(
    name = "rostersync",
    version = crate::build_info::LONG_VERSION,
    about = "Keeps a platform's users in step with customers' HR exports (SFTP → SCIM 2.0)",
    after_help = "Examples:\n  rostersync check --online              every connector's files, environment, SFTP server and platform\n  rostersync keyscan sftp.acme.example   the host_key line to pin\n  rostersync fetch acme --to samples/    the file acme would take, to draft a mapping from\n  rostersync sync acme --dry-run         what a sync would change, pushing nothing\n  rostersync daemon                      run every schedule until stopped\n\nEnvironment: ROSTERSYNC_CONFIG for --config; RUST_LOG for the log filter.\nExit codes: 0 ok, 1 other, 2 configuration, 3 connection, 4 data, 5 stopped by a safeguard, 6 platform."
)]
pub struct Cli {
    /// The connectors file (default ./connectors.toml). Relative paths inside it are
    /// relative to its folder.
    #[arg(long, global = true, value_name = "PATH", env = "ROSTERSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print one JSON object on stdout and nothing else there (logs go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// More logs (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate all configuration (connectors and mappings) and the environment it runs in;
    /// no network unless --online.
    #[command(after_help = "Checks, without --no-environment: every variable a connector names is set, every key and secret file \
exists and can be read, key files are private keys that only their owner may read, known_hosts files can be read and know the \
host, hosts are well formed.\n\nExamples:\n  rostersync check\n  rostersync check --no-environment   on a machine other than the one that runs syncs\n  rostersync check --online --json")]
    Check {
        /// Check only the files, not the variables, key files and known_hosts they name.
        #[arg(long)]
        no_environment: bool,
        /// Also connect to every SFTP server (host key verified), list the file each
        /// connector would take, and reach the platform (discovery, credentials). One line
        /// per connector; the exit code is the worst connector's.
        #[arg(long)]
        online: bool,
    },
    /// Print a server's host key fingerprint, to pin as host_key.
    #[command(after_help = "Examples:\n  rostersync keyscan sftp.acme.example\n  rostersync keyscan 10.0.0.5:2222 --json")]
    Keyscan {
        /// HOST or HOST:PORT
        target: String,
    },
    /// Print our OpenPGP public key (the connector's decrypt_key) for the customer to encrypt exports to.
    #[command(after_help = "Examples:\n  rostersync pgp-key acme > acme-rostersync.pub.asc\n  rostersync pgp-key acme --json")]
    PgpKey { connector: String },
    /// Connect, pick the file, parse, map, validate; show a preview and the plan. Push nothing.
    /// With --all: what `check --online` does, for every connector.
    #[command(after_help = "Examples:\n  rostersync test acme\n  rostersync test --all")]
    Test {
        #[arg(required_unless_present = "all")]
        connector: Option<String>,
        /// Every connector: connect, list the file it would take, reach the platform.
        #[arg(long, conflicts_with = "connector")]
        all: bool,
        /// Write the plan, person by person, to this CSV file.
        #[arg(long, value_name = "FILE.csv", conflicts_with = "all")]
        plan_out: Option<PathBuf>,
    },
    /// Download the file the connector would pick; nothing else. Works before the
    /// connector's mapping exists, to get a sample for `mapping suggest`.
    #[command(
        after_help = "Examples:\n  rostersync fetch acme --to samples/\n  rostersync mapping suggest samples/employees_2026-01-01.csv > mappings/acme.toml"
    )]
    Fetch {
        connector: String,
        /// Folder to write it to (default: the current folder).
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
    },
    /// Sync one connector (or --all).
    #[command(after_help = "With --json, one JSON document on stdout: the run's report for one connector; for --all, \
{\"runs\": [report, …], \"skipped\": [problem, …], \"exit\": N}.\n\nExamples:\n  rostersync sync acme --dry-run\n  rostersync sync acme --file exports/employees.csv\n  rostersync sync --all --json")]
    Sync {
        connector: Option<String>,
        /// Every valid connector, one after the other.
        #[arg(long, conflicts_with = "connector")]
        all: bool,
        /// Plan and report; push nothing.
        #[arg(long)]
        dry_run: bool,
        /// Sync this local file instead of fetching from the source.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Apply the plan even when a safeguard would stop it.
        #[arg(long)]
        allow_mass_change: bool,
        /// Sync even when the file was already synced.
        #[arg(long)]
        force: bool,
        /// Plan and push just these people (unique ids, comma-separated); the file still
        /// decides what they should be. The file is not recorded as synced.
        #[arg(long, value_name = "ID[,ID…]", value_delimiter = ',', conflicts_with = "all")]
        only: Option<Vec<String>>,
        /// With --only: people absent from the file get on_missing (deactivate, delete).
        #[arg(long, requires = "only")]
        allow_absent: bool,
        /// Why the safeguards may be passed (required with --allow-mass-change); kept in
        /// the history and the run's report.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Write the plan, person by person, to this CSV file.
        #[arg(long, value_name = "FILE.csv")]
        plan_out: Option<PathBuf>,
        /// List every platform account and repair drift for this connector's people:
        /// accounts deleted or edited by hand, a lost or new state DB (safeguards apply).
        #[arg(long)]
        reconcile: bool,
    },
    /// Why a person is (or will be) as they are: their row, the user it maps to, the state,
    /// the plan's decision, the last operations sent.
    Explain { connector: String, id: String },
    /// Plans kept by runs a safeguard stopped.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Apply exactly the plan of a stopped run, if the file and state are still the same.
    Approve {
        run_id: String,
        /// Why (kept in the history and the run's report, with the OS user and the time).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Run the schedules until stopped.
    Daemon,
    /// Mapping helpers.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Past runs from the state store.
    #[command(after_help = "Examples:\n  rostersync history\n  rostersync history acme --limit 5 --json")]
    History {
        connector: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// One person's audit trail: every operation sent for them.
        #[arg(long, value_name = "ID")]
        person: Option<String>,
    },
    /// Each connector: last run, outcome, next scheduled run.
    Status,
    /// Print a shell completion script (`rostersync completions bash > /etc/bash_completion.d/rostersync`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, generated from these commands (`rostersync man > rostersync.1`).
    Man,
}

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Print a stopped run's plan, person by person.
    Show { run_id: String },
}

#[derive(Subcommand, Debug)]
pub enum MappingCommand {
    /// Print a draft mapping for a sample export.
    Suggest { file: PathBuf },
}

/// Parses arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_logging(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Other.code();
        }
    };
    match rt.block_on(dispatch(&cli)) {
        Ok(code) => code,
        Err(e) => {
            let exit = e.exit;
            if cli.json {
                let v = serde_json::json!({"error": format!("{e:#}"), "exit": exit.code()});
                println!("{v}");
            }
            eprintln!("error: {}", term::shown_lines(&format!("{e:#}")));
            exit.code()
        }
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("rostersync={default},warn")));
    // A second initialisation (tests calling `main` twice) keeps the first.
    let _ = match cli.log_format {
        // One flat object a line: the event's fields and those of every span it is in
        // (connector, run_id), each once, the innermost value winning; a log collector
        // indexes `connector` without digging through a span list.
        LogFormat::Json => {
            tracing_subscriber::registry().with(filter).with(tracing_flat_json::FlatJsonLayer::new(std::io::stderr)).try_init().is_ok()
        }
        LogFormat::Human => {
            // Colours only for a terminal (and not under NO_COLOR): piped into a file or
            // a log collector, they are escapes in the text (and a test could not tell
            // them from a file name's).
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_ansi(ansi)
                .compact()
                .try_init()
                .is_ok()
        }
    };
}

/// What a command returns: its exit code, or the failure that ended it.
pub type Result<T> = std::result::Result<T, Failure>;

/// An error that ended a command, with the exit code it was classified with where it
/// arose (`From` any `Classify` error). Shown as the error shows itself, with its sources.
#[derive(Debug)]
pub struct Failure {
    exit: Exit,
    error: anyhow::Error,
}

impl<E: Classify + std::error::Error + Send + Sync + 'static> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure { exit: e.exit(), error: anyhow::Error::new(e) }
    }
}

/// What no module classified (writing to stdout or a file, a drafted mapping that does
/// not validate): exit 1.
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure { exit: Exit::Other, error }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        anyhow::Error::new(e).into()
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Failure {
        anyhow::Error::new(e).into()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if f.alternate() { write!(f, "{:#}", self.error) } else { write!(f, "{}", self.error) }
    }
}

/// An error with an explicit exit code, for commands that decide it themselves.
#[derive(Debug)]
pub struct CodedError(pub Exit, pub String);
impl std::fmt::Display for CodedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for CodedError {}
impl Classify for CodedError {
    fn exit(&self) -> Exit {
        self.0
    }
}

/// Loads the config; problems that touch nothing we need are left for `check`.
pub(crate) fn load_config(cli: &Cli) -> Result<Config> {
    let path = cli.config.clone().unwrap_or_else(config::default_path);
    Ok(config::load(&path)?)
}

async fn dispatch(cli: &Cli) -> Result<i32> {
    match &cli.command {
        Command::Check { no_environment, online } => {
            check::run(cli, check::Options { environment: !no_environment, online: *online }).await
        }
        Command::Keyscan { target } => keyscan::run(target, cli.json),
        Command::PgpKey { connector } => pgp_key::run(cli, connector),
        Command::Test { connector: Some(connector), plan_out, .. } => inspect::test(cli, connector, plan_out.as_deref()).await,
        Command::Test { connector: None, .. } => check::run(cli, check::Options { environment: true, online: true }).await,
        Command::Fetch { connector, to } => inspect::fetch(cli, connector, to.as_deref()).await,
        Command::Sync { connector, all, dry_run, file, allow_mass_change, force, reconcile, only, allow_absent, reason, plan_out } => {
            let approval = sync::approval_of(*allow_mass_change, reason.as_deref())?;
            let opts = crate::sync::SyncOptions {
                dry_run: *dry_run,
                file: file.clone(),
                allow_mass_change: *allow_mass_change,
                // One person's sync takes the file as it is, synced before or not.
                force: *force || only.is_some(),
                reconcile: *reconcile,
                origin: crate::sync::Origin::Cli,
                progress: progress::for_terminal(cli.json),
                only: only.clone(),
                allow_absent: *allow_absent,
                approval,
                // The whole list for whoever reads it all; a terminal shows the first ones.
                all_operations: cli.json || plan_out.is_some(),
                ..Default::default()
            };
            sync::run(cli, connector.as_deref(), *all, opts, plan_out.as_deref()).await
        }
        Command::Explain { connector, id } => explain::run(cli, connector, id).await,
        Command::Plan { command: PlanCommand::Show { run_id } } => approve::show(cli, run_id).await,
        Command::Approve { run_id, reason } => approve::approve(cli, run_id, reason).await,
        Command::Daemon => daemon::run(cli).await,
        Command::Mapping { command: MappingCommand::Suggest { file } } => mapping_suggest::run(file),
        Command::History { connector, limit, person: Some(id) } => history::person(cli, connector.as_deref(), id, *limit).await,
        Command::History { connector, limit, person: None } => history::history(cli, connector.as_deref(), *limit).await,
        Command::Status => history::status(cli).await,
        Command::Completions { shell } => completions::completions(*shell),
        Command::Man => completions::man(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit code is the one the failing module gave its error, also through the
    /// daemon's error and through a plain `?`; what no module classified is 1.
    #[test]
    fn a_failure_keeps_the_exit_code_its_module_gave_it() {
        let unreachable = || crate::state::StateError::Unreachable { host: "db".into(), port: 5432, detail: "refused".into() };
        let f: Failure = unreachable().into();
        assert_eq!(f.exit, Exit::Connection);
        let f: Failure = crate::daemon::DaemonError::State(unreachable()).into();
        assert_eq!(f.exit, Exit::Connection, "not 1: the store's own code");
        assert!(f.to_string().starts_with("cannot reach the PostgreSQL state store at db:5432"), "{f}");
        let f: Failure = CodedError(Exit::Data, "no file".into()).into();
        assert_eq!((f.exit, f.to_string().as_str()), (Exit::Data, "no file"));
        let f: Failure = anyhow::anyhow!("cannot write").into();
        assert_eq!(f.exit, Exit::Other);
    }
}
