//! Who may connect: the server's [`Security`] (TLS acceptor, users, the open-listen
//! rule) and the per-connection [`Authenticator`] that runs the SCRAM-SHA-256 or md5
//! exchange of the wire protocol.
//!
//! Without a users file every client is admin (trust). With one, a user authenticates
//! with the method its entry names (SCRAM-SHA-256 unless `method = "md5"`). An unknown
//! user goes through a SCRAM exchange against a mock verifier and fails exactly like a
//! wrong password (28P01), as in PostgreSQL, so names cannot be probed. The hashes and
//! the RFC 5802 arithmetic live in session/users.rs; this file speaks the messages.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{Sink, SinkExt};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::tokio::TlsAcceptor;

use crate::config::Config;
use crate::error::{WsError, WsResult, sqlstate};
use crate::session::Role;
use crate::session::users::{Method, ScramVerifier, Users, md5_response_matches};

const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// Random bytes of the server's half of the SCRAM nonce.
const SERVER_NONCE_BYTES: usize = 18;

/// The server's TLS and authentication setup, loaded once at start.
pub struct Security {
    pub(super) tls: Option<TlsAcceptor>,
    tls_required: bool,
    users: Option<UsersSource>,
    insecure_no_auth: bool,
    /// Per-process key of the mock verifiers of unknown users.
    mock_secret: [u8; 32],
}

impl Security {
    /// Reads the TLS files and the users file named by `config`. Any problem is an
    /// error: the server must not start with less protection than it was asked for.
    pub fn load(config: &Config) -> WsResult<Security> {
        let settings = &config.security;
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(super::tls::acceptor(cert, key)?),
            (None, None) => None,
            _ => {
                return Err(WsError::new(
                    sqlstate::CONFIG_FILE_ERROR,
                    "TLS needs both a certificate and a key (--tls-cert and --tls-key)",
                ));
            }
        };
        if settings.tls_required && tls.is_none() {
            return Err(WsError::new(sqlstate::CONFIG_FILE_ERROR, "--tls-required needs --tls-cert and --tls-key"));
        }
        let users = match &settings.users_file {
            Some(path) => Some(UsersSource::open(path)?),
            None => None,
        };
        Ok(Security {
            tls,
            tls_required: settings.tls_required,
            users,
            insecure_no_auth: settings.insecure_no_auth,
            mock_secret: rand::random(),
        })
    }

    /// Refuses to serve a non-loopback address without authentication, unless the
    /// operator said so explicitly.
    pub fn check_listen(&self, address: SocketAddr) -> WsResult<()> {
        if self.users.is_some() || self.insecure_no_auth || address.ip().is_loopback() {
            return Ok(());
        }
        Err(WsError::new(
            sqlstate::CONFIG_FILE_ERROR,
            format!(
                "refusing to listen on {address} without authentication: anyone who can reach it \
                 would be admin. Pass --users-file FILE (add users with `watershed user add`), \
                 or --insecure-no-auth to accept that"
            ),
        ))
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    pub fn authenticates(&self) -> bool {
        self.users.is_some()
    }
}

/// What identifies one version of the users file: `user add` replaces it by rename, so
/// the inode changes even within one mtime tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        let metadata = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(FileStamp { len: metadata.len(), modified: metadata.modified().ok(), inode })
    }
}

/// The users file, re-read when it changes so that `watershed user add` applies to the
/// next connection without a restart.
struct UsersSource {
    path: PathBuf,
    current: Mutex<(FileStamp, Arc<Users>)>,
}

impl UsersSource {
    fn open(path: &Path) -> WsResult<UsersSource> {
        let stamp = FileStamp::of(path).map_err(|error| {
            WsError::new(sqlstate::CONFIG_FILE_ERROR, format!("users file {}: {error}", path.display()))
        })?;
        let users = Users::load(path)?;
        if users.is_empty() {
            tracing::warn!(file = %path.display(), "the users file has no users: nobody can connect");
        }
        Ok(UsersSource { path: path.to_path_buf(), current: Mutex::new((stamp, Arc::new(users))) })
    }

    /// The users as the file says now. A file that has become unreadable or broken keeps
    /// the last good list (and says so in the log): a bad edit must not open the server
    /// nor lock everybody out.
    fn current(&self) -> Arc<Users> {
        let mut current = self.current.lock().expect("users lock poisoned");
        let Ok(stamp) = FileStamp::of(&self.path) else {
            tracing::error!(file = %self.path.display(), "users file unreadable; keeping the users read before");
            return current.1.clone();
        };
        if stamp != current.0 {
            match Users::load(&self.path) {
                Ok(users) => {
                    tracing::info!(file = %self.path.display(), users = users.len(), "users file re-read");
                    *current = (stamp, Arc::new(users));
                }
                Err(error) => {
                    tracing::error!(%error, "users file broken; keeping the users read before");
                    // Report it once per change, not on every connection.
                    current.0 = stamp;
                }
            }
        }
        current.1.clone()
    }
}

