//! Operators' proof of identity: TOTP codes (RFC 6238, `totp-rs`: SHA-1, 6 digits, 30 s
//! steps, one step of skew, compared in constant time), their secrets sealed under the
//! cluster's operator key (ChaCha20-Poly1305, the operator's name as associated data), and
//! the login credential `dirctl login` keeps: claims signed with the cluster's Ed25519 key.
//! What is decided with these (replays, lock-outs, roles, elevations) is
//! `engine::operators`'s.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use totp_rs::{Builder, Secret, Totp};

use engine::{Error, Result};

/// The control plane's secret that seals operators' TOTP secrets (32 random bytes).
pub const SEALING_SECRET: &str = "operator-sealing-key";

/// TOTP's time step, in seconds.
pub const STEP_SECS: u64 = 30;

/// A new operator key's bytes, to store as `SEALING_SECRET`.
pub fn generate_key() -> Vec<u8> {
    rand::random::<[u8; 32]>().to_vec()
}

/// A new TOTP secret (160 bits, as RFC 4226 recommends).
pub fn generate_secret() -> Vec<u8> {
    rand::random::<[u8; 20]>().to_vec()
}

fn totp(secret: &[u8], operator: &str) -> Result<Totp> {
    Builder::new()
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .with_account_name(operator)
        .with_issuer(Some("geodir"))
        .with_step_duration(STEP_SECS)
        .with_skew(1)
        .build()
        .map_err(|e| Error::Corrupt(format!("operator {operator}'s TOTP secret: {e}")))
}

/// The `otpauth://` URI an authenticator app takes (shown once, at enrolment).
pub fn otpauth_uri(secret: &[u8], operator: &str) -> Result<String> {
    totp(secret, operator)?
        .to_url()
        .map_err(|e| Error::Invalid(format!("otpauth URI for {operator}: {e}")))
}

/// The URI as a QR code for a terminal (two rows per line).
pub fn qr_text(uri: &str) -> Result<String> {
    let code =
        qrcode::QrCode::new(uri.as_bytes()).map_err(|e| Error::Invalid(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

/// The time step whose code `code` is, within one step of `now` (unix seconds); None if it
/// is nobody's (compared in constant time by `totp-rs`).
pub fn matched_step(secret: &[u8], operator: &str, code: &str, now: i64) -> Result<Option<u64>> {
    let now = u64::try_from(now).unwrap_or(0);
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp(secret, operator)?.check(code, now))
}

/// The code of `now` (tests and the demo compute what an authenticator app shows).
pub fn code_at(secret: &[u8], operator: &str, now: i64) -> Result<String> {
    Ok(totp(secret, operator)?
        .generate(u64::try_from(now).unwrap_or(0))
        .to_string())
}

fn cipher(key: &[u8]) -> Result<ChaCha20Poly1305> {
    match key.len() {
        32 => Ok(ChaCha20Poly1305::new(Key::from_slice(key))),
        n => Err(Error::Corrupt(format!(
            "the control plane's {SEALING_SECRET} is {n} bytes, not 32"
        ))),
    }
}

/// `secret` sealed under `key` for `operator` of `cluster`: hex of nonce and ciphertext.
pub fn seal(key: &[u8], cluster: &str, operator: &str, secret: &[u8]) -> Result<String> {
    let nonce: [u8; 12] = rand::random();
    let aad = format!("{cluster}/{operator}");
    let sealed = cipher(key)?
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| Error::Storage(format!("seal operator {operator}'s secret")))?;
    Ok(hex(&[&nonce[..], &sealed].concat()))
}

/// The secret `seal` sealed; `Corrupt` if it was not sealed under `key` for this operator
/// of this cluster (another key, another name, changed bytes).
pub fn unseal(key: &[u8], cluster: &str, operator: &str, sealed: &str) -> Result<Vec<u8>> {
    let corrupt = || {
        Error::Corrupt(format!(
            "operator {operator}'s sealed secret does not open with this cluster's key"
        ))
    };
    let bytes = unhex(sealed).ok_or_else(corrupt)?;
    if bytes.len() < 12 + 16 {
        return Err(corrupt());
    }
    let aad = format!("{cluster}/{operator}");
    cipher(key)?
        .decrypt(
            Nonce::from_slice(&bytes[..12]),
            Payload {
                msg: &bytes[12..],
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| corrupt())
}

/// What a login proves: this operator of this cluster passed a code at `from`; good until
/// `until` (unix seconds, on dirctl's clock).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginClaims {
    pub cluster: String,
    pub operator: String,
    pub id: String,
    pub from: i64,
    pub until: i64,
}

/// A login as kept in its file: the claims and the cluster key's signature of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    pub claims: LoginClaims,
    pub signature: String,
}

fn claims_bytes(c: &LoginClaims) -> Vec<u8> {
    serde_json::to_vec(c).unwrap_or_default()
}

/// A login signed with the cluster key's seed.
pub fn sign_login(seed: &[u8], claims: LoginClaims) -> Result<Login> {
    let signature = crate::graph::token::sign(seed, &claims_bytes(&claims))?;
    Ok(Login { claims, signature })
}

