//! Users: the users file (`--users-file`, TOML) and the password hashes in it.
//!
//! Passwords are never stored. Each user has a SCRAM-SHA-256 verifier in PostgreSQL's
//! own text form (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, what
//! `pg_authid.rolpassword` holds, so verifiers can be copied from a PostgreSQL server),
//! and, only for users that must log in with md5 (old clients), PostgreSQL's md5 hash
//! `md5` || hex(md5(password || user name)). md5 is fast to brute-force, which is why it
//! is written only for the users that need it. The SCRAM checks here are the server side
//! of RFC 5802; the exchange of messages is server/'s business.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::roles::Role;
use crate::error::{WsError, WsResult, sqlstate};

/// PBKDF2 iterations of new verifiers: PostgreSQL's default `scram_iterations`. The
/// server never runs PBKDF2 at login (the client does), so this costs only `user add`.
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Salt of new verifiers, in bytes (PostgreSQL uses 16).
const SCRAM_SALT_BYTES: usize = 16;
/// SHA-256 output: the size of every SCRAM key and proof.
const KEY_BYTES: usize = 32;
/// Longest accepted password, in bytes; PostgreSQL's clients send at most about 1000.
pub const PASSWORD_BYTES_MAX: usize = 1024;
/// Longest user name, in bytes: PostgreSQL's NAMEDATALEN - 1.
pub const USER_NAME_BYTES_MAX: usize = 63;
/// Largest users file read, in bytes; far above any real list of users.
const USERS_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// How a user proves its password.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// SCRAM-SHA-256 (RFC 7677): the password never crosses the wire. The default.
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// PostgreSQL's md5 challenge, for clients too old for SCRAM.
    #[serde(rename = "md5")]
    Md5,
}

impl std::str::FromStr for Method {
    type Err = WsError;

    fn from_str(text: &str) -> WsResult<Method> {
        match text {
            "scram-sha-256" => Ok(Method::ScramSha256),
            "md5" => Ok(Method::Md5),
            other => Err(WsError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("unknown authentication method {other:?}; methods are scram-sha-256 and md5"),
            )),
        }
    }
}

/// What the server keeps of a SCRAM-SHA-256 password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: NonZeroU32,
    pub salt: Vec<u8>,
    stored_key: [u8; KEY_BYTES],
    server_key: [u8; KEY_BYTES],
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("ScramVerifier").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; KEY_BYTES] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message);
    tag.as_ref().try_into().expect("HMAC-SHA-256 is 32 bytes")
}

