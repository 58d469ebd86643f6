//! `mcp-edge certs`: a development PKI, and a look at any certificate.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mcp_edge_client::dial::{self, ConnectError, Connection, TlsTarget};
use mcp_edge_tls::inspect::{format_time, now};
use mcp_edge_tls::pki::{Ca, Validity};
use mcp_edge_tls::{CertInfo, ClientTls, client_config};
use rustls_pki_types::ServerName;

/// `mcp-edge certs init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the files.
    #[arg(long, default_value = "certs")]
    pub dir: PathBuf,
    /// More names and addresses the gateway's and the tool server's certificates are
    /// for (repeat the flag), besides localhost, 127.0.0.1 and ::1.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// The client certificate's name (its CN; also a URI SAN spiffe://mcp-edge.local/client/NAME).
    #[arg(long, default_value = "dev-client")]
    pub client: String,
    /// How long the certificates are valid, in days.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Replace files that exist.
    #[arg(long)]
    pub force: bool,
}

/// `mcp-edge certs inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A PEM file, or HOST:PORT of a TLS server.
    pub target: String,
    /// CA bundle to verify a server's chain against (default: the Mozilla roots built in).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The name to verify, when it is not the host.
    #[arg(long)]
    pub server_name: Option<String>,
}

const FILES: [&str; 8] = [
    "ca.pem",
    "ca-key.pem",
    "gateway.pem",
    "gateway-key.pem",
    "client.pem",
    "client-key.pem",
    "tool-server.pem",
    "tool-server-key.pem",
];

