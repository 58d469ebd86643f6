//! Every refusal of the config layer, with its message and its position.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use mcp_edge_config::{Source, parse};

/// Parses `text`; returns every diagnostic as `line:col: severity: message [help]`.
fn diagnostics(text: &str) -> (bool, Vec<String>) {
    let source = Source::new("routes.toml", text);
    let (config, diags) = parse(&source);
    let rendered = diags
        .iter()
        .map(|d| {
            let l = source.locate(d);
            format!(
                "{}:{}: {}: {} [help: {}]",
                l.line.unwrap_or(0),
                l.column.unwrap_or(0),
                d.severity.as_str(),
                d.message,
                d.help.clone().unwrap_or_default()
            )
        })
        .collect();
    (config.is_some(), rendered)
}

/// Asserts `text` is refused and one diagnostic starts with `at` (`line:col`) and
/// contains every fragment.
fn refused(text: &str, at: &str, fragments: &[&str]) {
    let (ok, diags) = diagnostics(text);
    assert!(!ok, "accepted: {text}");
    assert!(
        diags
            .iter()
            .any(|d| d.starts_with(&format!("{at}: error: "))
                && fragments.iter().all(|f| d.contains(f))),
        "no error at {at} with {fragments:?} in {diags:#?}"
    );
}

const ROUTE: &str = "[[route]]\nname = \"a\"\ncommand = \"srv\"\n";

#[test]
fn syntax_errors_point_at_line_and_column() {
    refused(
        "[gateway]\nlisten = \"127.0.0.1:80\n",
        "2:23",
        &["invalid basic string"],
    );
    refused("[[route]\nname = \"a\"\n", "1:9", &["unclosed array table"]);
}

#[test]
fn unknown_keys_are_refused_with_the_expected_ones() {
    refused(
        "[[route]]\nname = \"a\"\ncommand = \"srv\"\ntiemout = \"5s\"\n",
        "4:1",
        &["unknown field `tiemout`", "timeout", "check the spelling"],
    );
    refused("[gatway]\n", "1:2", &["unknown field `gatway`"]);
}

#[test]
fn inline_secrets_are_refused() {
    refused(
        &format!("{ROUTE}[[clients]]\nname = \"agent\"\ntoken = \"hunter2\"\nroutes = [\"a\"]\n"),
        "6:9",
        &["secrets are never written inline"],
    );
}

#[test]
fn duplicate_route_names() {
    refused(
        &format!("{ROUTE}{ROUTE}"),
        "5:8",
        &["two routes are named `a`"],
    );
}

#[test]
fn clients_may_only_be_granted_existing_routes() {
    refused(
        &format!(
            "{ROUTE}[[clients]]\nname = \"agent\"\ntoken = {{ env = \"T\" }}\nroutes = [\"a\", \"nope\"]\n"
        ),
        "7:16",
        &[
            "client `agent` is allowed route `nope`, which does not exist",
            "the routes are: a",
        ],
    );
}

#[test]
fn clients_with_one_credential_are_refused() {
    refused(
        &format!(
            "{ROUTE}[[clients]]\nname = \"x\"\ntoken = {{ env = \"T\" }}\nroutes = [\"*\"]\n[[clients]]\nname = \"y\"\ntoken = {{ env = \"T\" }}\nroutes = [\"*\"]\n"
        ),
        "10:9",
        &["clients `x` and `y` use the same credential (env:T)"],
    );
}

#[test]
fn colliding_tool_prefixes() {
    refused(
        &format!("{ROUTE}[[route]]\nname = \"b\"\ncommand = \"srv\"\nprefix = \"a\"\n"),
        "7:10",
        &["routes `a` and `b` both use the tool prefix `a`"],
    );
    refused(
        "[[route]]\nname = \"a\"\ncommand = \"s\"\nprefix = \"\"\n[[route]]\nname = \"b\"\ncommand = \"s\"\nprefix = \"\"\n",
        "8:10",
        &["routes `a` and `b` are both unprefixed"],
    );
    refused(
        "[[route]]\nname = \"my__db\"\ncommand = \"s\"\n",
        "2:8",
        &[
            "the route name (the default prefix) `my__db` contains the separator `__`",
            "prefix = \"my-db\"",
        ],
    );
    refused(
        "[gateway]\nname_separator = \".\"\n[[route]]\nname = \"a\"\ncommand = \"s\"\nprefix = \"x.y\"\n",
        "6:10",
        &["the prefix `x.y` contains the separator `.`"],
    );
}