fn sha256(message: &[u8]) -> [u8; KEY_BYTES] {
    digest::digest(&digest::SHA256, message).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

impl ScramVerifier {
    /// The verifier of `password`: PBKDF2 over the SASLprep-normalized password (the raw
    /// bytes where normalization fails, as PostgreSQL does), then ClientKey -> StoredKey
    /// and ServerKey.
    pub fn derive(password: &str, salt: &[u8], iterations: NonZeroU32) -> ScramVerifier {
        let normalized = stringprep::saslprep(password).unwrap_or(std::borrow::Cow::Borrowed(password));
        let mut salted = [0u8; KEY_BYTES];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, normalized.as_bytes(), &mut salted);
        let client_key = hmac_sha256(&salted, b"Client Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// A verifier with a fresh random salt and the default iterations.
    pub fn new_for(password: &str) -> ScramVerifier {
        let salt: [u8; SCRAM_SALT_BYTES] = rand::random();
        let iterations = NonZeroU32::new(SCRAM_ITERATIONS).expect("non-zero constant");
        ScramVerifier::derive(password, &salt, iterations)
    }

    /// A verifier no password matches, the same for a name on every call, so that a
    /// client cannot tell an unknown user from a wrong password by its salt (PostgreSQL's
    /// "mock authentication"). `secret` is per process and never leaves it.
    pub fn mock(user: &str, secret: &[u8]) -> ScramVerifier {
        let salt = hmac_sha256(secret, format!("salt:{user}").as_bytes());
        ScramVerifier {
            iterations: NonZeroU32::new(SCRAM_ITERATIONS).expect("non-zero constant"),
            salt: salt[..SCRAM_SALT_BYTES].to_vec(),
            // Matching it would take a SHA-256 preimage of a secret value.
            stored_key: hmac_sha256(secret, format!("stored:{user}").as_bytes()),
            server_key: hmac_sha256(secret, format!("server:{user}").as_bytes()),
        }
    }

    /// Parses PostgreSQL's text form.
    pub fn parse(text: &str) -> Result<ScramVerifier, String> {
        let bad =
            || "a SCRAM verifier looks like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".to_string();
        let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: NonZeroU32 =
            iterations.parse().map_err(|_| format!("SCRAM iterations {iterations:?} is not a positive integer"))?;
        let decode = |what: &str, value: &str| {
            BASE64.decode(value).map_err(|error| format!("SCRAM {what} is not base64: {error}"))
        };
        let salt = decode("salt", salt)?;
        if salt.is_empty() {
            return Err("SCRAM salt is empty".into());
        }
        let key = |what: &str, value: &str| -> Result<[u8; KEY_BYTES], String> {
            decode(what, value)?.try_into().map_err(|_| format!("SCRAM {what} must be {KEY_BYTES} bytes"))
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: key("StoredKey", stored)?,
            server_key: key("ServerKey", server)?,
        })
    }

    /// Checks a client's proof over the exchange's AuthMessage (RFC 5802 section 3):
    /// ClientKey = proof XOR HMAC(StoredKey, AuthMessage) must hash to StoredKey. On
    /// success returns the ServerSignature the client checks in turn.
    pub fn verify(&self, auth_message: &[u8], client_proof: &[u8]) -> Option<[u8; KEY_BYTES]> {
        if client_proof.len() != KEY_BYTES {
            return None;
        }
        let signature = hmac_sha256(&self.stored_key, auth_message);
        let mut client_key = [0u8; KEY_BYTES];
        for (out, (proof, sig)) in client_key.iter_mut().zip(client_proof.iter().zip(signature)) {
            *out = proof ^ sig;
        }
        constant_time::verify_slices_are_equal(&sha256(&client_key), &self.stored_key).ok()?;
        Some(hmac_sha256(&self.server_key, auth_message))
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key)
        )
    }
}

/// PostgreSQL's stored md5 hash: `md5` || hex(md5(password || user)).
pub fn md5_hash(user: &str, password: &str) -> String {
    format!("md5{:x}", md5::compute(format!("{password}{user}")))
}

/// Whether an md5 PasswordMessage answers the challenge `salt` for the stored hash:
/// the client sends `md5` || hex(md5(hex part of the stored hash || salt)).
pub fn md5_response_matches(stored: &str, salt: &[u8; 4], response: &str) -> bool {
    let Some(inner) = stored.strip_prefix("md5") else {
        return false;
    };
    let mut salted = inner.as_bytes().to_vec();
    salted.extend_from_slice(salt);
    let expected = format!("md5{:x}", md5::compute(salted));
    constant_time::verify_slices_are_equal(expected.as_bytes(), response.as_bytes()).is_ok()
}

fn is_md5_hash(text: &str) -> bool {
    text.strip_prefix("md5")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// One user as the server uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub method: Method,
    pub scram: ScramVerifier,
    /// Present only for md5 users.
    pub md5: Option<String>,
}

impl User {
    /// A user with hashes of `password`, checked against the limits.
    pub fn new(name: &str, role: Role, method: Method, password: &str) -> WsResult<User> {
        check_name(name)?;
        if password.is_empty() {
            return Err(WsError::new(sqlstate::INVALID_PARAMETER_VALUE, "the password is empty"));
        }
        if password.len() > PASSWORD_BYTES_MAX {
            return Err(WsError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("the password is longer than {PASSWORD_BYTES_MAX} bytes"),
            ));
        }
        Ok(User {
            name: name.to_string(),
            role,
            method,
            scram: ScramVerifier::new_for(password),
            md5: (method == Method::Md5).then(|| md5_hash(name, password)),
        })
    }
}

