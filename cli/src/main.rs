//! dirctl: the operator CLI of geodir.

mod access;
mod assets;
mod audit;
mod backup;
mod context;
mod demo;
mod health;
mod object;
mod operator;
mod ops;
mod opt;
mod output;
mod recycle;
mod reply;
mod token;

use std::process::ExitCode;

use crate::opt::{Cli, Command, GroupVerb};
use engine::directory::ObjectType;

fn main() -> ExitCode {
    // As the OS gave them: an argument that is not UTF-8 is clap's usage error (exit 2), never
    // a panic here.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let wants_json = args
        .windows(2)
        .any(|w| w[0] == "--output" && w[1] == "json")
        || args.iter().any(|a| a == "--output=json");
    let parsed = <Cli as clap::CommandFactory>::command()
        .try_get_matches_from(&args)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m).map(|c| (m, c)));
    let (matches, cli) = match parsed {
        Ok(p) => p,
        // A usage error where JSON was asked for is JSON too (help and --version are not errors).
        Err(e) if wants_json && e.use_stderr() => {
            // clap's text up to the usage line, on one line.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(|l| l.trim().trim_start_matches("error: "))
                .collect();
            eprintln!(
                "{}",
                serde_json::json!({"error": {"message": message.join(" "), "exitCode": 2}})
            );
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    // `audit list --actor NAME` once filtered by author; --actor names who runs a command.
    let after_list = args
        .iter()
        .position(|a| a == "audit")
        .and_then(|i| args[i..].iter().position(|a| a == "list").map(|j| i + j))
        .map(|i| &args[i..])
        .unwrap_or_default();
    if matches!(&cli.command, Command::Audit(opt::AuditCmd::List { .. }))
        && matches.value_source("actor") == Some(clap::parser::ValueSource::CommandLine)
        && after_list
            .iter()
            .any(|a| a == "--actor" || a.as_encoded_bytes().starts_with(b"--actor="))
    {
        eprintln!("error: `audit list` filters by author with --by NAME; --actor names who runs a command (for the audit trail)");
        return ExitCode::from(2);
    }
    let mut words = Vec::new();
    let mut m = &matches;
    while let Some((name, sub)) = m.subcommand() {
        words.push(name.to_string());
        m = sub;
    }
    context::set_command_name(words.join(" "));
    let json = cli.global.output == opt::Output::Json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let code = exit_code(&e);
            if json {
                // Scripts that asked for JSON get the error as JSON too (on stderr, as ever).
                eprintln!(
                    "{}",
                    serde_json::json!({"error": {"message": format!("{e:#}"), "exitCode": code}})
                );
            } else {
                eprintln!("error: {}", output::escape_unsafe(&format!("{e:#}")));
            }
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Init(a) => ops::init(&g, a),
        Command::Demo(a) => demo::run(&g, a),
        Command::Tenant(c) => ops::tenant(&g, c),
        Command::Group(a) => object::run(&g, ObjectType::Group, a.tenant, a.verb),
        Command::User(a) => object::run(&g, ObjectType::User, a.tenant, GroupVerb::Object(a.verb)),
        Command::App(a) => object::run(
            &g,
            ObjectType::Application,
            a.tenant,
            GroupVerb::Object(a.verb),
        ),
        Command::Sp(a) => object::run(
            &g,
            ObjectType::ServicePrincipal,
            a.tenant,
            GroupVerb::Object(a.verb),
        ),
        Command::Device(a) => {
            object::run(&g, ObjectType::Device, a.tenant, GroupVerb::Object(a.verb))
        }
        Command::Import(a) => object::import(&g, a),
        Command::Sync(a) => ops::sync(&g, a),
        Command::Status => ops::status(&g),
        Command::Scrub(a) => ops::scrub(&g, a),
        Command::Dc(c) => ops::dc(&g, c),
        Command::Failover(a) => ops::failover(&g, a),
        Command::ControlPlane(c) => ops::control_plane(&g, c),
        Command::Backup(c) => backup::run(&g, c),
        Command::Health(h) => health::health(&g, &h),
        Command::Metrics(d) => health::metrics(&g, &d),
        Command::Deleted(c) => recycle::run(&g, c),
        Command::Access(c) => access::run(&g, c),
        Command::Audit(c) => audit::run(&g, c),
        Command::Token(c) => token::run(&g, c),
        Command::Operator(c) => operator::run(&g, c),
        Command::Login(a) => operator::login(&g, a),
        Command::Logout => operator::logout(&g),
        Command::Elevate(a) => operator::elevate(&g, a),
        Command::Elevation(c) => operator::elevation(&g, c),
        Command::Approve(a) => operator::approve(&g, a),
        Command::Requests => operator::requests(&g),
        Command::GenerateAssets { out } => assets::generate(&out),
    }
}

/// DESIGN.md's exit codes: 2 usage, 3 not found, 4 conflict, 5 unavailable, 6 not permitted
/// (docs/design.md), 1 anything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    use engine::Error as E;
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<::backup::Error>() {
            use ::backup::Error as B;
            return match err {
                B::Corrupt { .. } | B::Unsafe { .. } | B::Io { .. } => 1,
                B::Engine(inner) => engine_code(inner),
            };
        }
        if let Some(err) = cause.downcast_ref::<E>() {
            return engine_code(err);
        }
    }
    1
}

fn engine_code(err: &engine::Error) -> u8 {
    use engine::Error as E;
    match err {
        E::Invalid(_) | E::ImpossibleToken(_) => 2,
        E::NotFound(_) => 3,
        E::Conflict(_) => 4,
        E::Unavailable(_) | E::Damaged(_) | E::DiskFull(_) => 5,
        E::OutcomeUnknown(_) | E::Corrupt(_) | E::Fenced(_) | E::Storage(_) => 1,
        E::NotPermitted(_) => 6,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