#[test]
fn durations_and_limits_out_of_range() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "[defaults]\ntimeout = \"0s\"\n",
            "2:11",
            &["timeout = \"0s\" is out of range", "from 1ms to 1d"],
        ),
        (
            "[defaults]\ntimeout = 30\n",
            "2:11",
            &["durations need a unit: write \"30s\""],
        ),
        (
            "[defaults]\ntimeout = \"30 sec\"\n",
            "2:11",
            &["invalid duration `30 sec`"],
        ),
        (
            "[defaults]\nretry = { attempts = 0 }\n",
            "2:22",
            &["retry.attempts = 0 is out of range", "from 1 to 10"],
        ),
        (
            "[defaults]\nretry = { attempts = 50 }\n",
            "2:22",
            &["retry.attempts = 50 is out of range"],
        ),
        (
            "[defaults]\nretry = { base = \"2s\", max = \"1s\" }\n",
            "2:30",
            &["retry.max (1s) is shorter than retry.base (2s)"],
        ),
        (
            "[defaults]\nretry = { budget = 1.5 }\n",
            "2:20",
            &["retry.budget = 1.5 is out of range"],
        ),
        (
            "[defaults]\nbreaker = { failure_ratio = 0.0 }\n",
            "2:29",
            &["breaker.failure_ratio = 0 is out of range"],
        ),
        (
            "[defaults]\nbreaker = { window = \"10ms\" }\n",
            "2:22",
            &["breaker.window = \"10ms\" is out of range"],
        ),
        (
            "[defaults]\nrate_limit = { burst = 10 }\n",
            "2:24",
            &["rate_limit needs per_second"],
        ),
        (
            "[defaults]\nrate_limit = { per_second = -5 }\n",
            "2:29",
            &["rate_limit.per_second = -5 is out of range"],
        ),
        (
            "[defaults]\nconcurrency = { max_in_flight = 0 }\n",
            "2:33",
            &["concurrency.max_in_flight = 0 is out of range"],
        ),
        (
            "[gateway]\nbusy_poll = \"20ms\"\n",
            "2:13",
            &["busy_poll = \"20ms\" is out of range", "from 0s to 10ms"],
        ),
        (
            "[[route]]\nname = \"a\"\ncommand = \"s\"\ncert_expiry = { warn = \"7d\", critical = \"30d\" }\n",
            "4:41",
            &["cert_expiry.critical (30d) must be shorter than cert_expiry.warn (7d)"],
        ),
    ];
    for (text, at, fragments) in cases {
        refused(text, at, fragments);
    }
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let text = "[defaults]\ntimeout = \"0s\"\nretry = { attempts = 0 }\n[[route]]\nname = \"a\"\nurl = \"ftp://x/\"\n[[route]]\nname = \"b\"\n";
    let (ok, diags) = diagnostics(text);
    assert!(!ok);
    let errors: Vec<_> = diags.iter().filter(|d| d.contains(": error: ")).collect();
    assert_eq!(errors.len(), 4, "{diags:#?}");
}

#[test]
fn endpoints_are_checked() {
    refused(
        "[[route]]\nname = \"a\"\n",
        "2:8",
        &["route `a` says nowhere to find its tool server"],
    );
    refused(
        "[[route]]\nname = \"a\"\ncommand = \"s\"\nurl = \"http://x/\"\n",
        "4:7",
        &["sets both `command` and `url`"],
    );
    refused(
        "[[route]]\nname = \"a\"\nurl = \"ftp://x/\"\n",
        "3:7",
        &["scheme `ftp` is not supported"],
    );
    refused(
        "[[route]]\nname = \"a\"\nurl = \"docs:8080\"\n",
        "3:7",
        &["scheme `docs` is not supported"],
    );
    refused(
        "[[route]]\nname = \"a\"\nurl = \"not a url\"\n",
        "3:7",
        &["is not a URL"],
    );
    refused(
        "[[route]]\nname = \"a\"\nurl = \"https://user:pw@x/mcp\"\n",
        "3:7",
        &["carries credentials"],
    );
    refused(
        "[[route]]\nname = \"a\"\naddress = \"https://x:1\"\n",
        "3:11",
        &["takes host:port without a scheme"],
    );
    refused(
        "[[route]]\nname = \"a\"\naddress = \"x\"\n",
        "3:11",
        &["`x` has no port"],
    );
    refused(
        "[[route]]\nname = \"a\"\naddress = \"x:1/mcp\"\n",
        "3:11",
        &["is not host:port"],
    );
    refused(
        "[[route]]\nname = \"a\"\ncommand = []\n",
        "3:11",
        &["`command` is empty"],
    );
    refused(
        "[[route]]\nname = \"a b\"\ncommand = \"s\"\n",
        "2:8",
        &["route name `a b` is not allowed"],
    );
    refused(
        "[[route]]\nname = \"a\"\ncommand = \"s\"\nauth = { bearer = { env = \"T\" } }\n",
        "4:8",
        &["`auth` has no effect on a command route"],
    );
    refused(
        "[[route]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\nargs = [\"x\"]\n",
        "3:7",
        &["apply only to command routes"],
    );
    refused(
        "[[route]]\nname = \"a\"\nurl = \"https://x/\"\ntls = { client_cert = \"c.pem\" }\n",
        "4:23",
        &["mTLS needs both client_cert and client_key"],
    );
    refused(
        "[[route]]\nname = \"a\"\nurl = \"https://x/\"\nauth = { headers = { Host = \"y\" } }\n",
        "4:8",
        &["header `Host` is set by the gateway itself"],
    );
    refused(
        "[[route]]\nname = \"a\"\nurl = \"https://x/\"\nauth = { headers = { Authorization = \"Basic abc\" } }\n",
        "4:8",
        &["the Authorization header is written inline"],
    );
}

