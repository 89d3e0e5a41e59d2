//! One version everywhere: every dependency line in the README, the crate
//! docs and the documents names the version in `Cargo.toml`, and the
//! CHANGELOG has a section for it.

use std::path::Path;

/// The version a user writes in `Cargo.toml` for this crate: `0.2` for
/// 0.2.x, `1` for 1.x.
fn requirement() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    let (major, minor) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if major == "0" { format!("{major}.{minor}") } else { major.to_string() }
}

/// Every version requirement written for `stamp-echo` in `text`: the
/// `"..."` after `stamp-echo = ` or after `version = ` on a `stamp-echo` line.
fn requirements_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| l.contains("stamp-echo =")) {
        let rest = &line[line.find("stamp-echo =").unwrap_or_default()..];
        let quoted = match rest.find("version = \"") {
            Some(at) => &rest[at + "version = \"".len()..],
            None => match rest.find('"') {
                Some(at) => &rest[at + 1..],
                None => continue,
            },
        };
        if let Some(end) = quoted.find('"') {
            found.push(quoted[..end].to_string());
        }
    }
    found
}

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

#[test]
fn every_dependency_line_names_the_crate_version() {
    let want = requirement();
    let mut seen = 0;
    for path in ["README.md", "src/lib.rs", "docs/tokio.md", "docs/client.md", "docs/serving.md"] {
        for found in requirements_in(&read(path)) {
            assert_eq!(
                found,
                want,
                "{path} asks for stamp-echo {found:?}, Cargo.toml says {}",
                env!("CARGO_PKG_VERSION")
            );
            seen += 1;
        }
    }
    assert!(seen >= 2, "the README and the crate docs show how to depend on the crate ({seen} lines found)");
}

#[test]
fn the_changelog_has_a_section_for_the_version() {
    let version = env!("CARGO_PKG_VERSION");
    let changelog = read("CHANGELOG.md");
    assert!(
        changelog.lines().any(|l| l.starts_with("## ") && l.contains(version)),
        "CHANGELOG.md has no `## ` heading naming {version}"
    );
}

#[test]
fn requirements_are_found_in_both_spellings() {
    let text = "stamp-echo = \"0.9\"\nstamp-echo = { version = \"1\", features = [] }\nother = \"2\"";
    assert_eq!(requirements_in(text), ["0.9", "1"]);
}
