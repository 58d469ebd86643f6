//! `mcp-edge check`, run as a user runs it: the real binary on real files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use mcp_edge_tests::{mcp_edge, repo_root, run_in, scratch_dir};
use std::process::Command;

#[test]
fn the_shipped_routes_file_is_valid_and_shows_all_three_boundaries() {
    let run = run_in(&repo_root(), &["check"]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("routes.toml: valid (0 errors, 1 warning)"),
        "{}",
        run.stderr
    );
    // The one warning: the example's in-cluster route names no service credential
    // (it cannot ship one), and trusted routes are expected to carry one.
    assert!(
        run.stderr
            .contains("route `docs` crosses into the trusted network with no service credential"),
        "{}",
        run.stderr
    );
    for expected in [
        "demo            host       stdio",
        "docs            trusted    http streamable-http",
        "partner-search  untrusted  https auto",
        "docs-mcp.tools.svc.cluster.local is under trusted domain .svc.cluster.local",
        "gateway   127.0.0.1:8080  host",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            run.stdout
        );
    }
}

#[test]
fn the_normalized_example_config() {
    let run = run_in(&repo_root(), &["check", "--format", "json", "routes.toml"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let json: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("check --format json prints JSON");
    assert_eq!(json["valid"], true);
    insta::assert_snapshot!("shipped_routes", run.stdout);
}

#[test]
fn every_problem_is_listed_with_file_line_and_column() {
    let dir = scratch_dir("check-bad");
    std::fs::write(
        dir.join("routes.toml"),
        "[gateway]\nlisten = \"0.0.0.0:8080\"\n\n[defaults]\ntimeout = \"0s\"\n\n[[route]]\nname = \"partner\"\nurl = \"http://mcp.partner.example/mcp\"\n\n[[route]]\nname = \"partner\"\ncommand = \"x\"\n\n[[clients]]\nname = \"a\"\ntoken = { env = \"MCP_EDGE_TEST_UNSET_TOKEN\" }\nroutes = [\"nope\"]\n",
    )
    .unwrap();
    let run = run_in(&dir, &["check"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for expected in [
        "routes.toml:2:10: error: listener 0.0.0.0:8080 faces an untrusted network",
        "routes.toml:5:11: error: timeout = \"0s\" is out of range",
        "routes.toml:9:7: error: route `partner` would cross an untrusted boundary in plaintext (http://)",
        "routes.toml:12:8: error: two routes are named `partner`",
        "routes.toml:17:9: warning: client `a` token: environment variable MCP_EDGE_TEST_UNSET_TOKEN is not set",
        "routes.toml:18:11: error: client `a` is allowed route `nope`, which does not exist",
        "routes.toml: refused (5 errors, 1 warning)",
    ] {
        assert!(
            run.stderr.contains(expected),
            "missing {expected:?} in\n{}",
            run.stderr
        );
    }
    // The caret points under the offending value.
    assert!(
        run.stderr
            .contains("5 | timeout = \"0s\"\n  |           ^^^^"),
        "{}",
        run.stderr
    );

    // `serve` on the same file shows every one of them too, not one stage's.
    let run = run_in(&dir, &["serve"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for expected in [
        "routes.toml:2:10: error: listener 0.0.0.0:8080 faces an untrusted network",
        "routes.toml:5:11: error: timeout = \"0s\" is out of range",
        "routes.toml:9:7: error: route `partner` would cross an untrusted boundary in plaintext (http://)",
        "routes.toml:12:8: error: two routes are named `partner`",
        "routes.toml:17:9: error: client `a` token: environment variable MCP_EDGE_TEST_UNSET_TOKEN is not set",
        "routes.toml:18:11: error: client `a` is allowed route `nope`, which does not exist",
        "routes.toml: refused: 6 errors",
    ] {
        assert!(
            run.stderr.contains(expected),
            "serve: missing {expected:?} in\n{}",
            run.stderr
        );
    }

    let run = run_in(&dir, &["check", "--format", "json"]);
    assert_eq!(run.code, Some(1));
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["valid"], false);
    let first = &json["diagnostics"][0];
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(2), Some(10))
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn secrets_are_resolved_but_never_printed_and_strict_fails_on_missing_ones() {
    let dir = scratch_dir("check-secrets");
    std::fs::write(
        dir.join("routes.toml"),
        "[[route]]\nname = \"a\"\nurl = \"https://mcp.partner.example/mcp\"\nauth = { bearer = { env = \"MCP_EDGE_TEST_BEARER\" }, headers = { \"X-Key\" = { file = \"key.txt\" } } }\n[[clients]]\nname = \"agent\"\ntoken = { env = \"MCP_EDGE_TEST_CLIENT\" }\nroutes = [\"*\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("key.txt"), "file-secret-value-0001\n").unwrap();
    let run = |strict: bool, client: Option<&str>| {
        let mut cmd = Command::new(mcp_edge());
        cmd.current_dir(&dir)
            .env_remove("MCP_EDGE_ROUTES")
            .env("MCP_EDGE_TEST_BEARER", "bearer-secret-value-0002")
            .args(["check", "--format", "json"]);
        if strict {
            cmd.arg("--strict");
        }
        match client {
            Some(v) => cmd.env("MCP_EDGE_TEST_CLIENT", v),
            None => cmd.env_remove("MCP_EDGE_TEST_CLIENT"),
        };
        mcp_edge_tests::Run::from(cmd.output().unwrap())
    };
    let lax = run(false, None);
    assert_eq!(lax.code, Some(0), "{}", lax.stdout);
    assert!(
        lax.stdout
            .contains("environment variable MCP_EDGE_TEST_CLIENT is not set")
    );
    let strict = run(true, None);
    assert_eq!(strict.code, Some(1), "{}", strict.stdout);
    let resolved = run(true, Some("client-secret-value-0003"));
    assert_eq!(resolved.code, Some(0), "{}", resolved.stdout);
    for output in [&lax, &strict, &resolved] {
        let all = format!("{}{}", output.stdout, output.stderr);
        for secret in [
            "file-secret-value-0001",
            "bearer-secret-value-0002",
            "client-secret-value-0003",
        ] {
            assert!(!all.contains(secret), "secret leaked: {all}");
        }
    }
    assert!(
        resolved.stdout.contains("env:MCP_EDGE_TEST_CLIENT"),
        "the reference is shown"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_file_comes_from_the_argument_or_mcp_edge_routes() {
    let dir = scratch_dir("check-env");
    std::fs::write(
        dir.join("other.toml"),
        "[gateway]\nallow_anonymous = true\n[[route]]\nname = \"x\"\ncommand = \"srv\"\n",
    )
    .unwrap();
    let via_env = Command::new(mcp_edge())
        .current_dir(&dir)
        .env("MCP_EDGE_ROUTES", "other.toml")
        .arg("check")
        .output()
        .unwrap();
    assert!(via_env.status.success());
    assert!(String::from_utf8_lossy(&via_env.stdout).contains("x      host"));

    let missing = run_in(&dir, &["check", "nope.toml"]);
    assert_eq!(missing.code, Some(2));
    assert!(
        missing.stderr.contains("cannot read nope.toml"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("MCP_EDGE_ROUTES"),
        "{}",
        missing.stderr
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn certs_init_adds_names_and_makes_a_tool_server_certificate() {
    let dir = scratch_dir("certs-init");
    let run = run_in(
        &dir,
        &["certs", "init", "--dir", "pki", "--host", "gw.example"],
    );
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    for file in ["gateway.pem", "tool-server.pem"] {
        let run = run_in(&dir, &["certs", "inspect", &format!("pki/{file}")]);
        assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
        for name in ["localhost", "127.0.0.1", "::1", "gw.example"] {
            assert!(
                run.stdout.contains(name),
                "{file} lacks {name}:\n{}",
                run.stdout
            );
        }
    }
    let key = dir.join("pki/tool-server-key.pem");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_takes_the_admin_base_url() {
    let gw = mcp_edge_tests::Gateway::start(
        "health-base-url",
        "[[route]]\nname = \"demo\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n",
    );
    for url in [
        format!("http://{}", gw.admin),
        format!("http://{}/", gw.admin),
        gw.admin.to_string(),
        format!("http://{}/health", gw.admin),
    ] {
        let run = run_in(&repo_root(), &["health", "--url", &url]);
        assert_eq!(run.code, Some(0), "{url}: {}{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("demo"), "{url}: {}", run.stdout);
    }
}
