//! Shaping what agents see, against the official Python SDK's FastMCP server: a route's
//! tools filtered, renamed, described and annotated by the platform team
//! (`[route.tools]`, `[route.tools.override.NAME]`), and each client held to the tools
//! its `[[clients]] tools` name: absent from its list, refused on call with a message
//! that says why.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use mcp_edge_tests::{Gateway, Mcp, ServerProc, peer, text};
use serde_json::{Value, json};

async fn tools(mcp: &mut Mcp) -> Vec<Value> {
    let answer = mcp.call("tools/list", json!({})).await;
    answer["tools"].as_array().unwrap().clone()
}

fn named<'a>(tools: &'a [Value], name: &str) -> &'a Value {
    tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {tools:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_filtered_renamed_described_annotated_and_granted_per_client() {
    let py1 = peer("py1/bin/python");
    let dir = mcp_edge_tests::scratch_dir("curation-files");
    let failing = dir.join("fail");
    let fail_while = failing.display().to_string();
    let server = ServerProc::start(
        &py1,
        &[
            "tests/peers/fastmcp_server.py",
            "--http",
            "0",
            "--fail-while",
            &fail_while,
        ],
        &[],
    );
    let routes = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n\
         [[clients]]\nname = \"ops\"\ntoken = {{ env = \"CURATION_OPS\" }}\nroutes = [\"*\"]\n\n\
         [[clients]]\nname = \"reader\"\ntoken = {{ env = \"CURATION_READER\" }}\nroutes = [\"fast\"]\n\
         tools = [\"fast__find\", \"fast__add\"]\n\n\
         [[route]]\nname = \"fast\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprotocol = \"streamable-http\"\n\n\
         [route.tools]\nexclude = [\"forget_sessions\", \"add_tool\", \"announce_tools\"]\n\n\
         [route.tools.override.lookup]\nname = \"find\"\ndescription = \"Find a value by its key\"\n\n\
         [route.tools.override.write]\nannotations = {{ destructiveHint = true, title = \"Write a key\" }}\n\n\
         [route.tools.override.echo]\nannotations = {{ readOnlyHint = true }}\n",
        server.port
    );
    let gw = Gateway::start_with_env(
        "curation",
        &routes,
        &[
            ("CURATION_OPS", "ops-token-3"),
            ("CURATION_READER", "reader-token-4"),
        ],
    );

    // The platform team's view of the route.
    let mut ops = gw.client_with_token("ops-token-3").await;
    let listed = tools(&mut ops).await;
    let names: Vec<&str> = listed.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for gone in [
        "fast__lookup",
        "fast__forget_sessions",
        "fast__add_tool",
        "fast__announce_tools",
    ] {
        assert!(!names.contains(&gone), "{gone} is listed: {names:?}");
    }
    let find = named(&listed, "fast__find");
    assert_eq!(find["description"], "Find a value by its key", "{find}");
    // What the server said and the override did not touch stays.
    assert_eq!(find["annotations"]["readOnlyHint"], true, "{find}");
    let write = named(&listed, "fast__write");
    assert_eq!(write["annotations"]["destructiveHint"], true, "{write}");
    assert_eq!(write["annotations"]["title"], "Write a key", "{write}");
    assert_eq!(write["annotations"]["readOnlyHint"], false, "{write}");

    // A renamed tool is called by its new name, and only by it.
    let r = ops
        .call(
            "tools/call",
            json!({ "name": "fast__find", "arguments": { "key": "k" } }),
        )
        .await;
    assert_eq!(text(&r), "value of k");
    let error = ops
        .error(
            "tools/call",
            json!({ "name": "fast__lookup", "arguments": { "key": "k" } }),
        )
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: fast__lookup"),
        "{error}"
    );
    let error = ops
        .error(
            "tools/call",
            json!({ "name": "fast__forget_sessions", "arguments": {} }),
        )
        .await;
    assert!(
        error["message"].as_str().unwrap().contains("Unknown tool"),
        "{error}"
    );

    // The reader sees and calls only its two tools.
    let mut reader = gw.client_with_token("reader-token-4").await;
    let listed = tools(&mut reader).await;
    let mut names: Vec<&str> = listed.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["fast__add", "fast__find"]);
    let r = reader
        .call(
            "tools/call",
            json!({ "name": "fast__add", "arguments": { "a": 2, "b": 3 } }),
        )
        .await;
    assert_eq!(text(&r), "5");
    let error = reader
        .error(
            "tools/call",
            json!({ "name": "fast__write", "arguments": { "key": "x" } }),
        )
        .await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("fast__write is not granted to client reader"),
        "{error}"
    );
    // The write was never made.
    let r = ops
        .call(
            "tools/call",
            json!({ "name": "fast__writes", "arguments": {} }),
        )
        .await;
    assert_eq!(text(&r), "");

    // The retry policy reads the annotations as overridden: while the server answers
    // 503, `echo` (marked read-only here) is retried, `write` (not) is not.
    std::fs::write(&failing, b"").unwrap();
    let retries = |gw: &Gateway| {
        let admin = gw.admin;
        async move {
            let metrics = mcp_edge_tests::http(admin, "GET", "/metrics", &[], b"").await;
            let text = String::from_utf8_lossy(&metrics.body).into_owned();
            text.lines()
                .find_map(|l| l.strip_prefix("mcp_edge_retries_total{route=\"fast\"} "))
                .map_or(0, |v| v.trim().parse::<u64>().unwrap())
        }
    };
    let before = retries(&gw).await;
    ops.error(
        "tools/call",
        json!({ "name": "fast__write", "arguments": { "key": "y" } }),
    )
    .await;
    assert_eq!(retries(&gw).await, before, "a write is not retried");
    ops.error(
        "tools/call",
        json!({ "name": "fast__echo", "arguments": { "message": "m" } }),
    )
    .await;
    assert!(retries(&gw).await > before, "a read-only tool is retried");
    std::fs::remove_dir_all(dir).ok();
}