/// The operator a login proves at `now` for `cluster`; else why not.
pub fn verify_login(
    seed: &[u8],
    cluster: &str,
    login: &Login,
    now: i64,
) -> std::result::Result<String, String> {
    let c = &login.claims;
    let signed = crate::graph::token::signed(seed, &claims_bytes(c), &login.signature)
        .map_err(|e| e.to_string())?;
    if !signed {
        return Err("the login's signature is not this cluster's".into());
    }
    if c.cluster != cluster {
        return Err("the login is for another cluster".into());
    }
    // A minute of skew between the clocks of the machine that signed and this one.
    if now + 60 < c.from {
        return Err(format!(
            "the login of {} starts in the future (at unix time {}): is this machine's clock right?",
            c.operator, c.from
        ));
    }
    if now >= c.until {
        return Err(format!(
            "the login of {} has expired; log in again with `dirctl login {} --otp CODE`",
            c.operator, c.operator
        ));
    }
    Ok(c.operator.clone())
}

/// Partition `partition`'s audit chain head (`seq`, `hash`) at `time`, signed with the
/// cluster key's seed: an anchor (`engine::audit::Anchor`).
pub fn anchor(
    seed: &[u8],
    cluster: &str,
    partition: u32,
    (seq, hash): (u64, String),
    time: &str,
) -> Result<engine::audit::Anchor> {
    let mut a = engine::audit::Anchor {
        seq,
        hash,
        time: time.to_string(),
        signature: String::new(),
    };
    a.signature = crate::graph::token::sign(seed, a.message(cluster, partition).as_bytes())?;
    Ok(a)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_its_step_and_its_neighbours_only() {
        let s = generate_secret();
        let now = 1_800_000_000;
        let code = code_at(&s, "ann", now).expect("code");
        let step = now as u64 / STEP_SECS;
        assert_eq!(matched_step(&s, "ann", &code, now).expect("m"), Some(step));
        assert_eq!(
            matched_step(&s, "ann", &code, now + 30).expect("m"),
            Some(step)
        );
        assert_eq!(matched_step(&s, "ann", &code, now + 90).expect("m"), None);
        for bad in ["", "12345", "1234567", "abcdef", " 12 34"] {
            assert_eq!(
                matched_step(&s, "ann", bad, now).expect("m"),
                None,
                "{bad:?}"
            );
        }
        // Another secret's code is not this one's (a chance of 3 in a million).
        let other = code_at(&generate_secret(), "ann", now).expect("code");
        if other != code {
            assert_eq!(matched_step(&s, "ann", &other, now).expect("m"), None);
        }
    }

    #[test]
    fn the_uri_holds_the_secret_for_an_authenticator_app() {
        let s = generate_secret();
        let uri = otpauth_uri(&s, "ann").expect("uri");
        assert!(uri.starts_with("otpauth://totp/geodir:ann?"), "{uri}");
        let parsed = Totp::from_url(&uri).expect("parse");
        assert_eq!(parsed.secret().as_bytes(), &s[..]);
        assert!(!qr_text(&uri).expect("qr").is_empty());
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_for_its_operator() {
        let key = generate_key();
        let s = generate_secret();
        let sealed = seal(&key, "c1", "ann", &s).expect("seal");
        assert!(!sealed.contains(&hex(&s)));
        assert_eq!(unseal(&key, "c1", "ann", &sealed).expect("unseal"), s);
        assert!(unseal(&generate_key(), "c1", "ann", &sealed).is_err());
        assert!(unseal(&key, "c1", "bob", &sealed).is_err());
        assert!(unseal(&key, "c2", "ann", &sealed).is_err());
        let mut flipped = sealed.clone().into_bytes();
        flipped[30] = if flipped[30] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("utf8");
        assert!(unseal(&key, "c1", "ann", &flipped).is_err());
        assert!(unseal(&key, "c1", "ann", "zz").is_err());
    }

    #[test]
    fn a_login_proves_its_operator_until_it_ends_and_not_when_forged() {
        let seed = crate::graph::token::generate_seed();
        let claims = LoginClaims {
            cluster: "c1".into(),
            operator: "ann".into(),
            id: "l1".into(),
            from: 100,
            until: 200,
        };
        let login = sign_login(&seed, claims).expect("sign");
        assert_eq!(verify_login(&seed, "c1", &login, 150).as_deref(), Ok("ann"));
        assert!(verify_login(&seed, "c1", &login, 200).is_err());
        assert!(verify_login(&seed, "c2", &login, 150).is_err());
        let other = crate::graph::token::generate_seed();
        assert!(verify_login(&other, "c1", &login, 150).is_err());
        let mut forged = login.clone();
        forged.claims.operator = "root".into();
        let e = verify_login(&seed, "c1", &forged, 150).expect_err("refused");
        assert!(e.contains("signature"), "{e}");
        let mut longer = login;
        longer.claims.until = 10_000;
        assert!(verify_login(&seed, "c1", &longer, 500).is_err());
    }
}
