//! The configuration reference, docs/configuration.md, generated from the clap definitions so that it
//! cannot drift: a unit test compares the file with what the definitions say (`TUG_UPDATE_DOCS=1`
//! rewrites it).

use std::fmt::Write;

/// The reference of every subcommand, as Markdown.
pub fn markdown(root: &clap::Command) -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from tug's command-line definitions (`TUG_UPDATE_DOCS=1 cargo test --lib reference`); do not\n\
         edit by hand. Every flag of `tug server` and `tug agent` can also be set by its environment variable\n\
         or by a key of the same name in the config file (`/etc/tug/config.yaml`).\n",
    );
    for command in root.get_subcommands() {
        section(&mut out, &format!("tug {}", command.get_name()), command);
    }
    out
}

fn section(out: &mut String, path: &str, command: &clap::Command) {
    let _ = write!(out, "\n## `{path}`\n\n");
    if let Some(about) = command.get_long_about().or(command.get_about()) {
        let _ = writeln!(out, "{}\n", one_line(&about.to_string()));
    }
    let args: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    let mut headings: Vec<Option<&str>> = Vec::new();
    for arg in &args {
        if !headings.contains(&arg.get_help_heading()) {
            headings.push(arg.get_help_heading());
        }
    }
    for heading in headings {
        if let Some(heading) = heading {
            let _ = writeln!(out, "### {heading}\n");
        }
        out.push_str("| Flag | Environment | Default | Meaning |\n| --- | --- | --- | --- |\n");
        for arg in args.iter().filter(|a| a.get_help_heading() == heading) {
            let _ = writeln!(out, "| {} | {} | {} | {} |", flag(arg), env(arg), default(arg), cell(&help(arg)));
        }
        out.push('\n');
    }
    for sub in command.get_subcommands() {
        section(out, &format!("{path} {}", sub.get_name()), sub);
    }
}

fn flag(arg: &clap::Arg) -> String {
    match (arg.get_long(), arg.get_short()) {
        (Some(long), Some(short)) => format!("`--{long}`, `-{short}`"),
        (Some(long), None) => format!("`--{long}`"),
        _ => format!(
            "`{}`",
            arg.get_value_names().and_then(|n| n.first()).map_or(arg.get_id().to_string(), |n| n.to_string())
        ),
    }
}

fn env(arg: &clap::Arg) -> String {
    arg.get_env().map_or(String::new(), |e| format!("`{}`", e.to_string_lossy()))
}

fn default(arg: &clap::Arg) -> String {
    let values: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    match values.is_empty() {
        true => String::new(),
        false => format!("`{}`", values.join(",")),
    }
}

fn help(arg: &clap::Arg) -> String {
    arg.get_long_help().or(arg.get_help()).map_or(String::new(), |h| one_line(&h.to_string()))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text safe in a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_configuration_reference_matches_the_command_line() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let generated = super::markdown(&super::super::Cli::command());
        if std::env::var_os("TUG_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).expect("write docs/configuration.md");
        }
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            written == generated,
            "docs/configuration.md is not what the flags say; run TUG_UPDATE_DOCS=1 cargo test --lib reference"
        );
    }
}