/// A virtual server: `/mcp/{server}` shows its chosen tools, prompts and resources
/// across routes, with its own instructions; everything else is unknown there, and
/// `/mcp` still shows everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_server_shows_only_what_it_chose_across_routes() {
    let py1 = peer("py1/bin/python");
    let server = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let routes = format!(
        "[[route]]\nname = \"fast\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprotocol = \"streamable-http\"\n\n\
         [route.tools.override.lookup]\nname = \"find\"\n\n\
         [[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n\n\
         [[server]]\nname = \"triage\"\ntools = [\"fast__find\", \"demo__echo\"]\nprompts = [\"demo__*\"]\n\
         resources = [\"demo\"]\ninstructions = \"Triage: find values and echo them back.\"\n",
        server.port
    );
    let gw = Gateway::start("virtual-server", &routes);
    let mut triage = gw.client("/mcp/triage");
    let init = triage.initialize().await;
    assert_eq!(
        init["instructions"], "Triage: find values and echo them back.",
        "{init}"
    );
    let mut names = triage.tool_names().await;
    names.sort_unstable();
    assert_eq!(names, ["demo__echo", "fast__find"]);
    let r = triage
        .call(
            "tools/call",
            json!({ "name": "fast__find", "arguments": { "key": "k" } }),
        )
        .await;
    assert_eq!(text(&r), "value of k");
    for (name, arguments) in [
        ("demo__add", json!({ "a": 1, "b": 2 })),
        ("fast__echo", json!({ "message": "m" })),
    ] {
        let error = triage
            .error(
                "tools/call",
                json!({ "name": name, "arguments": arguments }),
            )
            .await;
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains(&format!("Unknown tool: {name}")),
            "{error}"
        );
    }
    let prompts = triage.call("prompts/list", json!({})).await;
    let prompts: Vec<&str> = prompts["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(prompts, ["demo__greet"]);
    let resources = triage.call("resources/list", json!({})).await;
    let uris: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        ["demo://readme"],
        "the FastMCP route's resources stay out"
    );
    let error = triage
        .error("resources/read", json!({ "uri": "peer://note" }))
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Resource not found"),
        "{error}"
    );

    // /mcp shows everything still.
    let mut all = gw.client("/mcp");
    all.initialize().await;
    let names = all.tool_names().await;
    assert!(
        names.contains(&"demo__add".to_owned()) && names.contains(&"fast__echo".to_owned()),
        "{names:?}"
    );
    // An endpoint that is neither a route nor a server.
    let resp = gw.client("/mcp/nothing").post(&json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } }
    })).await;
    assert_eq!(resp.status, 404);
    assert!(
        String::from_utf8_lossy(&resp.body).contains("no route or server named `nothing`"),
        "{:?}",
        resp.body
    );
}

/// `mcp-edge check --tools`: per client and endpoint, the tools it will see, asked of
/// the tool servers through the gateway's own code; a route that does not answer is
/// described by its rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_each_clients_tools() {
    let py1 = peer("py1/bin/python");
    let server = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let dir = mcp_edge_tests::scratch_dir("check-tools");
    std::fs::write(
        dir.join("routes.toml"),
        format!(
            "[[clients]]\nname = \"ops\"\ntoken = {{ env = \"CHECK_OPS\" }}\nroutes = [\"*\"]\n\n\
             [[clients]]\nname = \"reader\"\ntoken = {{ env = \"CHECK_READER\" }}\nroutes = [\"fast\"]\n\
             tools = [\"fast__find\", \"fast__add\"]\n\n\
             [[route]]\nname = \"fast\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprotocol = \"streamable-http\"\n\n\
             [route.tools.override.lookup]\nname = \"find\"\n\n\
             [[route]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9/mcp\"\n\n\
             [route.tools]\nexclude = [\"drop_*\"]\n\n\
             [[server]]\nname = \"triage\"\ntools = [\"fast__find\"]\n",
            server.port
        ),
    )
    .unwrap();
    let out = std::process::Command::new(mcp_edge_tests::mcp_edge())
        .current_dir(&dir)
        .env("CHECK_OPS", "ops-token")
        .env("CHECK_READER", "reader-token")
        .args(["check", "--tools", "routes.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "reader on /mcp: 2 tools: fast__add, fast__find\n",
        "reader on /mcp/triage: 1 tool: fast__find\n",
        "ops on /mcp/triage: 1 tool: fast__find\n",
        "route gone did not answer; by its rules: exclude drop_*; prefix `gone`\n",
    ] {
        assert!(
            stdout.contains(line),
            "{line:?} missing from:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ops = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("ops on /mcp:"))
        .unwrap();
    assert!(
        ops.contains("fast__find") && ops.contains("fast__write") && !ops.contains("fast__lookup"),
        "{ops}"
    );
    std::fs::remove_dir_all(dir).ok();
}
