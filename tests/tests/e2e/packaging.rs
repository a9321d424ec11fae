//! What `sam build` compiles: it runs `cargo lambda build --release --bin NAME` at the workspace
//! root, and cargo unifies features over every package that command selects.

/// The features cargo resolves for `custom-resource` when the command selects `args`.
fn custom_resource_features(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["tree", "--locked", "-e", "features,normal"])
        .args(["-i", "custom-resource", "--prefix", "none"])
        .args(args)
        .current_dir(testkit::workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn a_function_built_at_the_workspace_root_leaves_the_test_hooks_out() {
    let root = custom_resource_features(&[]);
    assert!(root.contains("custom-resource"), "{root}");
    assert!(
        !root.contains("\"test-util\""),
        "the release build would accept loopback response URLs:\n{root}"
    );
    // The check can fail: the whole workspace (the test kit included) turns the hooks on.
    let workspace = custom_resource_features(&["--workspace"]);
    assert!(workspace.contains("\"test-util\""), "{workspace}");
}
