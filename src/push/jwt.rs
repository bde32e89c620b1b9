//! Compact JWS signing with ring: ES256 for APNs provider tokens, RS256
//! for Google's service-account assertion. Only signing; the providers
//! verify.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use super::PushError;

/// A PKCS#8 private key from PEM text (`-----BEGIN PRIVATE KEY-----`),
/// which is the layout of Apple's `.p8` files and of a service account's
/// `private_key`.
fn pkcs8_der(pem: &[u8], path: &str) -> Result<Vec<u8>, PushError> {
    PrivatePkcs8KeyDer::from_pem_slice(pem)
        .map(|k| k.secret_pkcs8_der().to_vec())
        .map_err(|e| PushError::Key {
            path: path.to_owned(),
            msg: format!("no PKCS#8 private key in PEM: {e}"),
        })
}

/// The signing half of a JWT.
pub enum Signer {
    /// APNs: P-256, the 64-byte r‖s signature JWS wants.
    Es256(EcdsaKeyPair),
    /// Google: RSA PKCS#1 v1.5 with SHA-256.
    Rs256(RsaKeyPair),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signer::Es256(_) => "Signer::Es256",
            Signer::Rs256(_) => "Signer::Rs256",
        })
    }
}

impl Signer {
    /// An ES256 signer from a `.p8` key. `path` only names it in errors.
    /// ring needs the public key inside the PKCS#8, which Apple's keys carry.
    pub fn es256_pem(pem: &[u8], path: &str) -> Result<Self, PushError> {
        let der = pkcs8_der(pem, path)?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
            .map(Signer::Es256)
            .map_err(|e| PushError::Key {
                path: path.to_owned(),
                msg: format!("not a P-256 PKCS#8 key: {e}"),
            })
    }

    /// An RS256 signer from PKCS#8 PEM text.
    pub fn rs256_pem(pem: &[u8], path: &str) -> Result<Self, PushError> {
        let der = pkcs8_der(pem, path)?;
        RsaKeyPair::from_pkcs8(&der)
            .map(Signer::Rs256)
            .map_err(|e| PushError::Key {
                path: path.to_owned(),
                msg: format!("not an RSA PKCS#8 key: {e}"),
            })
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Es256(_) => "ES256",
            Signer::Rs256(_) => "RS256",
        }
    }

    /// `header.claims.signature`, each base64url without padding. `alg`
    /// is added to `header`.
    pub fn sign(&self, mut header: Value, claims: &Value) -> Result<String, String> {
        if let Value::Object(h) = &mut header {
            h.insert("alg".into(), Value::from(self.alg()));
        }
        let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let rng = SystemRandom::new();
        let sig = match self {
            Signer::Es256(k) => k
                .sign(&rng, out.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| format!("ES256 signing failed: {e}"))?,
            Signer::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, out.as_bytes(), &mut sig)
                    .map_err(|e| format!("RS256 signing failed: {e}"))?;
                sig
            }
        };
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    use serde_json::json;

    #[test]
    fn es256_signature_verifies_with_the_public_key() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let signer = Signer::es256_pem(key.serialize_pem().as_bytes(), "k.p8").unwrap();
        let jwt = signer
            .sign(json!({"kid": "K1"}), &json!({"iss": "T1", "iat": 5}))
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": "K1"}));
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(sig.len(), 64, "JWS wants r‖s, not DER");
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key_raw())
            .verify(signed.as_bytes(), &sig)
            .unwrap();
    }

    #[test]
    fn bad_keys_are_errors_not_panics() {
        assert!(Signer::es256_pem(b"not pem", "x.p8").is_err());
        let rsa = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/push_test_rsa_key.pem"
        ))
        .unwrap();
        let e = Signer::es256_pem(&rsa, "x.p8").unwrap_err().to_string();
        assert!(e.contains("x.p8") && e.contains("P-256"), "{e}");
        assert!(Signer::rs256_pem(&rsa, "sa.json").is_ok());
    }
}
