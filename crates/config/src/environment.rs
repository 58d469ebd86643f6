//! Checks against the machine rather than the file: can every secret be read, does every
//! referenced file exist?
//!
//! They are kept apart from validation because the answer depends on where the check
//! runs. `mcp-edge serve` treats them as errors; `mcp-edge check` in a CI pipeline, where
//! the secrets and mounted certificates of production are absent, reports them as
//! warnings unless asked to be strict.

use std::path::Path;

use crate::diag::{Diagnostic, Span};
use crate::model::{Config, Endpoint};
use crate::secret::{MaybeSecret, SecretRef};

/// Every secret that cannot be resolved and every file that cannot be read, as errors.
// Long: one check per kind of file or secret the configuration names, in the file's order
pub fn environment_diagnostics(config: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut secret = |what: String, reference: &SecretRef, span: &Span| {
        if let Err(e) = reference.resolve() {
            out.push(
                Diagnostic::error(span.clone(), format!("{what}: {e}")).help(format!(
                    "provide {reference} before `mcp-edge serve` starts"
                )),
            );
        }
    };
    for client in &config.clients {
        if let crate::model::Credential::Token(token) = &client.credential {
            secret(
                format!("client `{}` token", client.name),
                token,
                &client.token_span,
            );
        }
    }
    for route in &config.routes {
        if let Some(bearer) = &route.auth.bearer {
            let span = route
                .auth
                .span
                .0
                .clone()
                .unwrap_or_else(|| route.name_span.span());
            secret(format!("route `{}` auth.bearer", route.name), bearer, &span);
        }
        for (header, value) in &route.auth.headers {
            if let MaybeSecret::Secret(reference) = value {
                let span = route
                    .auth
                    .span
                    .0
                    .clone()
                    .unwrap_or_else(|| route.name_span.span());
                secret(
                    format!("route `{}` header {header}", route.name),
                    reference,
                    &span,
                );
            }
        }
        if let Endpoint::Command(command) = &route.endpoint {
            for (i, arg) in command.args.iter().enumerate() {
                if let MaybeSecret::Secret(reference) = arg {
                    secret(
                        format!("route `{}` argument {}", route.name, i + 1),
                        reference,
                        &route.endpoint_span,
                    );
                }
            }
            for (name, value) in &command.env {
                if let MaybeSecret::Secret(reference) = value {
                    secret(
                        format!("route `{}` env {name}", route.name),
                        reference,
                        &route.endpoint_span,
                    );
                }
            }
        }
    }

    let mut file = |what: String, path: &Path, span: &Span| {
        if let Err(e) = std::fs::metadata(path) {
            out.push(
                Diagnostic::error(span.clone(), format!("{what} {}: {}", path.display(), e.kind()))
                    .help("relative paths are resolved against the directory of the routes file; `mcp-edge certs init` makes a development PKI"),
            );
        }
    };
    if let Some(tls) = &config.gateway.listen.tls {
        file("gateway tls.cert".into(), &tls.cert, &tls.span);
        file("gateway tls.key".into(), &tls.key, &tls.span);
        if let Some(ca) = &tls.client_ca {
            file("gateway tls.client_ca".into(), ca, &tls.span);
        }
    }
    for route in &config.routes {
        if let Some(tls) = &route.tls {
            if let Some(ca) = &tls.ca {
                file(format!("route `{}` tls.ca", route.name), ca, &tls.span);
            }
            if let Some((cert, key)) = &tls.client_identity {
                file(
                    format!("route `{}` tls.client_cert", route.name),
                    cert,
                    &tls.span,
                );
                file(
                    format!("route `{}` tls.client_key", route.name),
                    key,
                    &tls.span,
                );
            }
        }
        if let Endpoint::Command(command) = &route.endpoint
            && let Some(cwd) = &command.cwd
        {
            file(
                format!("route `{}` cwd", route.name),
                cwd,
                &route.endpoint_span,
            );
        }
    }
    out
}