/// The names every development certificate is for.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Writes a file; keys are readable by their owner only.
fn write(path: &Path, contents: &str, secret: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    if secret {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// `mcp-edge certs init`.
pub fn init(args: &InitArgs) -> ExitCode {
    match try_init(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-edge certs init: {e}");
            ExitCode::FAILURE
        }
    }
}

fn try_init(args: &InitArgs) -> Result<(), String> {
    if !args.force
        && let Some(existing) = FILES.iter().map(|f| args.dir.join(f)).find(|p| p.exists())
    {
        return Err(format!(
            "{} exists; pass --force to replace the development PKI",
            existing.display()
        ));
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    let validity = Validity::days(args.days);
    let fail = |e: rcgen::Error| format!("generating certificates failed: {e}");
    let ca = Ca::new("mcp-edge development CA", Validity::days(args.days + 1)).map_err(fail)?;
    let mut hosts: Vec<String> = LOCAL_NAMES.iter().map(|h| (*h).to_owned()).collect();
    for host in &args.hosts {
        if !hosts.contains(host) {
            hosts.push(host.clone());
        }
    }
    let server = ca.server(&hosts, validity).map_err(fail)?;
    // A tool server's own certificate, from the same CA, to try an HTTPS route on this
    // machine (the route trusts `ca.pem`).
    let tool_server = ca.server(&hosts, validity).map_err(fail)?;
    let uri = format!("spiffe://mcp-edge.local/client/{}", args.client);
    let client = ca
        .client(&args.client, Some(&uri), validity)
        .map_err(fail)?;
    let files = [
        ("ca.pem", &ca.pem.cert, false),
        ("ca-key.pem", &ca.pem.key, true),
        ("gateway.pem", &server.cert, false),
        ("gateway-key.pem", &server.key, true),
        ("client.pem", &client.cert, false),
        ("client-key.pem", &client.key, true),
        ("tool-server.pem", &tool_server.cert, false),
        ("tool-server-key.pem", &tool_server.key, true),
    ];
    for (name, contents, secret) in files {
        let path = args.dir.join(name);
        write(&path, contents, secret)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!(
            "wrote {}{}",
            path.display(),
            if secret {
                " (private key, mode 0600)"
            } else {
                ""
            }
        );
    }
    let d = args.dir.display();
    println!(
        "\nThe gateway's certificate is for {}; the client's identity is `{}` (CN) and `{uri}`.\n\
         To serve over HTTPS with mTLS, in routes.toml:\n\n\
         [gateway]\n\
         listen = \"127.0.0.1:8443\"\n\
         tls = {{ cert = \"{d}/gateway.pem\", key = \"{d}/gateway-key.pem\", client_ca = \"{d}/ca.pem\" }}\n\n\
         [[clients]]\n\
         name = \"{}\"\n\
         identity = \"{uri}\"\n\
         routes = [\"*\"]\n\n\
         tool-server.pem (same names, same CA) is for a tool server of your own to serve HTTPS\n\
         with, to try an HTTPS route on this machine; README.md (\"Trying each boundary on one\n\
         machine\") shows how.\n\n\
         Keys stay out of git (.gitignore has certs/*key*.pem).",
        hosts.join(", "),
        args.client,
        args.client,
    );
    Ok(())
}

fn print_cert(index: usize, total: usize, info: &CertInfo) {
    let now = now();
    let left = info.days_left(now);
    let state = if now > info.not_after {
        " (EXPIRED)"
    } else if now < info.not_before {
        " (NOT YET VALID: check the clock)"
    } else {
        ""
    };
    println!(
        "certificate {} of {total}{}",
        index + 1,
        if info.is_ca { " (CA)" } else { "" }
    );
    println!("  subject:   {}", info.subject);
    if !info.sans.is_empty() {
        println!("  SANs:      {}", info.sans.join(", "));
    }
    println!("  issuer:    {}", info.issuer);
    println!(
        "  valid:     {} to {}",
        format_time(info.not_before),
        format_time(info.not_after)
    );
    println!("  days left: {left}{state}");
}

/// `mcp-edge certs inspect`.
pub fn inspect(args: &InspectArgs) -> ExitCode {
    let path = Path::new(&args.target);
    if path.exists() {
        let pem = match std::fs::read(path) {
            Ok(pem) => pem,
            Err(e) => {
                eprintln!(
                    "mcp-edge certs inspect: cannot read {}: {e}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        };
        return match CertInfo::from_pem(&pem) {
            Ok(certs) => {
                println!("{}", path.display());
                for (i, info) in certs.iter().enumerate() {
                    print_cert(i, certs.len(), info);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcp-edge certs inspect: {}: {e}", path.display());
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mcp-edge certs inspect: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(inspect_server(args))
}

async fn handshake(
    host: &str,
    port: u16,
    name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
) -> Result<Vec<CertInfo>, String> {
    let target = TlsTarget {
        config,
        name: Some(name),
        on_handshake: None,
    };
    match dial::connect(host, port, Some(&target), Duration::from_secs(10)).await {
        Ok(Connection::Tls(tls)) => {
            let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
            chain.iter().map(|c| CertInfo::from_der(c)).collect()
        }
        Ok(Connection::Plain(_)) => Err("no TLS".into()),
        Err(ConnectError::Tls { failure, .. }) => Err(failure.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn inspect_server(args: &InspectArgs) -> ExitCode {
    let Some((host, port)) = args
        .target
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
    else {
        eprintln!(
            "mcp-edge certs inspect: `{}` is neither a file nor HOST:PORT",
            args.target
        );
        return ExitCode::from(2);
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = args.server_name.clone().unwrap_or_else(|| host.to_owned());
    let Ok(name) = ServerName::try_from(name.clone()) else {
        eprintln!("mcp-edge certs inspect: `{name}` is not a TLS server name");
        return ExitCode::from(2);
    };
    // First what the server presents, whatever it is; then whether it verifies.
    let look = ClientTls {
        insecure_skip_verify: true,
        ..ClientTls::default()
    };
    let verify = ClientTls {
        ca: args.ca.clone(),
        ..ClientTls::default()
    };
    let (Ok(look), Ok(verify)) = (
        client_config(&look, &[b"h2", b"http/1.1"]),
        client_config(&verify, &[b"h2", b"http/1.1"]),
    ) else {
        eprintln!("mcp-edge certs inspect: cannot read the CA bundle");
        return ExitCode::from(2);
    };
    let chain = match handshake(host, port, name.clone(), look).await {
        Ok(chain) => chain,
        Err(e) => {
            eprintln!("mcp-edge certs inspect: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{} presents {} certificate(s)", args.target, chain.len());
    for (i, info) in chain.iter().enumerate() {
        print_cert(i, chain.len(), info);
    }
    match handshake(host, port, name, verify).await {
        Ok(_) => {
            println!("verification: OK");
            ExitCode::SUCCESS
        }
        Err(why) => {
            // The sentence speaks of a route's tls.ca; here the CA bundle is --ca.
            let why = why.replace(
                "set tls.ca to the CA bundle",
                "pass --ca with the CA bundle",
            );
            println!("verification: FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}
