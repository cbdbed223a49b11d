//! Man pages and shell completions, made from the clap definitions themselves (so they
//! never drift from the commands): `dirctl generate-assets --out DIR`, run by
//! scripts/package.

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;

/// Writes `man/` (dirctl.1 and one page per subcommand, geodird.8) and `completions/`
/// (bash, zsh, fish) under `out`.
pub fn generate(out: &Path) -> anyhow::Result<()> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let dirctl = shown(crate::opt::Cli::command());
    clap_mangen::generate_to(dirctl.clone(), &man)
        .with_context(|| format!("write man pages in {}", man.display()))?;
    let geodird = server::config::Args::command().name("geodird");
    let mut page = Vec::new();
    clap_mangen::Man::new(geodird)
        .section("8")
        .render(&mut page)
        .context("render geodird.8")?;
    std::fs::write(man.join("geodird.8"), page).context("write geodird.8")?;
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "dirctl"),
        (Shell::Zsh, "_dirctl"),
        (Shell::Fish, "dirctl.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut dirctl.clone(), "dirctl", &mut text);
        let path = completions.join(file);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    println!("man pages and completions written in {}", out.display());
    Ok(())
}

/// `cmd` without its hidden subcommands (this one among them), which the completion
/// generators would otherwise offer.
fn shown(cmd: clap::Command) -> clap::Command {
    let mut out = clap::Command::new("dirctl")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    out
}