#[test]
fn listeners_and_boundaries_are_checked() {
    refused(
        "[gateway]\nlisten = \"localhost:80\"\n",
        "2:10",
        &["`localhost:80` is not an IP address and port"],
    );
    refused(
        "[gateway]\nlisten = \"127.0.0.1:80\"\nadmin = \"127.0.0.1:80\"\n",
        "3:9",
        &["admin and listen use the same address"],
    );
    refused(
        "[boundaries]\ntrusted_networks = [\"10.0.0.0/33\"]\n",
        "2:21",
        &["`10.0.0.0/33` is not a CIDR network"],
    );
    refused(
        "[boundaries]\ntrusted_domains = [\"*.corp.example\"]\n",
        "2:20",
        &["wildcards are not needed"],
    );
    refused(
        "[gateway]\nboundary_override = \"why\"\n",
        "2:21",
        &["boundary_override has no boundary to apply to"],
    );
    let (ok, diags) = diagnostics(
        "[boundaries]\ntrusted_networks = [\"10.0.0.1/8\", \"0.0.0.0/0\"]\ntrusted_domains = [\"local\"]\n",
    );
    assert!(ok);
    assert!(
        diags
            .iter()
            .any(|d| d.contains("warning: 10.0.0.1/8 has host bits set; it means 10.0.0.0/8")),
        "{diags:#?}"
    );
    assert!(
        diags
            .iter()
            .any(|d| d.contains("warning: trusted network 0.0.0.0/0 trusts every address")),
        "{diags:#?}"
    );
    assert!(
        diags
            .iter()
            .any(|d| d.contains("warning: trusted domain `local` is a single label")),
        "{diags:#?}"
    );
}

#[test]
fn route_overrides_merge_with_defaults_key_by_key() {
    let text = "[defaults]\ntimeout = \"10s\"\nretry = { attempts = 4, base = \"100ms\" }\nrate_limit = { per_second = 100 }\n[[route]]\nname = \"a\"\ncommand = \"s\"\nretry = { attempts = 2 }\nrate_limit = { burst = 5 }\n[[route]]\nname = \"b\"\ncommand = \"s\"\ntimeout = \"1m\"\n";
    let (config, diags) = parse(&Source::new("routes.toml", text));
    assert!(diags.is_empty(), "{diags:?}");
    let config = config.unwrap();
    let (a, b) = (&config.routes[0].policies, &config.routes[1].policies);
    assert_eq!(a.timeout.as_secs(), 10);
    assert_eq!(a.retry.attempts.get(), 2);
    assert_eq!(a.retry.base.as_millis(), 100);
    assert_eq!(a.retry.max.as_secs(), 2);
    let rl = a.rate_limit.route.unwrap();
    assert_eq!((rl.per_second.get(), rl.burst.get()), (100, 5));
    assert_eq!(b.timeout.as_secs(), 60);
    assert_eq!(b.retry.attempts.get(), 4);
    assert_eq!(b.rate_limit.route.unwrap().burst.get(), 100);
    assert_eq!(b.rate_limit.per_client, None);
    assert_eq!(
        b.max_timeout.as_secs(),
        240,
        "four times the timeout by default"
    );
    assert_eq!(b.attempt_timeout.as_secs(), 60, "the timeout by default");
}

