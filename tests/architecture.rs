//! The dependency rule of the hexagonal architecture: dependencies point inward. The domain
//! must not depend on a web framework, a database driver or an async runtime, and the
//! ports must not depend on a web framework or a database driver, not even transitively.

use std::collections::BTreeSet;
use std::process::Command;

/// Every package in the normal (non-dev) dependency tree of a workspace package.
fn dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--package", package, "--edges", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .expect("run cargo tree");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn assert_free_of(package: &str, forbidden: &[&str]) {
    let deps = dependencies(package);
    assert!(deps.contains(package), "cargo tree did not list {package} itself: {deps:?}");
    let found: Vec<_> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(found.is_empty(), "{package} depends on {found:?}, which breaks the dependency rule");
}

#[test]
fn domain_depends_on_no_framework_driver_or_runtime() {
    assert_free_of("domain", &["actix-web", "actix-rt", "mongodb", "bson", "tokio", "async-std"]);
}

#[test]
fn ports_depend_on_no_framework_or_driver() {
    assert_free_of("ports", &["actix-web", "mongodb", "bson"]);
}

#[test]
fn the_check_sees_real_dependencies() {
    // Guards the check itself: if cargo tree stopped listing dependencies, the two tests
    // above would pass vacuously.
    assert!(dependencies("http-adapter").contains("actix-web"));
    assert!(dependencies("domain").contains("uuid"));
}
