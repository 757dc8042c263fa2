//! `rostersync completions SHELL` and `rostersync man`: both generated from the clap
//! definition, so they cannot drift from the commands (packaging/rostersync.1 is this
//! output, committed; tests/packaging.rs fails when it is stale).

use std::io::Write;

use clap::CommandFactory;

use super::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> super::Result<i32> {
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics on a write error (`| head`), we return it.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rostersync", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(0)
}

/// The man page (roff) of the whole command line: the options, then one section per
/// command with its own options.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    // The plain version only: the commit and build date would make the committed page
    // stale at every commit.
    let cmd = Cli::command().version(crate::build_info::VERSION).long_version(crate::build_info::VERSION);
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        render_command_section(&mut out, &cmd, sub)?;
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// One command's synopsis and options, as a section of the one page (a page per command
/// would be eleven files to install for a tool this size).
fn render_command_section(out: &mut Vec<u8>, root: &clap::Command, sub: &clap::Command) -> std::io::Result<()> {
    let name = format!("{} {}", root.get_name(), sub.get_name());
    writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
    let page = clap_mangen::Man::new(sub.clone().bin_name(name));
    let mut body = Vec::new();
    page.render_synopsis_section(&mut body)?;
    page.render_description_section(&mut body)?;
    page.render_options_section(&mut body)?;
    if sub.has_subcommands() {
        page.render_subcommands_section(&mut body)?;
    }
    // Demote the page's own section headings to subsection headings of this section.
    for line in String::from_utf8_lossy(&body).lines() {
        match line.strip_prefix(".SH ") {
            Some(rest) => writeln!(out, ".SS {rest}")?,
            None => writeln!(out, "{line}")?,
        }
    }
    Ok(())
}

/// Prints the man page on stdout (`rostersync man > rostersync.1`).
pub fn man() -> super::Result<i32> {
    let page = man_page()?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page)?;
    out.flush()?;
    Ok(0)
}