#[test]
fn policy_keys_for_timeouts_idempotent_tools_and_clients() {
    let text = "[defaults]\nrate_limit = { per_client = { per_second = 5, burst = 2 } }\n[[route]]\nname = \"a\"\ncommand = \"s\"\ntimeout = \"2s\"\nattempt_timeout = \"500ms\"\nmax_timeout = \"1m\"\nretry = { idempotent_tools = [\"get_*\"], min_per_second = 0 }\nbreaker = { probes = 1, max_open_for = \"30s\" }\n";
    let (config, diags) = parse(&Source::new("routes.toml", text));
    assert!(diags.is_empty(), "{diags:?}");
    let p = &config.unwrap().routes[0].policies;
    assert_eq!(p.attempt_timeout.as_millis(), 500);
    assert_eq!(p.max_timeout.as_secs(), 60);
    assert!(p.retry.idempotent_tools[0].matches("get_weather"));
    assert_eq!(p.retry.min_per_second, 0);
    assert_eq!(
        (p.breaker.probes.get(), p.breaker.max_open_for.as_secs()),
        (1, 30)
    );
    assert_eq!(p.rate_limit.route, None);
    let client = p.rate_limit.per_client.unwrap();
    assert_eq!((client.per_second.get(), client.burst.get()), (5, 2));

    refused(
        "[[route]]\nname = \"a\"\ncommand = \"s\"\ntimeout = \"10s\"\nmax_timeout = \"5s\"\n",
        "5:15",
        &["max_timeout (5s) is shorter than timeout (10s)"],
    );
}

#[test]
fn a_long_open_period_is_its_own_default_maximum() {
    // Before, a default maximum was clamped to [open_for, 5m], which panics when
    // open_for is longer than 5 minutes: the gateway died reading a valid file.
    let text = "[[route]]\nname = \"a\"\ncommand = \"s\"\nbreaker = { open_for = \"10m\" }\n";
    let (config, diags) = parse(&Source::new("routes.toml", text));
    assert!(diags.is_empty(), "{diags:?}");
    let b = &config.unwrap().routes[0].policies.breaker;
    assert_eq!((b.open_for.as_secs(), b.max_open_for.as_secs()), (600, 600));
}

#[test]
fn workers_must_be_a_positive_count() {
    refused(
        &format!("[gateway]\nworkers = 0\n{ROUTE}"),
        "2:11",
        &["workers"],
    );
    let source = Source::new("routes.toml", format!("[gateway]\nworkers = 1\n{ROUTE}"));
    assert_eq!(parse(&source).0.unwrap().gateway.workers, Some(1));
    let source = Source::new("routes.toml", ROUTE);
    assert_eq!(parse(&source).0.unwrap().gateway.workers, None);
}

#[test]
fn busy_poll_takes_microseconds_and_warns_without_one_worker() {
    let (ok, diags) = diagnostics("[gateway]\nworkers = 1\nbusy_poll = \"100us\"\n");
    assert!(ok && diags.is_empty(), "{diags:#?}");
    let (ok, diags) = diagnostics("[gateway]\nworkers = 4\nbusy_poll = \"100us\"\n");
    assert!(ok);
    assert!(
        diags
            .iter()
            .any(|d| d
                .contains("3:13: warning: busy_poll takes effect only with workers = 1, not 4")),
        "{diags:#?}"
    );
}

#[test]
fn tool_overrides_must_leave_every_name_usable() {
    let text = "[[route]]\nname = \"a\"\ncommand = \"s\"\n[route.tools]\nexclude = [\"x_*\"]\n\
                [route.tools.override.lookup]\nname = \"find\"\ndescription = \"Find\"\n\
                annotations = { readOnlyHint = true, title = \"Find a key\" }\n";
    let (config, diags) = parse(&Source::new("routes.toml", text));
    assert!(diags.is_empty(), "{diags:?}");
    let naming = &config.unwrap().routes[0].naming;
    assert_eq!(naming.shown("lookup"), "find");
    assert_eq!(naming.upstream("find"), Some("lookup"));
    assert_eq!(naming.upstream("lookup"), None, "renamed away");
    assert_eq!(naming.upstream("x_y"), None, "excluded");
    assert_eq!(naming.upstream("other"), Some("other"));

    refused(
        "[[route]]\nname = \"a\"\ncommand = \"s\"\n[route.tools.override.one]\nname = \"same\"\n\
         [route.tools.override.two]\nname = \"same\"\n",
        "7:8",
        &["`two` and `one` would both be shown as `same`"],
    );
    refused(
        "[[route]]\nname = \"a\"\ncommand = \"s\"\n[route.tools.override.one]\nname = \"a__b\"\n",
        "5:8",
        &["`a__b` cannot be a tool name here"],
    );
    refused(
        "[[route]]\nname = \"a\"\ncommand = \"s\"\n[route.tools.override.one]\nannotations = { readOnly = true }\n",
        "5:17",
        &["readOnly"],
    );
    let (ok, diags) =
        diagnostics("[[route]]\nname = \"a\"\ncommand = \"s\"\n[route.tools.override.one]\n");
    assert!(ok);
    assert!(
        diags
            .iter()
            .any(|d| d.contains("warning: the override of `one` changes nothing")),
        "{diags:?}"
    );
}

