//! Signature checks for inbound webhooks, each in its sender's scheme, in constant time.

use hmac::{Hmac, Mac};
use sha1::Sha1;
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

/// Twilio's signature of a form-encoded callback: base64 of the HMAC-SHA1, keyed with the
/// auth token, of the full URL followed by each parameter's name and value in name order.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    use base64::Engine;
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(&twilio_signed(url, params));
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `header` (`X-Twilio-Signature`) is Twilio's signature of the callback.
pub fn twilio_signature_valid(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: &str,
) -> bool {
    use base64::Engine;
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return false;
    };
    mac.update(&twilio_signed(url, params));
    mac.verify_slice(&signature).is_ok()
}

fn twilio_signed(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut signed = url.to_owned();
    for (name, value) in sorted {
        signed.push_str(name);
        signed.push_str(value);
    }
    signed.into_bytes()
}

/// Why a timestamped signature (`Stripe-Signature`, `x-retell-signature`) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No timestamp or no signature in the header.
    #[error("the signature header is malformed")]
    Malformed,
    /// No `v1` matches the body.
    #[error("no signature matches the body")]
    Mismatch,
    /// Signed longer ago (or further ahead) than the tolerance.
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
}

/// Checks a `Stripe-Signature: t=…,v1=…[,v1=…]` header: some `v1` is the hex HMAC-SHA256 of
/// `"{t}.{body}"` with the endpoint secret, and `t` is within `tolerance` seconds of `now`.
pub fn stripe_signature_check(
    secret: &str,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.extend(decode_hex(v)),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return Err(SignatureError::Malformed);
    };
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matches = candidates.iter().any(|signature| {
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).is_ok_and(|mut mac| {
            mac.update(format!("{t}.").as_bytes());
            mac.update(body);
            mac.verify_slice(signature).is_ok()
        })
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    if (now - t).abs() > tolerance {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Stripe's `Stripe-Signature` header for `body` signed at `t` (for tests and tools).
pub fn stripe_signature(secret: &str, t: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// How far (ms) Retell's signing time may be from ours.
pub const RETELL_TOLERANCE_MS: i64 = 300_000;

/// Checks an `x-retell-signature: v=<unix ms>,d=<hex>` header: `d` is the hex HMAC-SHA256,
/// keyed with the tenant's Retell API key, of the raw body followed by the decimal `v`, and
/// `v` is within [`RETELL_TOLERANCE_MS`] of `now_ms`.
pub fn retell_signature_check(
    api_key: &str,
    body: &[u8],
    header: &str,
    now_ms: i64,
) -> Result<(), SignatureError> {
    let Some((v, d)) = header.trim().split_once(",d=") else {
        return Err(SignatureError::Malformed);
    };
    let Some(timestamp) = v.strip_prefix("v=").and_then(|t| t.parse::<i64>().ok()) else {
        return Err(SignatureError::Malformed);
    };
    let Some(signature) = decode_hex(d) else {
        return Err(SignatureError::Malformed);
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()) else {
        return Err(SignatureError::Malformed);
    };
    mac.update(body);
    mac.update(timestamp.to_string().as_bytes());
    if mac.verify_slice(&signature).is_err() {
        return Err(SignatureError::Mismatch);
    }
    if (now_ms - timestamp).abs() > RETELL_TOLERANCE_MS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Retell's `x-retell-signature` for `body` signed at `timestamp_ms` (for tests and tools).
pub fn retell_signature(api_key: &str, timestamp_ms: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(api_key.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    mac.update(timestamp_ms.to_string().as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v={timestamp_ms},d={hex}")
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
    fn a_retell_signature_covers_body_and_timestamp_within_five_minutes() {
        let body = br#"{"event":"call_started","call":{"call_id":"c1"}}"#;
        let header = retell_signature("key_retell", 1_700_000_000_000, body);
        let now = 1_700_000_100_000;
        assert_eq!(
            retell_signature_check("key_retell", body, &header, now),
            Ok(())
        );
        assert_eq!(
            retell_signature_check("other_key", body, &header, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            retell_signature_check("key_retell", b"{}", &header, now),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replacen("v=1700000000000", "v=1700000050000", 1);
        assert_eq!(
            retell_signature_check("key_retell", body, &moved, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            retell_signature_check("key_retell", body, &header, 1_700_000_300_001),
            Err(SignatureError::Stale)
        );
        for bad in ["", "v=1,d=zz", "d=00", "v=x,d=00"] {
            assert_eq!(
                retell_signature_check("key_retell", body, bad, now),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_stripe_signature_is_checked_against_every_v1_and_the_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let header = stripe_signature("whsec_x", 1_000, body);
        assert_eq!(
            stripe_signature_check("whsec_x", body, &header, 1_100, 300),
            Ok(())
        );
        let rotated = format!("t=1000,v1={},{}", "00".repeat(32), &header[7..]);
        assert_eq!(
            stripe_signature_check("whsec_x", body, &rotated, 1_100, 300),
            Ok(())
        );
        assert_eq!(
            stripe_signature_check("whsec_x", body, &header, 1_301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            stripe_signature_check("whsec_y", body, &header, 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe_signature_check("whsec_x", b"{}", &header, 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe_signature_check("whsec_x", body, "v1=ab", 1_100, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_twilio_signature_matches_twilios_documented_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            twilio_signature("12345", url, &params),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
    }

    #[test]
    fn a_twilio_signature_covers_the_url_and_every_parameter() {
        let url = "https://bookingd.example/api/v2/webhooks/twilio/status";
        let params = vec![
            ("MessageStatus".to_owned(), "delivered".to_owned()),
            ("MessageSid".to_owned(), "SM123".to_owned()),
        ];
        let signature = twilio_signature("token", url, &params);
        assert!(twilio_signature_valid("token", url, &params, &signature));
        let mut reversed = params.clone();
        reversed.reverse();
        assert!(
            twilio_signature_valid("token", url, &reversed, &signature),
            "order-free"
        );
        assert!(!twilio_signature_valid("other", url, &params, &signature));
        assert!(!twilio_signature_valid(
            "token",
            &format!("{url}?x=1"),
            &params,
            &signature
        ));
        let mut changed = params.clone();
        changed[0].1 = "failed".to_owned();
        assert!(!twilio_signature_valid("token", url, &changed, &signature));
    }

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
