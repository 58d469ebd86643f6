//! deploy/: every Kubernetes manifest validates against the Kubernetes schemas, as written
//! and as `kubectl kustomize` renders the base and each overlay
//! (kubernetes-validate, from PyPI, strict), every file a kustomization names exists,
//! and every routes.toml shipped for a deployment passes `mcp-edge check`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

use mcp_edge_tests::{mcp_edge, peer, repo_root};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn deploy_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(&repo_root().join("deploy"), &mut out);
    out.sort();
    out
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let validate = peer("py1/bin/kubernetes-validate");
    let manifests: Vec<PathBuf> = deploy_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            // Kubernetes resources; not kustomizations or JSON 6902 patches.
            text.lines().any(|l| l.starts_with("apiVersion:"))
                && !text.contains("kind: Kustomization")
        })
        .collect();
    assert!(manifests.len() >= 9, "{manifests:?}");
    let out = Command::new(&validate)
        .arg("--strict")
        .args(&manifests)
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    for manifest in &manifests {
        let shown = manifest
            .strip_prefix(repo_root().join("deploy/kubernetes"))
            .unwrap()
            .display()
            .to_string();
        assert!(
            report.contains(&format!("{shown} passed")),
            "{shown} not validated:\n{report}"
        );
    }
}

#[test]
fn kustomizations_name_only_files_that_exist() {
    for kustomization in deploy_files()
        .iter()
        .filter(|p| p.ends_with("kustomization.yaml"))
    {
        let dir = kustomization.parent().unwrap();
        let text = std::fs::read_to_string(kustomization).unwrap();
        let mut section = "";
        for line in text.lines() {
            if !line.starts_with(' ') && line.ends_with(':') {
                section = line.trim_end_matches(':');
                continue;
            }
            let item = line.trim().trim_start_matches("- ");
            let named = match section {
                "resources" if line.trim_start().starts_with("- ") => Some(item),
                _ if line.trim_start().starts_with("- path: ") => {
                    Some(item.trim_start_matches("path: "))
                }
                "configMapGenerator" if line.trim().starts_with("- ") && !line.contains(':') => {
                    Some(item)
                }
                _ => None,
            };
            if let Some(name) = named {
                assert!(
                    dir.join(name).exists(),
                    "{} names {name}, which does not exist",
                    kustomization.display()
                );
            }
        }
    }
}

#[test]
fn every_shipped_routes_file_passes_check() {
    let routes: Vec<PathBuf> = deploy_files()
        .into_iter()
        .filter(|p| p.ends_with("routes.toml"))
        .collect();
    assert_eq!(routes.len(), 2, "{routes:?}");
    for file in routes {
        let out = Command::new(mcp_edge())
            .arg("check")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `kubectl kustomize` of one directory under deploy/kubernetes.
fn kustomize(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", &format!("deploy/kubernetes/{dir}")])
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl did not run ({e}): run tests/peers/install-debian (apt-get install kubernetes-client)")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn kustomize_renders_the_base_and_every_overlay_into_valid_manifests() {
    let validate = peer("py1/bin/kubernetes-validate");
    let overlays: Vec<String> = std::fs::read_dir(repo_root().join("deploy/kubernetes/overlays"))
        .unwrap()
        .map(|e| format!("overlays/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert!(!overlays.is_empty());
    let dir = std::env::temp_dir().join(format!("mcp-edge-kustomize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for target in std::iter::once("base".to_owned()).chain(overlays) {
        let rendered = kustomize(&target);
        let file = dir.join(format!("{}.yaml", target.replace('/', "-")));
        std::fs::write(&file, &rendered).unwrap();
        let out = Command::new(&validate)
            .arg("--strict")
            .arg(&file)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{target}:\n{report}");
        let objects = rendered.lines().filter(|l| l.starts_with("kind:")).count();
        assert!(objects >= 9, "{target} rendered {objects} objects");
        assert_eq!(
            report.matches(" passed for resource ").count(),
            objects,
            "{target}: not every rendered object was validated:\n{report}"
        );
        if target.ends_with("untrusted-tls") {
            // The overlay's patch is rendered: the TLS volume and port 8443, and its own
            // routes.toml replaces the base's.
            for expected in [
                "containerPort: 8443",
                "secretName: mcp-edge-tls",
                "mountPath: /etc/mcp-edge-tls",
            ] {
                assert!(
                    rendered.contains(expected),
                    "{target} lacks `{expected}`:\n{rendered}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