#[test]
fn client_tool_grants_are_globs_over_prefixed_names() {
    let text = format!(
        "[[clients]]\nname = \"c\"\ntoken = {{ env = \"T\" }}\nroutes = [\"a\"]\ntools = [\"a__read_*\"]\n{ROUTE}"
    );
    let (config, diags) = parse(&Source::new("routes.toml", &text));
    assert!(diags.is_empty(), "{diags:?}");
    let tools = config.unwrap().clients[0].tools.clone().unwrap();
    assert!(tools[0].matches("a__read_file"));
    refused(
        &format!(
            "[[clients]]\nname = \"c\"\ntoken = {{ env = \"T\" }}\nroutes = [\"a\"]\ntools = [\"\"]\n{ROUTE}"
        ),
        "5:10",
        &["an empty tool pattern matches nothing"],
    );
}

#[test]
fn virtual_servers_have_names_of_their_own_and_real_routes() {
    let text = format!(
        "{ROUTE}[[server]]\nname = \"triage\"\ntools = [\"a__read_*\"]\nresources = [\"a\"]\ninstructions = \"hi\"\n"
    );
    let (config, diags) = parse(&Source::new("routes.toml", &text));
    assert!(diags.is_empty(), "{diags:?}");
    let server = &config.unwrap().servers[0];
    assert_eq!(
        (server.name.as_str(), server.resources.len()),
        ("triage", 1)
    );
    refused(
        &format!("{ROUTE}[[server]]\nname = \"a\"\ntools = [\"a__x\"]\n"),
        "5:8",
        &["`a` names a route or another server already"],
    );
    refused(
        &format!("{ROUTE}[[server]]\nname = \"s\"\nresources = [\"nope\"]\n"),
        "6:14",
        &["no route is called `nope`"],
    );
    refused(
        &format!("{ROUTE}[[server]]\nname = \"s/x\"\ntools = [\"a__x\"]\n"),
        "5:8",
        &["cannot be a path segment"],
    );
}

#[test]
fn per_client_sessions_are_for_one_streamable_http_server() {
    let text =
        "[[route]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/mcp\"\nsessions = \"per-client\"\n";
    let (config, diags) = parse(&Source::new("routes.toml", text));
    assert!(diags.is_empty(), "{diags:?}");
    assert!(config.unwrap().routes[0].per_client);
    let text =
        "[[route]]\nname = \"a\"\ncommand = \"s\"\nsessions = \"per-client\"\nper_client_max = 3\n";
    let (config, diags) = parse(&Source::new("routes.toml", text));
    assert!(diags.is_empty(), "{diags:?}");
    let route = &config.unwrap().routes[0];
    assert!(route.per_client && route.per_client_max == 3);
    refused(
        "[[route]]\nname = \"a\"\ncommand = \"s\"\nper_client_max = 0\n",
        "4:18",
        &["per_client_max = 0 is out of range"],
    );
    let text = "[[route]]\nname = \"a\"\nurl = \"ws://127.0.0.1:9/ws\"\n";
    let (config, diags) = parse(&Source::new("routes.toml", text));
    assert!(diags.is_empty(), "{diags:?}");
    assert!(
        config.unwrap().routes[0].per_client,
        "the default for a network route"
    );
    let urls = "urls = [\"http://127.0.0.1:9/mcp\", \"http://127.0.0.1:10/mcp\"]";
    let text = format!("[[route]]\nname = \"a\"\n{urls}\n");
    let (config, diags) = parse(&Source::new("routes.toml", &text));
    assert!(diags.is_empty(), "{diags:?}");
    assert!(
        !config.unwrap().routes[0].per_client,
        "balanced: shared by default"
    );
    let text = format!("[[route]]\nname = \"a\"\n{urls}\nsessions = \"per-client\"\n");
    let (config, diags) = parse(&Source::new("routes.toml", &text));
    assert!(diags.is_empty(), "{diags:?}");
    assert!(
        config.unwrap().routes[0].per_client,
        "and per client when asked"
    );
    refused(
        "[[route]]\nname = \"a\"\ncommand = \"s\"\nsessions = \"each\"\n",
        "4:12",
        &["sessions `each` is not known"],
    );
}
