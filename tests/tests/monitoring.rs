//! The Prometheus rules shipped in `deploy/monitoring/`, checked with the real
//! `promtool` (Debian's `prometheus` package, installed by `tests/peers/install-debian`):
//! they load, their unit tests pass, and every alert has a unit test and a runbook line.

use std::path::PathBuf;
use std::process::Command;

fn monitoring() -> PathBuf {
    mcp_edge_tests::repo_root().join("deploy/monitoring")
}

/// Runs promtool in deploy/monitoring; its output on failure.
fn promtool(args: &[&str]) -> Result<String, String> {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
        .map_err(|e| {
            format!("promtool did not run ({e}): run tests/peers/install-debian (apt-get install prometheus)")
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn the_rules_load_and_their_unit_tests_pass() {
    let checked =
        promtool(&["check", "rules", "mcp-edge.rules.yaml"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested =
        promtool(&["test", "rules", "mcp-edge.rules.test.yaml"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_has_a_unit_test_and_a_runbook() {
    let rules = std::fs::read_to_string(monitoring().join("mcp-edge.rules.yaml")).unwrap();
    let tests = std::fs::read_to_string(monitoring().join("mcp-edge.rules.test.yaml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    for alert in &alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels:"
            )),
            "no unit test sees {alert} fire"
        );
    }
    let runbooks = rules.matches("\n          runbook: ").count();
    assert_eq!(runbooks, alerts.len(), "every alert needs a runbook line");
}
