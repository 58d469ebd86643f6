//! Secrets planted in every place routes.toml can hold one never come out: not in
//! `check` (text and JSON), the start-up and call logs, `/health`, `/metrics`, the
//! status page, or the answers clients get; and a secret reference in `args` reaches
//! the tool server as the value it names.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use mcp_edge_tests::{Gateway, http, mcp_edge, scratch_dir};
use serde_json::json;

/// Each planted value, and where it was put.
const PLANTED: &[(&str, &str)] = &[
    ("planted-arg-ref-7f3a9c", "an argument given as { env = … }"),
    ("planted-url-pw-81bd", "the password in a URL argument"),
    ("planted-url-user-51aa", "the user name in a URL argument"),
    ("planted-flag-2c4e", "the word after --password"),
    ("planted-kv-99aa", "--api-key=value"),
    ("planted-env-6d01", "an env secret"),
    ("planted-token-3e77", "a client's bearer token"),
    (
        "planted-upstream-pw-0b9f",
        "the password in a tool server's URL",
    ),
    ("planted-query-e3d2", "a query value in a tool server's URL"),
    ("planted-inline-18fa", "a token written inline"),
    (
        "planted-header-44c1",
        "a header secret toward a tool server",
    ),
];

fn routes() -> String {
    // `sh -c "… ; exit" sh ARGS…`: the tool server is the demo, and the words after it
    // are arguments it is given and ignores, as a real server would take a DSN.
    r#"[gateway]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"

[[clients]]
name = "agent"
token = { env = "PLANTED_TOKEN" }
routes = ["*"]

[[route]]
name = "db"
command = ["sh", "-c", "{mcp_edge} demo-tools --stdio; exit $?", "sh",
           "postgres://planted-url-user-51aa:planted-url-pw-81bd@db.internal:5432/app",
           "--password", "planted-flag-2c4e", "--api-key=planted-kv-99aa"]
args = [{ env = "PLANTED_ARG" }]
env = { DB_PASSWORD = { env = "PLANTED_ENV" } }

[[route]]
name = "leaky"
command = ["sh", "-c", "echo \"login failed with key $API_KEY\" >&2; exit 3"]
env = { API_KEY = { env = "PLANTED_STDERR" } }

[[route]]
name = "partner"
url = "http://127.0.0.1:9/mcp?api_key=planted-query-e3d2"
auth = { headers = { "X-Api-Key" = { env = "PLANTED_HEADER" } } }
"#
    .to_owned()
}

const ENV: &[(&str, &str)] = &[
    ("PLANTED_ARG", "planted-arg-ref-7f3a9c"),
    ("PLANTED_ENV", "planted-env-6d01"),
    ("PLANTED_TOKEN", "planted-token-3e77"),
    ("PLANTED_HEADER", "planted-header-44c1"),
    ("PLANTED_STDERR", "planted-stderr-a5e0"),
];

fn assert_clean(place: &str, text: &str) {
    for (secret, what) in PLANTED {
        assert!(
            !text.contains(secret),
            "{what} ({secret}) leaked into {place}:\n{text}"
        );
    }
}

/// The command lines of the gateway's children (read from /proc).
fn children_cmdlines(parent: u32) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent)
            && let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
        {
            out.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_come_out() {
    // `check`, as text and as JSON.
    let dir = scratch_dir("secrets-check");
    let text = routes().replace("{mcp_edge}", &mcp_edge().display().to_string());
    std::fs::write(dir.join("routes.toml"), &text).unwrap();
    for format in ["text", "json"] {
        let output = Command::new(mcp_edge())
            .current_dir(&dir)
            .envs(ENV.iter().copied())
            .args(["check", "--format", format, "routes.toml"])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "check {format}:\n{all}");
        assert!(all.contains("db"), "check {format} lists the route:\n{all}");
        assert_clean(&format!("`check --format {format}`"), &all);
    }
    // A file refused for credentials in a URL and a token written inline: the refusal
    // points at them without showing them, from `check` and from `serve`.
    let refused = text
        .replace(
            "http://127.0.0.1:9/mcp?api_key=planted-query-e3d2",
            "http://ops:planted-upstream-pw-0b9f@127.0.0.1:9/mcp",
        )
        .replace(
            r#"token = { env = "PLANTED_TOKEN" }"#,
            r#"token = "planted-inline-18fa""#,
        );
    for (file, text) in [
        ("inline.toml", refused.clone()),
        (
            "url.toml",
            refused.replace(
                r#"token = "planted-inline-18fa""#,
                r#"token = { env = "PLANTED_TOKEN" }"#,
            ),
        ),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
        for args in [&["check", file][..], &["serve", file]] {
            let output = Command::new(mcp_edge())
                .current_dir(&dir)
                .envs(ENV.iter().copied())
                .args(args)
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(!output.status.success(), "{args:?} refuses:\n{all}");
            assert!(
                all.contains("<redacted>"),
                "{args:?} points at the secret:\n{all}"
            );
            assert_clean(&format!("`{}`", args.join(" ")), &all);
        }
    }
    std::fs::remove_dir_all(dir).ok();

    let gw = Gateway::start_with_env("secrets-serve", &routes(), ENV);
    let mut client = gw.client("/mcp");
    client
        .headers
        .push(("authorization".into(), "Bearer planted-token-3e77".into()));
    client.initialize().await;
    let answer = client
        .call(
            "tools/call",
            json!({ "name": "db__echo", "arguments": { "message": "hi" } }),
        )
        .await;
    assert_eq!(answer["content"][0]["text"], "hi", "{answer}");
    // A call to the route that is down: its error names the route, not the URL's secret.
    let error = client
        .error(
            "tools/call",
            json!({ "name": "partner__anything", "arguments": {} }),
        )
        .await;
    assert_clean("an error sent to a client", &error.to_string());
    // A child that prints its key on stderr and exits: its callers learn that it
    // exited, never what it printed; the operator sees the line with the key scrubbed.
    let error = client
        .error(
            "tools/call",
            json!({ "name": "leaky__anything", "arguments": {} }),
        )
        .await;
    assert_clean("an error sent to a client", &error.to_string());
    assert!(!error.to_string().contains("login failed"), "{error}");
    gw.wait_log("login failed with key <redacted>", Duration::from_secs(10))
        .await;

    // The secret reference in `args` reached the tool server as its value.
    let children = children_cmdlines(gw.pid());
    assert!(
        children.iter().any(
            |c| c.contains("planted-arg-ref-7f3a9c") && c.contains("--api-key=planted-kv-99aa")
        ),
        "the child's command line holds the resolved argument: {children:?}"
    );

    for path in ["/health", "/metrics", "/", "/readyz"] {
        let response = http(gw.admin, "GET", path, &[], b"").await;
        let body = String::from_utf8_lossy(&response.body).into_owned();
        assert_clean(&format!("GET {path}"), &body);
        if path == "/health" {
            assert!(
                body.contains("<redacted>"),
                "the endpoints are shown redacted: {body}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_clean("the log", &gw.logs());
}
