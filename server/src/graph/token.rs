//! The Graph API's bearer tokens: JWTs signed by the cluster with Ed25519 (`EdDSA`). The
//! private key is a secret of the control plane (`SECRET`), made once by the first
//! `dirctl token issue`; servers read it to verify. Only `EdDSA` is accepted: `alg: none`,
//! an HMAC keyed with the public key (algorithm confusion) and any other algorithm are
//! refused, as are tokens of another cluster (issuer and audience name the cluster).

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use engine::{Error, Result};

/// The control plane's secret holding the signing key's 32-byte seed.
pub const SECRET: &str = "token-signing-key";

/// The longest a token may live.
pub const MAX_TTL_SECS: i64 = 30 * 24 * 3600;

/// What a token lets its bearer do in its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only.
    Reader,
    /// Reads and writes.
    Writer,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            _ => Err(Error::Invalid(format!("role {s:?}: reader or writer"))),
        }
    }
}

/// A token's claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// `geodir:<cluster id>`.
    pub iss: String,
    /// `geodir:<cluster id>`: a token of another cluster is refused even if its key leaked.
    pub aud: String,
    /// Who the token was issued to (the audit trail's actor is `token:<sub>`).
    pub sub: String,
    /// The one tenant it can see or touch.
    pub tid: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    /// The token's own id (request rates are counted per token).
    pub jti: String,
}

/// The cluster's signing key, and its public half to verify with.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    cluster: String,
    /// A short id of the public key, in every token's header (`kid`).
    kid: String,
}

/// A new signing key's seed, to store as `SECRET`.
pub fn generate_seed() -> Vec<u8> {
    rand::random::<[u8; 32]>().to_vec()
}

impl Keys {
    /// The keys of `cluster` (its id) from the stored seed.
    pub fn from_seed(seed: &[u8], cluster: &str) -> Result<Keys> {
        let seed: [u8; 32] = seed.try_into().map_err(|_| {
            Error::Corrupt(format!(
                "the control plane's {SECRET} is {} bytes, not 32",
                seed.len()
            ))
        })?;
        let signing = SigningKey::from_bytes(&seed);
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| Error::Corrupt(format!("{SECRET}: {e}")))?;
        let public = signing.verifying_key().to_bytes();
        let kid = sha2_hex(&public)[..16].to_string();
        Ok(Keys {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_der(&public),
            cluster: format!("geodir:{cluster}"),
            kid,
        })
    }

    /// A signed token for `tenant`, valid `ttl_secs` from `now` (unix seconds).
    pub fn issue(
        &self,
        tenant: &str,
        role: Role,
        subject: &str,
        ttl_secs: i64,
        now: i64,
    ) -> Result<String> {
        if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(Error::Invalid(format!(
                "a token lives from 1 second to 30 days, not {ttl_secs} s"
            )));
        }
        let claims = Claims {
            iss: self.cluster.clone(),
            aud: self.cluster.clone(),
            sub: subject.to_string(),
            tid: tenant.to_string(),
            role,
            iat: now,
            exp: now + ttl_secs,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Error::Storage(format!("sign a token: {e}")))
    }

    /// The claims of a token this cluster signed that has not expired; else why not, in
    /// words for the 401.
    pub fn verify(&self, token: &str) -> std::result::Result<Claims, String> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.algorithms = vec![Algorithm::EdDSA];
        v.set_audience(&[&self.cluster]);
        v.set_issuer(&[&self.cluster]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = LEEWAY_SECS;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => "the token has expired".to_string(),
                    K::InvalidSignature => "the token's signature is not this cluster's".into(),
                    K::InvalidAlgorithm => "the token is not signed with EdDSA".into(),
                    K::InvalidAudience | K::InvalidIssuer => {
                        "the token was issued for another cluster".into()
                    }
                    _ => format!("the token is malformed ({e})"),
                }
            })
    }
}

/// `message` signed with the cluster's key (its seed, `SECRET`): Ed25519, hex.
pub fn sign(seed: &[u8], message: &[u8]) -> Result<String> {
    use ed25519_dalek::Signer as _;
    let signing = signing_key(seed)?;
    Ok(hex(&signing.sign(message).to_bytes()))
}