/// Where one connection's authentication stands.
#[derive(Debug, Default)]
enum Stage {
    #[default]
    Start,
    /// AuthenticationSASL sent; the client's first SCRAM message is next. `role` is
    /// `None` for an unknown user, whose verifier is a mock one.
    ScramBegin {
        user: String,
        role: Option<Role>,
        verifier: ScramVerifier,
    },
    /// server-first-message sent; the client's proof is next.
    ScramProof {
        user: String,
        role: Option<Role>,
        verifier: ScramVerifier,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    /// md5 challenge sent with `salt`; the hashed password is next.
    Md5 {
        user: String,
        role: Role,
        stored: String,
        salt: [u8; 4],
    },
    Done,
}

/// The outcome of one message of the exchange.
pub enum Step {
    /// Another message from the client is needed.
    Continue,
    /// Authenticated with this role.
    Done(Role),
}

fn fatal(code: crate::error::SqlState, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.to_string(), message.into())))
}

fn password_failed(user: &str) -> PgWireError {
    fatal(sqlstate::INVALID_PASSWORD, format!("password authentication failed for user \"{user}\""))
}

fn malformed(what: &str) -> PgWireError {
    fatal(sqlstate::PROTOCOL_VIOLATION, format!("malformed SCRAM message: {what}"))
}

/// One connection's authentication state machine.
#[derive(Debug, Default)]
pub struct Authenticator {
    stage: Mutex<Stage>,
}

impl Authenticator {
    fn replace(&self, stage: Stage) -> Stage {
        std::mem::replace(&mut *self.stage.lock().expect("auth stage poisoned"), stage)
    }

    /// After the startup message: refuses plaintext when TLS is required, then either
    /// trusts the client (no users file) or sends the first challenge.
    pub async fn start<C>(&self, client: &mut C, security: &Security, user: Option<&str>) -> PgWireResult<Step>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let peer = client.socket_addr();
        if security.tls_required && !client.is_secure() {
            tracing::info!(%peer, "refused a plaintext connection: TLS is required");
            return Err(fatal(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                "this server accepts TLS connections only (connect with sslmode=require or stronger)",
            ));
        }
        let Some(user) = user.filter(|user| !user.is_empty()) else {
            return Err(fatal(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                "no PostgreSQL user name specified in startup packet",
            ));
        };
        let Some(source) = &security.users else {
            self.replace(Stage::Done);
            return Ok(Step::Done(Role::Admin));
        };
        let users = source.current();
        client.set_state(PgWireConnectionState::AuthenticationInProgress);
        let entry = users.get(user);
        let challenge = match entry {
            Some(entry) if entry.method == Method::Md5 => {
                let stored = entry.md5.clone().expect("the users file checks md5 users have a hash");
                let salt: [u8; 4] = rand::random();
                self.replace(Stage::Md5 { user: user.to_string(), role: entry.role, stored, salt });
                Authentication::MD5Password(salt.to_vec())
            }
            _ => {
                let verifier = match entry {
                    Some(entry) => entry.scram.clone(),
                    None => ScramVerifier::mock(user, &security.mock_secret),
                };
                let role = entry.map(|entry| entry.role);
                self.replace(Stage::ScramBegin { user: user.to_string(), role, verifier });
                Authentication::SASL(vec![SCRAM_SHA_256.to_string()])
            }
        };
        client.send(PgWireBackendMessage::Authentication(challenge)).await?;
        Ok(Step::Continue)
    }

    /// A password-family message from the client: the next step of the exchange.
    pub async fn respond<C>(&self, client: &mut C, message: PasswordMessageFamily) -> PgWireResult<Step>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let peer = client.socket_addr();
        // Whatever happens, a failed step leaves nothing to continue from.
        match self.replace(Stage::Done) {
            Stage::ScramBegin { user, role, verifier } => {
                let initial = message.into_sasl_initial_response()?;
                if initial.auth_method != SCRAM_SHA_256 {
                    return Err(fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("client selected an invalid SASL authentication mechanism {:?}", initial.auth_method),
                    ));
                }
                let data = initial.data.ok_or_else(|| malformed("empty client-first-message"))?;
                let client_first = std::str::from_utf8(&data).map_err(|_| malformed("not UTF-8"))?;
                let (gs2_header, client_first_bare, client_nonce) = parse_client_first(client_first)?;
                let server_nonce: [u8; SERVER_NONCE_BYTES] = rand::random();
                let nonce = format!("{client_nonce}{}", BASE64.encode(server_nonce));
                let server_first = format!("r={nonce},s={},i={}", BASE64.encode(&verifier.salt), verifier.iterations);
                self.replace(Stage::ScramProof {
                    user,
                    role,
                    verifier,
                    gs2_header: gs2_header.to_string(),
                    client_first_bare: client_first_bare.to_string(),
                    server_first: server_first.clone(),
                    nonce,
                });
                let continuation = Authentication::SASLContinue(server_first.into_bytes().into());
                client.send(PgWireBackendMessage::Authentication(continuation)).await?;
                Ok(Step::Continue)
            }
            Stage::ScramProof { user, role, verifier, gs2_header, client_first_bare, server_first, nonce } => {
                let response = message.into_sasl_response()?;
                let client_final = std::str::from_utf8(&response.data).map_err(|_| malformed("not UTF-8"))?;
                let (without_proof, proof) = client_final.rsplit_once(",p=").ok_or_else(|| malformed("no proof"))?;
                let mut fields = without_proof.split(',');
                let binding =
                    fields.next().and_then(|f| f.strip_prefix("c=")).ok_or_else(|| malformed("no channel binding"))?;
                let echoed = fields.next().and_then(|f| f.strip_prefix("r=")).ok_or_else(|| malformed("no nonce"))?;
                // The client must echo the gs2 header it sent (no channel binding data,
                // since none is offered) and the whole nonce.
                if binding != BASE64.encode(&gs2_header) || echoed != nonce {
                    return Err(malformed("channel binding or nonce does not match"));
                }
                let proof = BASE64.decode(proof).map_err(|_| malformed("proof is not base64"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = verifier.verify(auth_message.as_bytes(), &proof);
                let (Some(signature), Some(role)) = (signature, role) else {
                    tracing::info!(%peer, user, known = role.is_some(), "SCRAM authentication failed");
                    return Err(password_failed(&user));
                };
                let last = format!("v={}", BASE64.encode(signature));
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASLFinal(last.into_bytes().into())))
                    .await?;
                Ok(Step::Done(role))
            }
            Stage::Md5 { user, role, stored, salt } => {
                let password = message.into_password()?;
                if !md5_response_matches(&stored, &salt, &password.password) {
                    tracing::info!(%peer, user, "md5 authentication failed");
                    return Err(password_failed(&user));
                }
                Ok(Step::Done(role))
            }
            Stage::Start | Stage::Done => Err(fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "unexpected password message: no authentication is in progress",
            )),
        }
    }
}