fn check_name(name: &str) -> WsResult<()> {
    if name.is_empty() || name.len() > USER_NAME_BYTES_MAX || name.chars().any(char::is_control) {
        return Err(WsError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("user name {name:?} must be 1 to {USER_NAME_BYTES_MAX} bytes without control characters"),
        ));
    }
    Ok(())
}

/// `[[user]]` as written in the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserToml {
    name: String,
    role: Role,
    #[serde(default)]
    method: Method,
    scram: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    md5: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersToml {
    #[serde(default, rename = "user")]
    users: Vec<UserToml>,
}

/// The users of one server, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: BTreeMap<String, User>,
}

impl Users {
    /// Reads a users file; every problem names the file, and the line where there is one.
    pub fn load(path: &Path) -> WsResult<Users> {
        let config_error = |message: String| WsError::new(sqlstate::CONFIG_FILE_ERROR, message);
        let size = std::fs::metadata(path)
            .map_err(|error| config_error(format!("users file {}: {error}", path.display())))?
            .len();
        if size > USERS_FILE_BYTES_MAX {
            return Err(config_error(format!(
                "users file {} is {size} bytes; the limit is {USERS_FILE_BYTES_MAX}",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|error| config_error(format!("users file {}: {error}", path.display())))?;
        Users::parse(path, &text)
    }

    /// Like [`Users::load`], but a missing file is an empty list (for `user add`).
    pub fn load_or_empty(path: &Path) -> WsResult<Users> {
        match std::fs::metadata(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Users::default()),
            _ => Users::load(path),
        }
    }

    fn parse(path: &Path, text: &str) -> WsResult<Users> {
        let parsed: UsersToml = toml::from_str(text).map_err(|error| crate::catalog::toml_error(path, text, &error))?;
        let mut users = BTreeMap::new();
        for entry in parsed.users {
            let at = |message: String| {
                let line = line_of_name(text, &entry.name);
                WsError::new(sqlstate::CONFIG_FILE_ERROR, format!("{}:{line}: {message}", path.display()))
            };
            check_name(&entry.name).map_err(|error| at(error.message))?;
            let scram = ScramVerifier::parse(&entry.scram)
                .map_err(|message| at(format!("user {:?}: {message}", entry.name)))?;
            match &entry.md5 {
                Some(hash) if !is_md5_hash(hash) => {
                    return Err(at(format!("user {:?}: md5 must be \"md5\" and 32 lower-case hex digits", entry.name)));
                }
                None if entry.method == Method::Md5 => {
                    return Err(at(format!("user {:?}: method md5 needs an md5 hash", entry.name)));
                }
                _ => {}
            }
            let user = User { name: entry.name.clone(), role: entry.role, method: entry.method, scram, md5: entry.md5 };
            if users.insert(entry.name.clone(), user).is_some() {
                return Err(at(format!("user {:?} is declared twice", entry.name)));
            }
        }
        Ok(Users { users })
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Adds a user, replacing one of the same name; returns whether one was replaced.
    pub fn upsert(&mut self, user: User) -> bool {
        self.users.insert(user.name.clone(), user).is_some()
    }

    fn render(&self) -> WsResult<String> {
        let body = UsersToml {
            users: self
                .users
                .values()
                .map(|user| UserToml {
                    name: user.name.clone(),
                    role: user.role,
                    method: user.method,
                    scram: user.scram.to_string(),
                    md5: user.md5.clone(),
                })
                .collect(),
        };
        let text = toml::to_string_pretty(&body)
            .map_err(|error| WsError::internal(format!("users file serialization: {error}")))?;
        Ok(format!(
            "# Users of a watershed server: salted password hashes, never passwords.\n\
             # Written by `watershed user add`; a running server re-reads it when it changes.\n{text}"
        ))
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> WsResult<()> {
        crate::catalog::write_text_atomic(path, &self.render()?, true)
    }
}

fn line_of_name(text: &str, name: &str) -> usize {
    let quoted = format!("\"{name}\"");
    text.lines()
        .position(|line| line.trim_start().starts_with("name") && line.contains(&quoted))
        .map_or(1, |index| index + 1)
}

/// `watershed user add`: adds or replaces one user in the file at `path` (created when
/// missing). Returns whether a user of that name was replaced.
pub fn add_user(path: &Path, name: &str, role: Role, method: Method, password: &str) -> WsResult<bool> {
    let mut users = Users::load_or_empty(path)?;
    let replaced = users.upsert(User::new(name, role, method, password)?);
    users.save(path)?;
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==,
    /// 4096 iterations; its client proof must verify and its server signature match.
    #[test]
    fn rfc7677_example_verifies() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::derive("pencil", &salt, NonZeroU32::new(4096).unwrap());
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = BASE64.decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
        let server_signature = verifier.verify(auth_message.as_bytes(), &proof).expect("the proof holds");
        assert_eq!(BASE64.encode(server_signature), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(verifier.verify(auth_message.as_bytes(), &wrong).is_none());
        assert!(verifier.verify(auth_message.as_bytes(), &proof[..31]).is_none());
    }

    #[test]
    fn verifier_text_round_trips_and_rejects_garbage() {
        let verifier = ScramVerifier::new_for("secret");
        assert_eq!(ScramVerifier::parse(&verifier.to_string()).unwrap(), verifier);
        for bad in ["", "md5abc", "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA", "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA"] {
            assert!(ScramVerifier::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn md5_matches_postgresql() {
        // PostgreSQL: SELECT 'md5' || md5('secret' || 'alice').
        assert_eq!(md5_hash("alice", "secret"), format!("md5{:x}", md5::compute("secretalice")));
        let stored = md5_hash("alice", "secret");
        let salt = [1, 2, 3, 4];
        let mut inner = stored.as_bytes()[3..].to_vec();
        inner.extend_from_slice(&salt);
        let response = format!("md5{:x}", md5::compute(inner));
        assert!(md5_response_matches(&stored, &salt, &response));
        assert!(!md5_response_matches(&stored, &[4, 3, 2, 1], &response));
    }

    #[test]
    fn mock_verifier_is_stable_and_matches_nothing() {
        let a = ScramVerifier::mock("nobody", b"secret");
        assert_eq!(a, ScramVerifier::mock("nobody", b"secret"));
        assert_ne!(a.salt, ScramVerifier::mock("somebody", b"secret").salt);
        assert!(a.verify(b"anything", &[0u8; KEY_BYTES]).is_none());
    }

    #[test]
    fn users_file_round_trips_replaces_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        assert!(!add_user(&path, "alice", Role::Read, Method::ScramSha256, "pw1").unwrap());
        assert!(!add_user(&path, "bob", Role::Admin, Method::Md5, "pw2").unwrap());
        assert!(add_user(&path, "alice", Role::Write, Method::ScramSha256, "pw3").unwrap());
        let users = Users::load(&path).unwrap();
        assert_eq!(users.len(), 2);
        let alice = users.get("alice").unwrap();
        assert_eq!((alice.role, alice.method, alice.md5.is_none()), (Role::Write, Method::ScramSha256, true));
        let bob = users.get("bob").unwrap();
        assert_eq!(bob.md5.as_deref(), Some(md5_hash("bob", "pw2").as_str()));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("pw1") && !text.contains("pw3"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn empty_password_and_broken_files_are_refused() {
        assert!(User::new("alice", Role::Read, Method::ScramSha256, "").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(&path, "[[user]]\nname = \"x\"\nrole = \"root\"\nscram = \"\"\n").unwrap();
        let error = Users::load(&path).unwrap_err();
        assert_eq!(error.code, sqlstate::CONFIG_FILE_ERROR);
        assert!(error.message.contains("users.toml:3"), "{}", error.message);
        std::fs::write(&path, "[[user]]\nname = \"x\"\nrole = \"read\"\nmethod = \"md5\"\nscram = \"SCRAM-SHA-256$4096:c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n").unwrap();
        let error = Users::load(&path).unwrap_err();
        assert!(error.message.contains("needs an md5 hash"), "{}", error.message);
        assert!(Users::load(&dir.path().join("missing.toml")).is_err());
        assert!(Users::load_or_empty(&dir.path().join("missing.toml")).unwrap().is_empty());
    }
}