/// Whether `signature` (hex) is the cluster key's signature of `message`.
pub fn signed(seed: &[u8], message: &[u8], signature: &str) -> Result<bool> {
    use ed25519_dalek::Verifier as _;
    let verifying = signing_key(seed)?.verifying_key();
    let bytes: Option<[u8; 64]> = (0..signature.len())
        .step_by(2)
        .map(|i| {
            signature
                .get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .and_then(|v| v.try_into().ok());
    Ok(bytes.is_some_and(|b| {
        verifying
            .verify(message, &ed25519_dalek::Signature::from_bytes(&b))
            .is_ok()
    }))
}

fn signing_key(seed: &[u8]) -> Result<SigningKey> {
    let seed: [u8; 32] = seed.try_into().map_err(|_| {
        Error::Corrupt(format!(
            "the control plane's {SECRET} is {} bytes, not 32",
            seed.len()
        ))
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Clock skew a token's expiry is allowed, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// Whether claims verified before are still good at `now` (unix seconds): their expiry,
/// with the leeway `verify` allows. What a cache of verified tokens asks again.
pub fn unexpired(claims: &Claims, now: i64) -> bool {
    claims.exp.saturating_add(LEEWAY_SECS as i64) >= now
}

fn sha2_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000;

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn b64(b: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn a_signature_verifies_only_for_its_message_and_key() {
        let (seed, other) = (generate_seed(), generate_seed());
        let sig = sign(&seed, b"head 3").unwrap();
        assert!(signed(&seed, b"head 3", &sig).unwrap());
        assert!(!signed(&seed, b"head 4", &sig).unwrap());
        assert!(!signed(&other, b"head 3", &sig).unwrap());
        assert!(!signed(&seed, b"head 3", "zz").unwrap());
        assert!(!signed(&seed, b"head 3", &sig[2..]).unwrap());
    }

    #[test]
    fn verified_claims_stay_good_until_their_expiry_and_leeway_only() {
        let keys = Keys::from_seed(&generate_seed(), "c").unwrap();
        let jwt = keys
            .issue("contoso", Role::Reader, "ada", 60, now())
            .unwrap();
        let claims = keys.verify(&jwt).unwrap();
        assert!(unexpired(&claims, claims.exp));
        assert!(unexpired(&claims, claims.exp + LEEWAY_SECS as i64));
        assert!(!unexpired(&claims, claims.exp + LEEWAY_SECS as i64 + 1));
    }

    #[test]
    fn a_token_verifies_with_its_claims_and_only_with_its_cluster_key() {
        let keys = Keys::from_seed(&generate_seed(), "c1").unwrap();
        let t = keys
            .issue("contoso", Role::Reader, "app1", 3600, now())
            .unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!(
            (c.tid.as_str(), c.role, c.sub.as_str()),
            ("contoso", Role::Reader, "app1")
        );
        let other_key = Keys::from_seed(&generate_seed(), "c1").unwrap();
        assert!(other_key.verify(&t).unwrap_err().contains("signature"));
        let same_seed = generate_seed();
        let a = Keys::from_seed(&same_seed, "c1").unwrap();
        let b = Keys::from_seed(&same_seed, "c2").unwrap();
        let t = a.issue("contoso", Role::Writer, "x", 60, now()).unwrap();
        assert!(b.verify(&t).unwrap_err().contains("another cluster"));
    }

    #[test]
    fn expired_malformed_none_and_confused_tokens_are_refused() {
        let keys = Keys::from_seed(&generate_seed(), "c1").unwrap();
        let old = keys
            .issue("contoso", Role::Writer, "x", 60, NOW - 7200)
            .unwrap();
        assert!(keys.verify(&old).unwrap_err().contains("expired"));
        for junk in [
            "",
            "abc",
            "a.b.c",
            "eyJhbGciOiJFZERTQSJ9..",
            &old[..old.len() - 3],
        ] {
            assert!(keys.verify(junk).is_err(), "{junk:?} verified");
        }
        // alg none, claims otherwise valid.
        let good = keys
            .issue("contoso", Role::Writer, "x", 600, now())
            .unwrap();
        let payload = good.split('.').nth(1).unwrap();
        let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
        assert!(keys.verify(&none).is_err(), "alg none verified");
        // HS256 keyed with the public key (algorithm confusion).
        let public = SigningKey::from_bytes(&[7u8; 32])
            .verifying_key()
            .to_bytes();
        let confused_keys = Keys::from_seed(&[7u8; 32], "c1").unwrap();
        let claims = confused_keys
            .verify(
                &confused_keys
                    .issue("contoso", Role::Writer, "x", 600, now())
                    .unwrap(),
            )
            .unwrap();
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&public).unwrap(),
        )
        .unwrap();
        assert!(confused_keys.verify(&hs).unwrap_err().contains("EdDSA"));
    }

    #[test]
    fn a_ttl_out_of_range_and_a_short_seed_are_refused() {
        let keys = Keys::from_seed(&generate_seed(), "c1").unwrap();
        assert!(keys.issue("t", Role::Reader, "x", 0, NOW).is_err());
        assert!(keys
            .issue("t", Role::Reader, "x", MAX_TTL_SECS + 1, NOW)
            .is_err());
        assert!(matches!(
            Keys::from_seed(&[1, 2, 3], "c"),
            Err(Error::Corrupt(_))
        ));
        assert!(Role::parse("admin").is_err());
    }
}
