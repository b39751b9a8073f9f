//! Names the commit the binary is built from (`moat_build_info{commit}`):
//! `MOAT_BUILD_COMMIT` when set (a container build without `.git`), else
//! `git rev-parse`, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MOAT_BUILD_COMMIT");
    let commit = std::env::var("MOAT_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // A new commit (HEAD moving, or the branch it names) builds again.
    // Only files that exist: a missing one would run this every build.
    let branch = git(&["rev-parse", "--symbolic-full-name", "HEAD"])
        .and_then(|r| git(&["rev-parse", "--git-path", &r]));
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    for path in [head, branch].into_iter().flatten() {
        if std::path::Path::new(&path).is_file() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=MOAT_COMMIT={commit}");
}