/// Splits a client-first-message (RFC 5802 section 7) into the gs2 header, the bare
/// message and the client nonce. The user name inside is ignored, as PostgreSQL does:
/// the startup packet's user is the one authenticated.
fn parse_client_first(message: &str) -> PgWireResult<(&str, &str, &str)> {
    let (flag, rest) = message.split_once(',').ok_or_else(|| malformed("no gs2 header"))?;
    let (authzid, bare) = rest.split_once(',').ok_or_else(|| malformed("no gs2 header"))?;
    match flag {
        // "y": the client could bind the channel but thinks we cannot, which is true.
        "n" | "y" => {}
        _ if flag.starts_with("p=") => {
            return Err(fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "channel binding (SCRAM-SHA-256-PLUS) is not supported; use channel_binding=prefer or disable",
            ));
        }
        _ => return Err(malformed("bad channel binding flag")),
    }
    if !authzid.is_empty() {
        return Err(fatal(sqlstate::FEATURE_NOT_SUPPORTED, "SCRAM authorization identities are not supported"));
    }
    let gs2_header = &message[..flag.len() + authzid.len() + 2];
    let mut fields = bare.split(',');
    let user = fields.next().ok_or_else(|| malformed("no user name"))?;
    if user.starts_with("m=") {
        return Err(fatal(sqlstate::FEATURE_NOT_SUPPORTED, "SCRAM mandatory extensions are not supported"));
    }
    if !user.starts_with("n=") {
        return Err(malformed("no user name"));
    }
    let nonce = fields.next().and_then(|f| f.strip_prefix("r=")).ok_or_else(|| malformed("no nonce"))?;
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
        return Err(malformed("bad nonce"));
    }
    Ok((gs2_header, bare, nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_splits_and_refuses_what_is_not_offered() {
        let (header, bare, nonce) = parse_client_first("n,,n=,r=abc").unwrap();
        assert_eq!((header, bare, nonce), ("n,,", "n=,r=abc", "abc"));
        let (header, _, _) = parse_client_first("y,,n=user,r=xyz,ext=1").unwrap();
        assert_eq!(header, "y,,");
        for bad in ["p=tls-server-end-point,,n=,r=a", "n,a=admin,n=,r=a", "n,,m=x,n=,r=a", "n,,n=,r=", "n", "x,,n=,r=a"]
        {
            assert!(parse_client_first(bad).is_err(), "{bad}");
        }
    }
}
