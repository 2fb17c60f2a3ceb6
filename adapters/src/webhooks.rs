//! Signature checks for inbound webhooks, each in its sender's scheme, in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Whether `header` (`X-Cal-Signature-256`) is Cal.com's signature of `body` with `secret`:
/// the lowercase hex HMAC-SHA256 of the raw body (a `sha256=` prefix is tolerated).
pub fn calcom_signature_valid(secret: &[u8], body: &[u8], header: &str) -> bool {
    let hex = header.trim();
    let hex = hex.strip_prefix("sha256=").unwrap_or(hex);
    let Some(signature) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Cal.com's signature of `body` with `secret`, as it sends it.
pub fn calcom_signature(secret: &[u8], body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calcom_signature_checks_the_exact_body_and_secret() {
        let body = br#"{"triggerEvent":"BOOKING_CREATED"}"#;
        let signature = calcom_signature(b"whsec", body);
        assert_eq!(signature.len(), 64);
        assert!(calcom_signature_valid(b"whsec", body, &signature));
        assert!(calcom_signature_valid(
            b"whsec",
            body,
            &format!("sha256={signature}")
        ));
        assert!(!calcom_signature_valid(b"other", body, &signature));
        assert!(!calcom_signature_valid(b"whsec", b"{}", &signature));
        assert!(!calcom_signature_valid(
            b"whsec",
            body,
            "no-secret-provided"
        ));
        assert!(!calcom_signature_valid(b"whsec", body, ""));
    }
}
